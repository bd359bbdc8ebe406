package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// memoryStage is the webhook's memory after one batch of objects was put
// in the cluster.
type memoryStage struct {
	Stage    string  `json:"stage"`
	Objects  int     `json:"objects"`
	RSSBytes int64   `json:"rssBytes"`
	Heap     float64 `json:"heapBytes"`
	// HeapPerObject is the live heap this batch added, per object.
	HeapPerObject float64 `json:"heapPerObjectBytes"`
	// Fill is how creating the batch went (retried creates).
	Fill fillStats `json:"fill"`
}

type memoryCounts struct {
	policies, unrelated, myApples, workers int
}

const memNamespaces = 10

// measureMemory fills the cluster in three batches, unrelated ConfigMaps
// first (the webhook must not even see them), then policy ConfigMaps, then
// MyApples, and reads the webhook's RSS and live heap after each.
func measureMemory(ctx context.Context, c clients, s *server, n memoryCounts, logf func(string, ...any)) ([]memoryStage, error) {
	// Policies are spread so that no namespace holds more than a namespace
	// may (--max-policies-per-namespace, left at its default).
	policyNamespaces := max(memNamespaces, (n.policies+carrier.DefaultPoliciesPerNamespace-1)/carrier.DefaultPoliciesPerNamespace)
	for i := range policyNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mem-%d", i)}}
		if err := ignoreExists(c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})); err != nil {
			return nil, fmt.Errorf("creating namespace %s: %w", ns.Name, err)
		}
	}
	basePolicies, err := s.metric(ctx, "policy_webhook_policies")
	if err != nil {
		return nil, err
	}
	var fill fillStats
	sample := func(stage string, objects int, prevHeap float64) (memoryStage, error) {
		heap, err := s.liveHeap(ctx)
		if err != nil {
			return memoryStage{}, err
		}
		p, err := readProc(s.child.pid())
		if err != nil {
			return memoryStage{}, err
		}
		st := memoryStage{Stage: stage, Objects: objects, RSSBytes: p.rssBytes, Heap: heap, Fill: fill}
		if objects > 0 {
			st.HeapPerObject = (heap - prevHeap) / float64(objects)
		}
		logf("memory %s: RSS %.1f MiB, heap %.1f MiB", stage, float64(p.rssBytes)/(1<<20), heap/(1<<20))
		return st, nil
	}
	base, err := sample("before", 0, 0)
	if err != nil {
		return nil, err
	}
	stages := []memoryStage{base}
	ns := func(i int) string { return fmt.Sprintf("mem-%d", i%memNamespaces) }

	t0 := time.Now()
	fill, err = createMany(ctx, n.unrelated, n.workers, func(ctx context.Context, i int) error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)},
			Data: map[string]string{"app.properties": fmt.Sprintf("feature.%d=true\nlog.level=info\nendpoint=https://svc-%d.example.com\n", i, i)}}
		_, err := c.kube.CoreV1().ConfigMaps(ns(i)).Create(ctx, cm, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating unrelated ConfigMaps: %w", err)
	}
	logf("created %d unrelated ConfigMaps in %s (%d retried: %s)", n.unrelated, time.Since(t0).Round(time.Millisecond), fill.Retries, fill.FirstRetryReason)
	// Nothing to wait for: the webhook does not watch unlabelled ConfigMaps.
	st, err := sample("+unrelated ConfigMaps", n.unrelated, stages[len(stages)-1].Heap)
	if err != nil {
		return nil, err
	}
	stages = append(stages, st)

	t0 = time.Now()
	fill, err = createMany(ctx, n.policies, n.workers, func(ctx context.Context, i int) error {
		pns := fmt.Sprintf("mem-%d", i%policyNamespaces)
		cm := devenv.PolicyConfigMap(pns, fmt.Sprintf("policy-%d", i), fmt.Sprintf(
			"pods:\n  allowedRegistries: [registry.example.com/, ghcr.io/acme/]\n  disallowedTags: [latest]\n  requiredLabels: [app]\n  forbidPrivileged: true\n  requireResourceLimits: [cpu, memory]\nmatch:\n  objectSelector:\n    matchLabels: {team: t%d}\n", i))
		_, err := c.kube.CoreV1().ConfigMaps(pns).Create(ctx, cm, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating policy ConfigMaps: %w", err)
	}
	logf("created %d policy ConfigMaps in %s (%d retried: %s)", n.policies, time.Since(t0).Round(time.Millisecond), fill.Retries, fill.FirstRetryReason)
	if err := waitMetric(ctx, s, "policy_webhook_policies", basePolicies+float64(n.policies)); err != nil {
		return nil, err
	}
	if st, err = sample("+policy ConfigMaps", n.policies, stages[len(stages)-1].Heap); err != nil {
		return nil, err
	}
	stages = append(stages, st)

	t0 = time.Now()
	fill, err = createMany(ctx, n.myApples, n.workers, func(ctx context.Context, i int) error {
		_, err := c.dyn.Resource(myApplesGVR).Namespace(ns(i)).Create(ctx, myApple(ns(i), fmt.Sprintf("apple-%d", i), 1), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating MyApples: %w", err)
	}
	logf("created %d MyApples in %s (%d retried: %s)", n.myApples, time.Since(t0).Round(time.Millisecond), fill.Retries, fill.FirstRetryReason)
	if err := waitMetric(ctx, s, "policy_webhook_cached_myapples", float64(n.myApples)); err != nil {
		return nil, err
	}
	if st, err = sample("+MyApples", n.myApples, stages[len(stages)-1].Heap); err != nil {
		return nil, err
	}
	return append(stages, st), nil
}

// waitMetric waits until the webhook's metric reaches at least want: the
// informers have delivered every object created.
func waitMetric(ctx context.Context, s *server, name string, want float64) error {
	// Every check is a scrape the webhook serves: not so often that it
	// competes with the informers it waits for.
	err := devenv.PollEvery(ctx, 100*time.Millisecond, time.Minute, func(ctx context.Context) error {
		v, err := s.metric(ctx, name)
		if err == nil && v < want {
			err = fmt.Errorf("at %.0f", v)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to reach %.0f: %w", name, want, err)
	}
	return nil
}
