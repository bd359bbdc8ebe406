package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// readiness is what /readyz reports: its checks all pass.
type readiness struct {
	stopping atomic.Bool
	judge    interface{ HasSynced() bool }
	current  currentChecker // nil, or maxStale <= 0, skips the check
	maxStale time.Duration
	certs    *certwatcher.CertWatcher
	certDir  string
	server   healthz.Checker // the webhook server's StartedChecker
	clock    clock.PassiveClock
}

type namedCheck struct {
	name  string
	check healthz.Checker
}

func (r *readiness) checks() []namedCheck {
	return []namedCheck{
		{"shutdown", r.checkShutdown},
		{"policy-cache", r.checkCache},
		{"cache-current", r.checkCurrent},
		{"certificate", r.checkCertificate},
		{"webhook-server", r.server},
	}
}

func (r *readiness) checkShutdown(*http.Request) error {
	if r.stopping.Load() {
		return errors.New("shutting down")
	}
	return nil
}

func (r *readiness) checkCache(*http.Request) error {
	if !r.judge.HasSynced() {
		return errors.New("the policy cache has not synced yet")
	}
	return nil
}

// currentChecker is the policy cache's view of its informers' watches.
type currentChecker interface {
	CheckCurrent(now time.Time, bound time.Duration) error
}

// checkCurrent fails once an informer has had no watch for longer than
// maxStale: its cache may miss policy changes, so traffic should go elsewhere.
func (r *readiness) checkCurrent(*http.Request) error {
	if r.current == nil || r.maxStale <= 0 {
		return nil
	}
	return r.current.CheckCurrent(r.clock.Now(), r.maxStale)
}

func (r *readiness) checkCertificate(*http.Request) error {
	cert, _ := r.certs.GetCertificate(nil)
	if cert == nil {
		return fmt.Errorf("no serving certificate loaded from %s", r.certDir)
	}
	// The API server refuses an expired certificate: say so here rather
	// than leave operators to find it in the API server's log.
	if cert.Leaf != nil && r.clock.Now().After(cert.Leaf.NotAfter) {
		return fmt.Errorf("the serving certificate in %s expired at %s", r.certDir, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// ready runs every check, as /readyz does.
func (r *readiness) ready() bool {
	for _, c := range r.checks() {
		if c.check(nil) != nil {
			return false
		}
	}
	return true
}

// notifyReady calls fn once, the first time every check passes.
func (r *readiness) notifyReady(ctx context.Context, fn func()) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.ready() {
			fn()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
