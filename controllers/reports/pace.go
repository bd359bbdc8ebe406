package reports

import (
	"context"
	"time"
)

// pacer keeps a sweep's judging to a share of one CPU: after each slice of
// work it pauses long enough that work is at most share of the time, so
// that admissions on the same replica are not slowed by a sweep however
// much it has to judge.
type pacer struct {
	share float64
	began time.Time     // of the object being judged
	work  time.Duration // judged since the last pause
}

// paceSlice is the work between pauses: short enough that an admission
// waits little behind it, long enough that pauses are few.
const paceSlice = 5 * time.Millisecond

func newPacer(share float64) *pacer { return &pacer{share: share} }

func (p *pacer) begin() { p.began = time.Now() }

// end counts the work since begin and pauses when a slice is done; it
// returns early, with the cause, when ctx ends.
func (p *pacer) end(ctx context.Context) error {
	p.work += time.Since(p.began)
	if p.work < paceSlice || p.share >= 1 {
		return nil
	}
	pause := time.Duration(float64(p.work) * (1/p.share - 1))
	p.work = 0
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
