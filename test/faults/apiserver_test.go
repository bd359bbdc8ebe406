package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// outage is how long the API server stays down: long enough that
// client-go's reflector backoff (0.8 s doubling, jittered up to 60 s)
// would be well past its first steps.
const outage = 30 * time.Second

// currentWithin is how soon after the API server is back every informer
// must be current again.
const currentWithin = 5 * time.Second

// informers are the policy cache's informers, as its metrics label them.
var informers = []string{"configmaps", "admissionpolicies", "myapples", "namespaces", "policyexceptions"}

// carriers is one policy of each carrier and the cluster state rules read,
// each with an admission whose verdict the test flips by an edit.
type carriers struct {
	id                  string
	pods, apples, quota string // namespaces
	registries, colors  string // ConfigMap in pods, AdmissionPolicy
	before              []admissionCase
	afterEdits          func(t *testing.T) // edits each carrier
	after               []admissionCase    // verdicts once the edits are in force
	newNamespace        string
}

// setUpCarriers writes a ConfigMap policy, an AdmissionPolicy selecting
// namespaces by label, and a quota over five MyApples of 10.
func setUpCarriers(t *testing.T, prefix string) *carriers {
	t.Helper()
	ctx := t.Context()
	c := &carriers{id: fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)}
	label := map[string]string{"fault": c.id}
	c.pods = namespace(t, prefix+"-pods", nil)
	c.apples = namespace(t, prefix+"-apples", label)
	c.quota = namespace(t, prefix+"-quota", nil)
	c.registries, c.colors = "registries", "colors-"+c.id
	if err := putPolicy(ctx, c.pods, c.registries, "pods:\n  allowedRegistries: [registry.example.com/]\n"); err != nil {
		t.Fatal(err)
	}
	colors := func(allowed string) map[string]any {
		return map[string]any{
			"match":    map[string]any{"kinds": []any{"MyApple"}, "namespaceSelector": map[string]any{"matchLabels": map[string]any{"fault": c.id}}},
			"myApples": map[string]any{"allowedColors": []any{allowed}},
		}
	}
	putAdmissionPolicy(t, c.colors, colors("red"))
	if err := putPolicy(ctx, c.quota, "quota", "myApples:\n  maxTotalQuantityPerNamespace: 60\n"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := env.dyn.Resource(myApples).Namespace(c.quota).Create(ctx, apple(c.quota, fmt.Sprintf("a%d", i), "red", 10), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.before = []admissionCase{
		{"allowed registry", webhook.PathPods, podReview(c.pods, nil, "registry.example.com/app:1"), true, ""},
		{"denied registry", webhook.PathPods, podReview(c.pods, nil, "docker.io/library/nginx:1.27"), false, "not under an allowed registry"},
		{"allowed color", webhook.PathMyApples, appleReview(c.apples, "x", "red", 1), true, ""},
		{"denied color", webhook.PathMyApples, appleReview(c.apples, "x", "green", 1), false, `color "green" is not allowed`},
		{"within the quota", webhook.PathMyApples, appleReview(c.quota, "x", "red", 10), true, ""},
	}
	c.newNamespace = fmt.Sprintf("%s-new", c.id)
	c.afterEdits = func(t *testing.T) {
		t.Helper()
		ctx := t.Context()
		if err := putPolicy(ctx, c.pods, c.registries, "pods:\n  allowedRegistries: [docker.io/]\n"); err != nil {
			t.Error(err)
		}
		putAdmissionPolicy(t, c.colors, colors("green"))
		if _, err := env.dyn.Resource(myApples).Namespace(c.quota).Create(ctx, apple(c.quota, "a5", "red", 10), metav1.CreateOptions{}); err != nil {
			t.Error(err)
		}
		if err := env.cp.EnsureNamespace(ctx, c.newNamespace, label); err != nil {
			t.Error(err)
		}
		t.Cleanup(func() {
			_ = env.client.CoreV1().Namespaces().Delete(context.Background(), c.newNamespace, metav1.DeleteOptions{})
		})
	}
	c.after = []admissionCase{
		{"ConfigMap edit in force", webhook.PathPods, podReview(c.pods, nil, "registry.example.com/app:1"), false, "not under an allowed registry"},
		{"AdmissionPolicy edit in force", webhook.PathMyApples, appleReview(c.apples, "x", "red", 1), false, `color "red" is not allowed`},
		{"new MyApple counted by the quota", webhook.PathMyApples, appleReview(c.quota, "x", "red", 10), false, "above the limit 60"},
		{"new namespace's labels read", webhook.PathMyApples, appleReview(c.newNamespace, "x", "red", 1), false, `color "red" is not allowed`},
	}
	return c
}

// The API server killed for 30 s and started again on the same etcd: the
// webhook answers every admission from its cache and stays ready
// throughout; a second replica with a 5 s staleness bound goes unready and
// says why, then ready again; after the restart a policy edit of each
// carrier, a new MyApple and a new namespace are in force within 5 s.
func TestAPIServerRestart(t *testing.T) {
	h := startHook(t, inprocess.Options{})
	strict := startHook(t, inprocess.Options{MaxCacheStaleness: 5 * time.Second})
	c := setUpCarriers(t, "restart")
	for _, cs := range c.before {
		h.converge(t, 10*time.Second, cs)
	}
	heapBefore := heap()

	ctx := t.Context()
	var unready atomic.Int64
	var strictUnready atomic.Value
	probeStop := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			if ok, err := h.Ready(ctx); err != nil || !ok {
				unready.Add(1)
			}
			if msg := readyzCheck(ctx, strict, "cache-current"); msg != "" && strictUnready.Load() == nil {
				strictUnready.Store(msg)
			}
			select {
			case <-probeStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	tr := startTraffic(ctx, h, 2, c.before)
	killed := time.Now()
	if err := env.cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(outage - time.Since(killed)):
	case <-ctx.Done():
	}
	sent := tr.end(t, fmt.Sprintf("API server down %s", outage))
	tr = startTraffic(ctx, h, 2, c.before)
	if err := env.cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	sent += tr.end(t, fmt.Sprintf("API server restarting (%s)", ready.Sub(killed)-outage))
	close(probeStop)
	<-probeDone
	c.afterEdits(t)
	back := serving(t)
	t.Logf("API server down %s; /readyz ok %s after it was killed, every resource's watch served %s after that",
		outage, ready.Sub(killed).Round(time.Millisecond), back.Sub(ready).Round(time.Millisecond))

	var slowest time.Duration
	for _, cs := range c.after {
		h.converge(t, 2*currentWithin, cs)
		took := time.Since(back)
		t.Logf("%s %s after the API server served every watch (%s after /readyz)", cs.name, took.Round(time.Millisecond), time.Since(ready).Round(time.Millisecond))
		slowest = max(slowest, took)
		if took > currentWithin {
			t.Errorf("%s only %s after the API server served every watch, want within %s", cs.name, took.Round(time.Millisecond), currentWithin)
		}
	}
	for _, inf := range informers {
		if v := promtest.Sum(t, h.reg, "policy_webhook_cache_watch_errors_total", map[string]string{"informer": inf}); v == 0 {
			t.Errorf("no watch error counted for the %s informer during the outage", inf)
		}
	}
	testenv.Eventually(t, currentWithin, "every informer current", func() error {
		for _, inf := range informers {
			if v := promtest.Sum(t, h.reg, "policy_webhook_cache_stale_seconds", map[string]string{"informer": inf}); v != 0 {
				return fmt.Errorf("the %s informer stale for %.1f s", inf, v)
			}
		}
		return nil
	})

	if n := unready.Load(); n != 0 {
		t.Errorf("/readyz failed %d times during the outage", n)
	}
	msg, _ := strictUnready.Load().(string)
	if !strings.Contains(msg, "informer has had no watch open on the API server") {
		t.Errorf("the replica with a 5 s staleness bound never said its cache was stale: /readyz/cache-current %q", msg)
	} else {
		t.Logf("replica with a 5 s bound, during the outage: /readyz/cache-current %q", firstLine(msg))
	}
	testenv.Eventually(t, currentWithin, "the strict replica ready again", func() error {
		if msg := readyzCheck(ctx, strict, "cache-current"); msg != "" {
			return fmt.Errorf("cache-current: %s", msg)
		}
		return nil
	})
	heapAfter := heap()
	t.Logf("figures: %d admissions during the fault, 0 failed, 0 wrong (checked above); every informer current %s after the restart; heap %s before, %s after",
		sent, slowest.Round(time.Millisecond), mib(heapBefore), mib(heapAfter))
}

// serving waits until the API server answers a watch of each resource the
// policy cache watches, and returns when. A restarted kube-apiserver reports
// /readyz ok seconds before it serves watches of custom resources (their
// watch caches are still being filled), and no client can be current before
// that.
func serving(t *testing.T) time.Time {
	t.Helper()
	for _, gvr := range []schema.GroupVersionResource{
		corev1.SchemeGroupVersion.WithResource("configmaps"), v1alpha1.Resource, myApples, corev1.SchemeGroupVersion.WithResource("namespaces"), v1alpha1.ExceptionResource,
	} {
		err := devenv.Poll(t.Context(), time.Minute, func(ctx context.Context) error {
			w, err := env.dyn.Resource(gvr).Watch(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("watching %s: %w", gvr.Resource, err)
			}
			w.Stop()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return time.Now()
}

// readyzCheck returns "" when /readyz/<check> answers 200, else its body
// (or why it could not be read).
func readyzCheck(ctx context.Context, h *hook, check string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.HealthAddr+"/readyz/"+check, nil)
	if err != nil {
		return err.Error()
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode == http.StatusOK {
		return ""
	}
	return fmt.Sprintf("HTTP %d: %s", res.StatusCode, body)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
