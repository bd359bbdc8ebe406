package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
)

// captureProfile loads policy-webhook directly with allowed Pods at
// concurrency conc while its pprof server records a CPU profile of that
// load, and writes the profile to path: what `go tool pprof` needs to say
// where the CPU per admission goes.
func captureProfile(ctx context.Context, s *server, tlsConfig *tls.Config, conc int, d time.Duration, path string) error {
	uid := "loadgen-profile"
	body, err := workload.CreateReview(workload.DeploymentPod(false, 2), uid)
	if err != nil {
		return err
	}
	client := directClient(tlsConfig, conc)
	defer client.CloseIdleConnections()
	var answered atomic.Int64
	attempts := make([]attempt, conc)
	for i := range attempts {
		post := postReview(client, s.url+"/validate-pods", body, uid, true)
		attempts[i] = func(ctx context.Context) (bool, error) {
			defer answered.Add(1)
			return post(ctx)
		}
	}
	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan window, 1)
	go func() {
		// Runs past the profile; cancelled once it is in.
		done <- closedLoop(loadCtx, loadSpec{concurrency: conc, duration: d + 10*time.Second}, attempts, nil)
	}()
	// Record once every connection is open and has carried some load.
	err = devenv.Poll(ctx, time.Minute, func(context.Context) error {
		if n := answered.Load(); n < int64(100*conc) {
			return fmt.Errorf("%d requests answered", n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the load to start: %w", err)
	}
	url := fmt.Sprintf("%s/profile?seconds=%d", s.pprofURL, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building the profile request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: HTTP %d", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	cancel()
	w := <-done
	if w.errs > 0 || w.bad > 0 {
		return fmt.Errorf("load under the profile: %d errors, %d wrong verdicts (first: %s)", w.errs, w.bad, w.firstError)
	}
	return nil
}
