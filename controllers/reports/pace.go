package reports

import (
	"context"
	"time"
)

// pacer keeps a sweep to a share of one CPU: after each slice of work it
// pauses long enough that work is at most share of the time, so that
// admissions on the same replica wait little behind a sweep however much
// it has to judge. The slices are short because an admission that arrives
// during one waits for the CPU: its latency, not only the replica's
// throughput, is what the pauses protect.
//
// Work is the judging of each object and the gap since the previous one
// when that gap is short (decoding the next object of the page); a long
// gap is the API server sending the next page, which costs this process
// nothing.
type pacer struct {
	share float64
	last  time.Time     // end of the previous object, or of the last pause
	began time.Time     // of the object being judged
	work  time.Duration // since the last pause
}

const (
	// paceSlice is the work between pauses.
	paceSlice = time.Millisecond
	// decodeGap bounds the gap between two objects counted as work.
	decodeGap = time.Millisecond
)

func newPacer(share float64) *pacer { return &pacer{share: share} }

func (p *pacer) begin() {
	p.began = time.Now()
	if gap := p.began.Sub(p.last); gap < decodeGap {
		p.work += gap
	}
}

// end counts the work since begin and pauses when a slice is done; it
// returns early, with the cause, when ctx ends.
func (p *pacer) end(ctx context.Context) error {
	p.last = time.Now()
	p.work += p.last.Sub(p.began)
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
	}
	p.last = time.Now()
	return nil
}
