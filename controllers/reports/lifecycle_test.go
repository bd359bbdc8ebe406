package reports_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restfake "k8s.io/client-go/rest/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// quotaByColor is the quota-by-colour example of README.md and docs/cel.md.
const quotaByColor = workload.QuotaByColorPolicy

// livePolicies is the policy cache as the audit sees it: a snapshot that
// tests swap, and cluster state with the MyApples listClient serves.
type livePolicies struct {
	*check.Cluster
	mu      sync.Mutex
	snap    *cache.Snapshot
	swapped chan struct{}
}

func (p *livePolicies) WaitForSync(context.Context) bool { return true }
func (p *livePolicies) Swapped() <-chan struct{}         { return p.swapped }
func (p *livePolicies) Snapshot() *cache.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

func (p *livePolicies) swap(policies ...*policy.Policy) {
	p.mu.Lock()
	p.snap = &cache.Snapshot{Set: policy.NewSet(policies)}
	p.mu.Unlock()
	select {
	case p.swapped <- struct{}{}:
	default:
	}
}

// appleServer serves no Pods and n MyApples in namespace ns, in the pages
// asked for, each taking pageDelay to arrive (an API server under load).
func appleServer(t *testing.T, ns string, n int, pageDelay time.Duration) rest.Interface {
	t.Helper()
	items := make([]json.RawMessage, n)
	for i := range items {
		b, err := json.Marshal(map[string]any{
			"apiVersion": "stable.example.com/v1", "kind": "MyApple",
			"metadata": map[string]any{"name": fmt.Sprintf("apple-%05d", i), "namespace": ns, "uid": fmt.Sprintf("uid-%d", i)},
			"spec":     map[string]any{"color": []string{"red", "green", "blue", "yellow"}[i%4], "size": "small", "quantity": 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		items[i] = b
	}
	respond := func(v any) (*http.Response, error) {
		body, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(body))}, nil
	}
	return &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client: restfake.CreateHTTPClient(func(req *http.Request) (*http.Response, error) {
			switch req.URL.Path {
			case "/api/v1/pods":
				return respond(map[string]any{"apiVersion": "v1", "kind": "PodList", "metadata": map[string]any{}, "items": []any{}})
			case "/apis/stable.example.com/v1/myapples":
			default:
				return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader([]byte("{}")))}, nil
			}
			select {
			case <-req.Context().Done():
				return nil, req.Context().Err()
			case <-time.After(pageDelay):
			}
			from, _ := strconv.Atoi(req.URL.Query().Get("continue"))
			limit, _ := strconv.Atoi(req.URL.Query().Get("limit"))
			to := min(from+limit, n)
			meta := map[string]any{}
			if to < n {
				meta["continue"] = strconv.Itoa(to)
			}
			return respond(map[string]any{"apiVersion": "stable.example.com/v1", "kind": "MyAppleList", "metadata": meta, "items": items[from:to]})
		}),
	}
}

// newLifecycleAuditor is an Auditor over n MyApples of namespace orchard,
// the quota-by-colour example in force.
func newLifecycleAuditor(t *testing.T, n int, pageDelay time.Duration) (*reports.Auditor, *livePolicies, *prometheus.Registry, *policy.Policy) {
	t.Helper()
	const ns = "orchard"
	cluster := check.NewCluster()
	cluster.SetNamespace(ns, nil, nil)
	for i := range n {
		cluster.SetMyApple(ns, cel.Apple{Name: fmt.Sprintf("apple-%05d", i), Color: []string{"red", "green", "blue", "yellow"}[i%4], Size: "small", Quantity: 1})
	}
	p, err := carrier.New().CompileDocument(policy.Source{Kind: policy.SourceConfigMap, Namespace: ns, Name: "colors"}, "policy-system", "1", []byte(quotaByColor))
	if err != nil {
		t.Fatal(err)
	}
	live := &livePolicies{Cluster: cluster, swapped: make(chan struct{}, 1)}
	live.swap(p)
	<-live.swapped
	reg := prometheus.NewRegistry()
	a, err := reports.New(reports.Config{
		Policies:  live,
		REST:      appleServer(t, ns, n, pageDelay),
		Dynamic:   dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()),
		Discovery: &discoveryfake.FakeDiscovery{Fake: &k8stesting.Fake{}},
		Interval:  time.Hour,
		Debounce:  50 * time.Millisecond,
		Log:       testr.New(t),
		Metrics:   reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a, live, reg, p
}

func sweeps(reg *prometheus.Registry, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != reports.MetricSweeps {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	begun := time.Now()
	for !cond() {
		if time.Since(begun) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(begun)
}

// A sweep of 10,000 MyApples under the quota-by-colour example, paced to
// its CPU share, ends well within 10 s.
func TestSweepOf10000MyApples(t *testing.T) {
	a, _, _, _ := newLifecycleAuditor(t, 10_000, 0)
	begun := time.Now()
	s, err := a.Sweep(context.Background())
	took := time.Since(begun)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swept %d MyApples in %s, %d violations", s.Totals.Judged[policy.KindMyApple], took.Round(time.Millisecond), s.Violations)
	if s.Totals.Judged[policy.KindMyApple] != 10_000 || s.Violations != 10_000 {
		t.Errorf("judged %d, %d violations; want 10,000 of each (every color has 2,500)", s.Totals.Judged[policy.KindMyApple], s.Violations)
	}
	if took > 10*time.Second {
		t.Errorf("the sweep took %s, want at most 10s", took)
	}
}

// Deleting the policy a sweep judges stops the sweep at once, and another
// starts against the policies now in force.
func TestSweepCancelledWhenThePoliciesChange(t *testing.T) {
	// Slow pages: the sweep is still running when the policy goes.
	a, live, reg, _ := newLifecycleAuditor(t, 10_000, 200*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Start(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(500 * time.Millisecond) // into the sweep
	if sweeps(reg, "ok") != 0 {
		t.Fatal("the first sweep ended before the policy was deleted: make the pages slower")
	}
	live.swap() // the policy is deleted
	took := waitFor(t, "the sweep stopped", 5*time.Second, func() bool { return sweeps(reg, "cancelled") == 1 })
	t.Logf("the sweep stopped %s after the policy's deletion", took)
	if took > time.Second {
		t.Errorf("the sweep stopped %s after the policy's deletion, want within 1s", took)
	}
	// The next sweep, against no policy, runs to its end.
	waitFor(t, "a sweep against the new policies", 30*time.Second, func() bool { return sweeps(reg, "ok") == 1 })
	if n := sweeps(reg, "failed"); n != 0 {
		t.Errorf("%v sweeps failed", n)
	}
}
