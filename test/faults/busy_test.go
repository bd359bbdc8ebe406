package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// quotaByColor is the quota-by-colour example of README.md and docs/cel.md.
const quotaByColor = workload.QuotaByColorPolicy

var busyColors = []string{"red", "green", "blue", "yellow"}

// A namespace of 10,000 MyApples with the README's quota-by-colour example
// in force: MyApple admissions there are judged as fast as in an empty
// namespace and none times out; applying the policy warns of all 10,000;
// the audit sweep over them ends within 10 s, and stops within 1 s of the
// policy's deletion.
func TestBusyNamespace(t *testing.T) {
	const n = 10_000
	ctx := t.Context()
	ns := namespace(t, "busy", nil)
	empty := namespace(t, "busy-empty", nil)
	createApples(t, ns, n)

	// The audit's cluster-wide lists of MyApples, page by page.
	var auditPages atomic.Int64
	cfg := rest.CopyConfig(env.cp.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/apis/"+policy.GroupMyApple+"/v1/"+policy.ResourceApples {
				auditPages.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	h := startHook(t, inprocess.Options{RestConfig: cfg, AuditInterval: time.Hour})
	if err := devenv.PollEvery(ctx, 50*time.Millisecond, time.Minute, func(context.Context) error {
		if got := promtest.Sum(t, h.reg, "policy_webhook_cached_myapples", nil); got < n {
			return fmt.Errorf("%v MyApples cached", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The sweep the start makes lists every MyApple too: the impact
	// check is measured on its own, as on a replica that is not the
	// leader, or between two sweeps.
	sweepsOK := func() float64 { return promtest.Sum(t, h.reg, reports.MetricSweeps, map[string]string{"result": "ok"}) }
	if err := devenv.PollEvery(ctx, 50*time.Millisecond, time.Minute, func(context.Context) error {
		if sweepsOK() < 1 {
			return fmt.Errorf("the first sweep is not done")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Impact: applying the policy warns of every one of the 10,000.
	begun := time.Now()
	warnings := h.policyWarnings(t, ns, "colors", quotaByColor)
	t.Logf("impact warnings of the policy, %s: %.200q", time.Since(begun).Round(time.Millisecond), warnings)
	want := fmt.Sprintf("this policy would deny %d MyApples among existing objects", n)
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("impact warnings %q, want one starting %q", warnings, want)
	}

	// The same admissions in an empty namespace, under the same policy:
	// the floor.
	before := sweepsOK()
	for _, space := range []string{empty, ns} {
		if err := putPolicy(ctx, space, "colors", quotaByColor); err != nil {
			t.Fatal(err)
		}
	}
	h.converge(t, 30*time.Second, admissionCase{"over the quota", webhook.PathMyApples, appleReview(ns, "new", "red", 1), false, "at most 2 MyApples of one color"})
	h.converge(t, 30*time.Second, admissionCase{"empty namespace", webhook.PathMyApples, appleReview(empty, "new", "red", 1), true, ""})

	// The sweep the policy change started: over 10,000 MyApples, at most 10 s.
	durationSum := func() float64 {
		// The sweep cancelled by the policy change, if any, adds little.
		if s := gatherHistogram(t, h, reports.MetricSweepDuration); len(s) == 1 {
			return s[0]
		}
		return 0
	}
	sumBefore := durationSum()
	if err := devenv.PollEvery(ctx, 50*time.Millisecond, time.Minute, func(context.Context) error {
		if sweepsOK() <= before {
			return fmt.Errorf("no sweep done since the policy was applied")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Duration((durationSum() - sumBefore) * float64(time.Second))
	t.Logf("audit sweep after the policy change (10,000 MyApples, and the cluster's Pods): %s", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the sweep took %s, want at most 10s", took)
	}

	// Admissions, direct, 2 workers: in the empty namespace, then in the
	// busy one.
	for _, space := range []string{empty, ns} {
		r := measureAdmissions(ctx, h, 2, 3*time.Second, func(i int) []byte {
			return appleReview(space, fmt.Sprintf("new-%d", i), busyColors[i%len(busyColors)], 1)
		})
		t.Logf("MyApple admissions in %s (%s MyApples): %s", space, map[bool]string{true: "10,000", false: "no"}[space == ns], r)
		if r.failed > 0 || r.timedOut > 0 {
			t.Errorf("%s: %d failed, %d timed out; first: %s", space, r.failed, r.timedOut, r.firstErr)
		}
		// Generous: a loaded 2-core machine serving TLS to itself.
		if p99 := r.p(0.99); p99 > 100*time.Millisecond {
			t.Errorf("%s: p99 %s", space, p99)
		}
	}

	// The same through the API server: MyApple creates (dry run) in both
	// namespaces, the webhook registered as a cluster registers it. None
	// may fail for want of an answer in time.
	vwc := devenv.WebhookConfiguration(h.URL, h.CA.CertPEM(), webhook.DefaultPolicyNamespace)
	if err := devenv.Register(ctx, env.client, vwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = devenv.Unregister(context.Background(), env.client, devenv.ConfigurationName) })
	if err := devenv.WaitCalled(ctx, env.client, empty); err != nil {
		t.Fatal(err)
	}
	throughAPI := map[string]time.Duration{}
	for _, space := range []string{empty, ns} {
		r := measureCreates(ctx, space, 2, 3*time.Second, space == empty)
		throughAPI[space] = r.p(0.99)
		t.Logf("MyApple creates through the API server in %s (%s MyApples): %s", space, map[bool]string{true: "10,000", false: "no"}[space == ns], r)
		if r.failed > 0 || r.timedOut > 0 {
			t.Errorf("%s through the API server: %d failed, %d timed out; first: %s", space, r.failed, r.timedOut, r.firstErr)
		}
	}
	t.Logf("through the API server, p99 in the busy namespace %s, %.2f× the empty one's %s",
		throughAPI[ns], float64(throughAPI[ns])/float64(throughAPI[empty]), throughAPI[empty])
	if err := devenv.Unregister(ctx, env.client, devenv.ConfigurationName); err != nil {
		t.Fatal(err)
	}

	// A sweep in flight stops within 1 s of the policy's deletion.
	cancelled := func() float64 {
		return promtest.Sum(t, h.reg, reports.MetricSweeps, map[string]string{"result": "cancelled"})
	}
	for attempt := 1; ; attempt++ {
		c0, ok0 := cancelled(), sweepsOK()
		if err := putPolicy(ctx, ns, "colors", strings.Replace(quotaByColor, "at most 2", fmt.Sprintf("at most 2 (%d)", attempt), 1)); err != nil {
			t.Fatal(err)
		}
		pages := auditPages.Load()
		// Into the sweep: past its first page of MyApples.
		if err := devenv.PollEvery(ctx, time.Millisecond, time.Minute, func(context.Context) error {
			if auditPages.Load() < pages+2 {
				return fmt.Errorf("no sweep past its first page")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := env.client.CoreV1().ConfigMaps(ns).Delete(ctx, "colors", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		err := devenv.PollEvery(ctx, time.Millisecond, 10*time.Second, func(context.Context) error {
			if cancelled() == c0 && sweepsOK() == ok0 {
				return fmt.Errorf("the sweep runs on")
			}
			return nil
		})
		stopped := time.Since(deleted)
		if err != nil {
			t.Fatal(err)
		}
		if cancelled() == c0 {
			// It ended first: try again, a few times.
			if attempt == 5 {
				t.Fatal("every sweep ended before the policy's deletion reached it")
			}
			continue
		}
		t.Logf("the sweep stopped %s after the policy's deletion (attempt %d)", stopped.Round(time.Millisecond), attempt)
		if stopped > time.Second {
			t.Errorf("the sweep stopped %s after the policy's deletion, want within 1s", stopped)
		}
		break
	}
}

// measureCreates creates MyApples in space through the API server, dry
// run, from workers for d: each must be admitted if allowed, else refused
// by the quota-by-colour rule; anything else fails, a timeout counted apart.
func measureCreates(ctx context.Context, space string, workers int, d time.Duration, allowed bool) admissionFigures {
	var (
		mu  sync.Mutex
		out admissionFigures
		wg  sync.WaitGroup
	)
	api := env.dyn.Resource(myApples).Namespace(space)
	deadline := time.Now().Add(d)
	for w := range workers {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i += workers {
				begun := time.Now()
				_, err := api.Create(ctx, apple(space, fmt.Sprintf("new-%d", i), busyColors[i%len(busyColors)], 1), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				took := time.Since(begun)
				mu.Lock()
				out.latencies = append(out.latencies, took)
				var what string
				switch {
				case err == nil && allowed, err != nil && !allowed && strings.Contains(err.Error(), "at most 2 MyApples of one color"):
				case err != nil && (strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "deadline")):
					out.timedOut++
					what = err.Error()
				default:
					out.failed++
					what = fmt.Sprintf("create %d: %v, want allowed=%t", i, err, allowed)
				}
				if what != "" && out.firstErr == "" {
					out.firstErr = what
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(out.latencies)
	return out
}

// createApples creates n MyApples in ns, in the four colors.
func createApples(t *testing.T, ns string, n int) {
	t.Helper()
	begun := time.Now()
	api := env.dyn.Resource(myApples).Namespace(ns)
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if _, err := api.Create(t.Context(), apple(ns, fmt.Sprintf("apple-%05d", i), busyColors[i%len(busyColors)], 1), metav1.CreateOptions{}); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatalf("creating MyApples: %v", err)
	}
	t.Logf("created %d MyApples in %s", n, time.Since(begun).Round(time.Millisecond))
}

// policyWarnings posts the CREATE of a policy ConfigMap to the webhook, as
// the API server would, and returns the warnings of its answer.
func (h *hook) policyWarnings(t *testing.T, ns, name, spec string) []string {
	t.Helper()
	cm := devenv.PolicyConfigMap(ns, name, spec)
	cm.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}
	body := review("ConfigMap", "configmaps", ns, name, cm, false)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.URL+webhook.PathPolicies, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d, %v: %.300s", res.StatusCode, err, out)
	}
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &r); err != nil || r.Response == nil {
		t.Fatalf("decoding %.300s: %v", out, err)
	}
	if !r.Response.Allowed {
		t.Fatalf("the policy was refused: %v", r.Response.Result)
	}
	return r.Response.Warnings
}

// gatherHistogram is the sample sum of each series of a histogram.
func gatherHistogram(t *testing.T, h *hook, name string) []float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sums []float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sums = append(sums, m.GetHistogram().GetSampleSum())
			}
		}
	}
	return sums
}

// admissionFigures are the latencies and failures of a run of admissions.
type admissionFigures struct {
	latencies        []time.Duration // sorted
	failed, timedOut int
	firstErr         string
}

func (r admissionFigures) p(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1))]
}

func (r admissionFigures) String() string {
	return fmt.Sprintf("%d admissions, p50 %s, p99 %s, %d failed, %d timed out",
		len(r.latencies), r.p(0.5).Round(time.Microsecond), r.p(0.99).Round(time.Microsecond), r.failed, r.timedOut)
}

// measureAdmissions posts the admissions mk makes from workers goroutines
// for d, closed loop.
func measureAdmissions(ctx context.Context, h *hook, workers int, d time.Duration, mk func(i int) []byte) admissionFigures {
	var (
		mu  sync.Mutex
		out admissionFigures
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for w := range workers {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i += workers {
				body := mk(i)
				begun := time.Now()
				v, err := h.admit(ctx, webhook.PathMyApples, body)
				took := time.Since(begun)
				mu.Lock()
				out.latencies = append(out.latencies, took)
				switch {
				case err != nil:
					out.failed++
					if out.firstErr == "" {
						out.firstErr = err.Error()
					}
				case strings.Contains(v.message, "timed out"):
					out.timedOut++
					if out.firstErr == "" {
						out.firstErr = v.message
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(out.latencies)
	return out
}
