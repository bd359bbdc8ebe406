// Package inprocess is hack/inprocess for tests: StartForTest, and the
// names the tests use.
package inprocess

import (
	"context"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/hack/inprocess"
)

type (
	Options = inprocess.Options
	Webhook = inprocess.Webhook
)

// Start is inprocess.Start: it returns at once, WaitReady waits.
func Start(ctx context.Context, opts Options) (*Webhook, error) { return inprocess.Start(ctx, opts) }

// StartForTest starts a webhook for t, stops it when t ends, and waits
// (at most two minutes) until it is ready: what most tests need.
func StartForTest(t testing.TB, opts Options) *Webhook {
	t.Helper()
	// Its life is t's cleanup's to end, not t.Context's, which ends first.
	wh, err := Start(context.WithoutCancel(t.Context()), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wh.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := wh.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return wh
}
