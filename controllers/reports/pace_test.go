package reports

import (
	"context"
	"errors"
	"testing"
	"time"
)

// busy works for d.
func busy(d time.Duration) {
	for begun := time.Now(); time.Since(begun) < d; {
	}
}

// Judging at a share of a quarter pauses three times as long as it works:
// sleeps last at least their duration, so the bound holds on any machine.
func TestPacerBoundsTheShare(t *testing.T) {
	p := newPacer(0.25)
	var work time.Duration
	begun := time.Now()
	for range 40 {
		p.begin()
		b := time.Now()
		busy(time.Millisecond)
		work += time.Since(b)
		if err := p.end(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wall := time.Since(begun)
	t.Logf("%s of work in %s", work, wall)
	if min := 4 * work * 9 / 10; wall < min {
		t.Errorf("%s of work took %s, want at least %s", work, wall, min)
	}
}

func TestPacerStopsWithItsContext(t *testing.T) {
	p := newPacer(0.001) // a pause of 999 times the work
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("the policies changed")
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	p.begin()
	busy(paceSlice)
	if err := p.end(ctx); !errors.Is(err, cause) {
		t.Errorf("end = %v, want the cause of the cancellation", err)
	}
}
