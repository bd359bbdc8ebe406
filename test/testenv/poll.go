package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PollInterval is how long Poll waits between checks. What the tests wait
// for (an informer event, a certificate swap, a registration) takes
// milliseconds, and one check at a time costs the API server little.
const PollInterval = 5 * time.Millisecond

// errNotYet is Until's last error when its condition never held.
var errNotYet = errors.New("the condition does not hold yet")

// Poll calls check at once and then every PollInterval until it returns
// nil. If timeout passes or ctx ends first, it returns an error carrying
// check's last error, which says what was still wrong.
func Poll(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	last := errNotYet
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		return last == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w (last check: %w)", ctx.Err(), last)
	default:
		return fmt.Errorf("not within %s: %w", timeout, last)
	}
}

// Eventually fails t unless check returns nil within timeout, saying what
// was awaited and check's last error. It returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := Poll(t.Context(), timeout, func(context.Context) error { return check() }); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
	return time.Since(start)
}

// Until is Eventually for a condition with nothing more to say than
// whether it holds.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Eventually(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}
