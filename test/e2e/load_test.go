package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNoAPICallsWhileAdmitting sends 1,000 admissions through the API
// server, concurrently, and asserts the webhook made no request to the API
// server meanwhile: every answer came from its informer cache. Half the Pods
// break the policy, and every verdict is checked, so the webhook provably
// judged each one.
func TestNoAPICallsWhileAdmitting(t *testing.T) {
	ctx := testCtx(t)
	good, bad, refused := registryScenario(ctx, t)
	opts := metav1.CreateOptions{DryRun: dryRun}

	const admissions, workers = 1000, 16
	var (
		next, wrong atomic.Int64
		mu          sync.Mutex
		firstWrong  string
		wg          sync.WaitGroup
	)
	mark := env.requests.Len()
	// The count means something only if the webhook's clients go through
	// the counting transport: their initial lists and watches did.
	if mark == 0 {
		t.Fatal("the request log saw none of the webhook's requests, not even its informers' lists: it counts nothing")
	}
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= admissions {
					return
				}
				p, want := good, ""
				if i%2 == 1 {
					p, want = bad, refused
				}
				err := createPod(ctx, p, opts)
				if got := errString(err); got != want {
					wrong.Add(1)
					mu.Lock()
					if firstWrong == "" {
						firstWrong = fmt.Sprintf("admission %d: got %q, want %q", i, got, want)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	made := env.requests.Since(mark)

	t.Logf("%d admissions (dry-run Pod creates through kube-apiserver, %d concurrent, half refused) in %s: %.0f admissions/s",
		admissions, workers, elapsed.Round(time.Millisecond), float64(admissions)/elapsed.Seconds())
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of %d admissions got the wrong answer; first: %s", n, admissions, firstWrong)
	}
	// A watch the informers renew on their own schedule (every 5 to 10
	// minutes) is not a request made to answer an admission, nor is the
	// bookkeeping the cache does in the background, whenever it gets to it:
	// an Event or a status for a policy of an earlier test, a lease
	// renewal. They are few whatever the load; one per admission would be
	// a thousand. Anything else is a call made to answer an admission.
	var renewals, bookkeeping, calls []string
	for _, r := range made {
		switch {
		case strings.Contains(r, "watch=true") || strings.Contains(r, "watch=1"):
			renewals = append(renewals, r)
		case strings.Contains(r, "/leases/"),
			!strings.HasPrefix(r, "GET ") && (strings.Contains(r, "/events") || strings.Contains(r, "/status")):
			bookkeeping = append(bookkeeping, r)
		default:
			calls = append(calls, r)
		}
	}
	if len(renewals) > 0 {
		t.Logf("informer watches renewed during the run: %q", renewals)
	}
	if len(bookkeeping) > 0 {
		t.Logf("background writes during the run: %q", bookkeeping)
	}
	if len(calls) > 0 || len(renewals) > 5 || len(bookkeeping) > 20 {
		t.Errorf("the webhook made %d requests to the API server while serving %d admissions, want 0:\n%s",
			len(made), admissions, strings.Join(made, "\n"))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
