package app

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/policy-webhook/policy-webhook/certs"
)

func TestReadinessChecks(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Now())
	expiry := clk.Now().Add(time.Hour).Truncate(time.Second)
	dir, _ := writeCert(t, expiry)
	certs, err := certwatcher.New(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	judge := &syncedJudge{}
	serverUp := false
	stale := &staleCache{}
	r := &readiness{
		judge: judge, current: stale, maxStale: time.Minute, certs: certs, certDir: dir, clock: clk,
		server: func(*http.Request) error {
			if !serverUp {
				return errors.New("webhook server has not been started yet")
			}
			return nil
		},
	}
	failing := func() string {
		var out []string
		for _, c := range r.checks() {
			if err := c.check(nil); err != nil {
				out = append(out, c.name+": "+err.Error())
			}
		}
		return strings.Join(out, "; ")
	}

	if got, want := failing(), "policy-cache: the policy cache has not synced yet; webhook-server: webhook server has not been started yet"; got != want {
		t.Errorf("before start: %q, want %q", got, want)
	}
	judge.synced, serverUp = true, true
	if got := failing(); got != "" || !r.ready() {
		t.Errorf("all up: failing %q", got)
	}
	stale.err = errors.New("the myapples informer has had no watch open on the API server for 1m1s")
	if got, want := failing(), "cache-current: "+stale.err.Error(); got != want || stale.bound != time.Minute {
		t.Errorf("stale: %q (bound %s), want %q", got, stale.bound, want)
	}
	r.maxStale = -1
	if got := failing(); got != "" {
		t.Errorf("staleness check off: failing %q", got)
	}
	r.maxStale, stale.err = time.Minute, nil
	clk.SetTime(expiry.Add(time.Second))
	if got, want := failing(), "certificate: the serving certificate in "+dir+" expired at "+expiry.UTC().Format(time.RFC3339); got != want {
		t.Errorf("expired: %q, want %q", got, want)
	}
	clk.SetTime(time.Now())
	r.stopping.Store(true)
	if got := failing(); got != "shutdown: shutting down" || r.ready() {
		t.Errorf("stopping: %q", got)
	}
}

type staleCache struct {
	err   error
	bound time.Duration
}

func (s *staleCache) CheckCurrent(_ time.Time, bound time.Duration) error {
	s.bound = bound
	return s.err
}

type syncedJudge struct{ synced bool }

func (j *syncedJudge) HasSynced() bool { return j.synced }
