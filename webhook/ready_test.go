package webhook

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

func TestReadinessChecks(t *testing.T) {
	expiry := time.Now().Add(time.Hour).Truncate(time.Second)
	dir, _ := writeCert(t, expiry)
	certs, err := certwatcher.New(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	judge := &setJudge{}
	serverUp := false
	r := &readiness{
		judge: judge, certs: certs, certDir: dir, now: time.Now,
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
	r.now = func() time.Time { return expiry.Add(time.Second) }
	if got, want := failing(), "certificate: the serving certificate in "+dir+" expired at "+expiry.UTC().Format(time.RFC3339); got != want {
		t.Errorf("expired: %q, want %q", got, want)
	}
	r.now = time.Now
	r.stopping.Store(true)
	if got := failing(); got != "shutdown: shutting down" || r.ready() {
		t.Errorf("stopping: %q", got)
	}
}
