package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadSpec is one closed-loop window: concurrency workers, each sending
// its next request when the last one is answered, for warmup (not counted)
// then duration (counted).
type loadSpec struct {
	concurrency int
	warmup      time.Duration
	duration    time.Duration
}

// loadResult is what the windows of one server measured, together.
type loadResult struct {
	Requests     int           `json:"requests"`
	Errors       int           `json:"errors"`
	WrongVerdict int           `json:"wrongVerdicts"`
	Elapsed      time.Duration `json:"elapsedNs"`
	// PerSecond is the median of the windows' rates: a window that the
	// rest of the machine stalled (a build, a GC in the API server) moves
	// it less than it moves the total.
	PerSecond float64 `json:"reqPerSec"`
	// TotalPerSecond is all requests over all windows' time.
	TotalPerSecond float64       `json:"totalReqPerSec"`
	P50            time.Duration `json:"p50Ns"`
	P90            time.Duration `json:"p90Ns"`
	P99            time.Duration `json:"p99Ns"`
	Max            time.Duration `json:"maxNs"`
	FirstError     string        `json:"firstError,omitempty"`
}

// attempt sends one request; it reports a transport or protocol error, or
// whether the verdict was the expected one.
type attempt func(ctx context.Context) (ok bool, err error)

// window is the raw record of one counted window.
type window struct {
	lat        []time.Duration
	errs, bad  int
	firstError string
	elapsed    time.Duration
}

// closedLoop runs one window of spec, worker w calling attempts[w].
// onCounted, if set, is called when the warm-up ends.
func closedLoop(ctx context.Context, spec loadSpec, attempts []attempt, onCounted func()) window {
	start := time.Now()
	measureFrom := start.Add(spec.warmup)
	measureTo := measureFrom.Add(spec.duration)
	tallies := make([]window, spec.concurrency)
	var wg sync.WaitGroup
	for w := range spec.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := attempts[w]
			t := &tallies[w]
			t.lat = make([]time.Duration, 0, 1<<12)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(measureTo) {
					return
				}
				ok, err := do(ctx)
				d := time.Since(t0)
				// Before the window, or cut short by the caller: not counted.
				if t0.Before(measureFrom) || ctx.Err() != nil {
					continue
				}
				t.lat = append(t.lat, d)
				switch {
				case err != nil:
					t.errs++
					if t.firstError == "" {
						t.firstError = err.Error()
					}
				case !ok:
					t.bad++
				}
			}
		}()
	}
	if onCounted != nil {
		select {
		case <-time.After(time.Until(measureFrom)):
			onCounted()
		case <-ctx.Done():
		}
	}
	wg.Wait()
	// Requests begun inside the window may finish after it: the window
	// is from its start to the last answer.
	out := window{elapsed: time.Since(measureFrom)}
	for _, t := range tallies {
		out.lat = append(out.lat, t.lat...)
		out.errs += t.errs
		out.bad += t.bad
		if out.firstError == "" {
			out.firstError = t.firstError
		}
	}
	return out
}

// summarize merges the windows of one server.
func summarize(ws []window) loadResult {
	var r loadResult
	var all []time.Duration
	var rates []float64
	for _, w := range ws {
		if w.elapsed > 0 {
			rates = append(rates, float64(len(w.lat))/w.elapsed.Seconds())
		}
		all = append(all, w.lat...)
		r.Errors += w.errs
		r.WrongVerdict += w.bad
		r.Elapsed += w.elapsed
		if r.FirstError == "" {
			r.FirstError = w.firstError
		}
	}
	slices.Sort(all)
	r.Requests = len(all)
	if len(all) > 0 {
		r.TotalPerSecond = float64(len(all)) / r.Elapsed.Seconds()
		slices.Sort(rates)
		r.PerSecond = rates[len(rates)/2]
		if len(rates)%2 == 0 {
			r.PerSecond = (rates[len(rates)/2-1] + rates[len(rates)/2]) / 2
		}
		q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
		r.P50, r.P90, r.P99, r.Max = q(0.50), q(0.90), q(0.99), all[len(all)-1]
	}
	return r
}

// directClient is the HTTP client of the direct mode: TLS trusting the
// serving CA, HTTP/1.1 with keep-alive (what the API server speaks to
// webhooks), a connection per worker.
func directClient(tlsConfig *tls.Config, concurrency int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     tlsConfig,
			MaxIdleConns:        concurrency * 2,
			MaxIdleConnsPerHost: concurrency * 2,
			IdleConnTimeout:     time.Minute,
			// HTTP/2 off, as on the webhook servers.
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		},
	}
}

// postReview returns an attempt that POSTs body to url and checks that the
// answer is an AdmissionReview for uid with allowed == wantAllowed.
func postReview(client *http.Client, url string, body []byte, uid string, wantAllowed bool) attempt {
	buf := make([]byte, 0, 4096)
	return func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return false, fmt.Errorf("building the request: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b := bytes.NewBuffer(buf[:0])
		if _, err := io.Copy(b, resp.Body); err != nil {
			return false, fmt.Errorf("reading the answer: %w", err)
		}
		buf = b.Bytes()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, buf)
		}
		var v reviewVerdict
		if err := json.Unmarshal(buf, &v); err != nil || v.Response == nil {
			return false, fmt.Errorf("not an AdmissionReview answer: %.200s", buf)
		}
		if v.Response.UID != uid {
			return false, fmt.Errorf("answer for uid %q, sent %q", v.Response.UID, uid)
		}
		return v.Response.Allowed == wantAllowed, nil
	}
}
