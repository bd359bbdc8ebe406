package cache

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

// A namespace the informer holds costs no API call. One it does not hold
// yet is waited for briefly, then read once from the API server, however
// many admissions ask at once, and its labels are what the namespaceSelector
// reads; one that does not exist, or cannot be read, is an
// UnknownNamespaceError. Each outcome is counted.
func TestEnsureNamespace(t *testing.T) {
	ap := fakecluster.AdmissionPolicy("prod-registries", 1, map[string]any{
		"match": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"env": "prod"}}},
		"pods":  map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
	})
	f := newFixture(t, ap, fakecluster.NamespaceMeta("prod", map[string]string{"env": "prod"}))
	// "fresh" exists on the API server, but its watch event never comes:
	// the informer lags, as it does while its watch is re-established.
	fresh := fakecluster.NamespaceMeta("fresh", map[string]string{"env": "prod"})
	fresh.Annotations = map[string]string{"team": "payments"}
	var gets atomic.Int64
	f.Meta.PrependReactor("get", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		switch a.(k8stesting.GetAction).GetName() {
		case "fresh":
			time.Sleep(50 * time.Millisecond) // long enough for the reads to overlap
			return true, fresh.DeepCopy(), nil
		case "broken":
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	f.start()
	c := f.cache
	ctx := t.Context()
	outcome := func(o string) float64 { return testutil.ToFloat64(c.metrics.unseenNamespaces.WithLabelValues(o)) }

	if err := c.EnsureNamespace(ctx, "prod"); err != nil || gets.Load() != 0 {
		t.Errorf("a namespace the informer holds: %v, %d reads", err, gets.Load())
	}

	// Unseen: judged without its labels, the Pod would pass.
	fakecluster.Allowed(t, c, fakecluster.PodRequest("fresh", "nginx"), true)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { errs[i] = c.EnsureNamespace(ctx, "fresh") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("an unseen namespace: %v", err)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("20 admissions at once read the unseen namespace %d times, want 1", n)
	}
	if l, ok := c.NamespaceLabels("fresh"); !ok || l["env"] != "prod" {
		t.Errorf("NamespaceLabels(fresh) = %v, %v after the read", l, ok)
	}
	if a := c.NamespaceAnnotations("fresh"); a["team"] != "payments" {
		t.Errorf("NamespaceAnnotations(fresh) = %v after the read", a)
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("fresh", "nginx"), false)
	if err := c.EnsureNamespace(ctx, "fresh"); err != nil || gets.Load() != 1 {
		t.Errorf("once read: %v, %d reads, want no more", err, gets.Load())
	}

	// Delivered by the informer within the wait: no read.
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := f.Meta.Tracker().Add(fakecluster.NamespaceMeta("late", map[string]string{"env": "prod"})); err != nil {
			t.Error(err)
		}
	}()
	if err := c.EnsureNamespace(ctx, "late"); err != nil {
		t.Errorf("a namespace the informer delivers within the wait: %v", err)
	}

	var unknown *UnknownNamespaceError
	if err := c.EnsureNamespace(ctx, "nowhere"); !errors.As(err, &unknown) || !unknown.NotFound || err.Error() != `namespace "nowhere" does not exist` {
		t.Errorf("a namespace that does not exist: %v", err)
	}
	if err := c.EnsureNamespace(ctx, "broken"); !errors.As(err, &unknown) || unknown.NotFound ||
		err.Error() != `namespace "broken" is not in the webhook's cache yet and reading it from the API server failed: connection refused` {
		t.Errorf("a namespace that cannot be read: %v", err)
	}
	if _, ok := c.NamespaceLabels("nowhere"); ok {
		t.Error("NamespaceLabels knows a namespace that does not exist")
	}
	for o, want := range map[string]float64{unseenInformer: 1, unseenRead: 1, unseenNotFound: 1, unseenError: 1} {
		if got := outcome(o); got != want {
			t.Errorf("%s{outcome=%q} = %v, want %v", MetricUnseenNamespaces, o, got, want)
		}
	}

	// The informer's delivery retires the copy read.
	if err := f.Meta.Tracker().Add(fresh.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	fakecluster.Eventually(t, "the informer's copy of fresh replaces the one read", func() bool {
		f.cache.nsReads.mu.Lock()
		defer f.cache.nsReads.mu.Unlock()
		_, read := f.cache.nsReads.read["fresh"]
		return !read
	})
	if l, ok := c.NamespaceLabels("fresh"); !ok || l["env"] != "prod" {
		t.Errorf("NamespaceLabels(fresh) = %v, %v from the informer", l, ok)
	}
}
