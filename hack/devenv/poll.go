package devenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PollInterval is how long Poll waits between checks. What the tests wait
// for (an informer event, a certificate swap, a registration) takes
// milliseconds, and one check at a time costs the API server little.
const PollInterval = 5 * time.Millisecond

// errNotYet is PollEvery's last error before its first check.
var errNotYet = errors.New("the condition does not hold yet")

// finalError is an error of check after which waiting is pointless.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }

// Final marks an error of a Poll check as final: what is awaited can no
// longer happen (the process that was to do it has exited), so Poll returns
// err at once instead of checking again until its time is up.
func Final(err error) error { return finalError{err} }

// Poll calls check at once and then every PollInterval until it returns
// nil. If timeout passes or ctx ends first, it returns an error carrying
// check's last error, which says what was still wrong; if check returns an
// error marked Final, it returns that error.
func Poll(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	return PollEvery(ctx, PollInterval, timeout, check)
}

// PollEvery is Poll with interval between checks, for a check that costs
// what it observes (a full metrics scrape, a write through the API server).
func PollEvery(ctx context.Context, interval, timeout time.Duration, check func(context.Context) error) error {
	last := errNotYet
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		if f := (finalError{}); errors.As(last, &f) {
			return false, f.err
		}
		return last == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case !wait.Interrupted(err):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w (last check: %w)", ctx.Err(), last)
	default:
		return fmt.Errorf("not within %s: %w", timeout, last)
	}
}
