package devenv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

func TestPoll(t *testing.T) {
	t.Run("until check passes", func(t *testing.T) {
		calls := 0
		err := devenv.Poll(t.Context(), time.Minute, func(context.Context) error {
			if calls++; calls < 3 {
				return fmt.Errorf("call %d", calls)
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("timeout says what was still wrong", func(t *testing.T) {
		err := devenv.Poll(t.Context(), 20*time.Millisecond, func(context.Context) error { return errors.New("still red") })
		if err == nil || !strings.Contains(err.Error(), "not within 20ms: still red") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a final error ends it at once", func(t *testing.T) {
		gone := errors.New("the process exited")
		calls := 0
		err := devenv.Poll(t.Context(), time.Minute, func(context.Context) error {
			calls++
			return devenv.Final(gone)
		})
		if !errors.Is(err, gone) || calls != 1 {
			t.Fatalf("err %v after %d calls, want %v after 1", err, calls, gone)
		}
	})
	t.Run("the caller's context ending", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		err := devenv.Poll(ctx, time.Minute, func(context.Context) error {
			cancel()
			return errors.New("not yet")
		})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not yet") {
			t.Fatalf("err %v, want context.Canceled with the last check's error", err)
		}
	})
}
