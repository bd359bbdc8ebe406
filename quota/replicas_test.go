package quota_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

var myApples = schema.GroupVersionResource{Group: "stable.example.com", Version: "v1", Resource: "myapples"}

// TestQuotaAcrossReplicas runs two webhook replicas behind one address that
// deals the API server's connections to them in turn, and creates 20
// MyApples of 10 at once against a quota of 60, ten rounds: each replica
// answers some of them, and the namespace never holds more than 60.
func TestQuotaAcrossReplicas(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}

	var replicas [2]*inprocess.Webhook
	var regs [2]*prometheus.Registry
	var backends []string
	var caBundle []byte
	for i := range replicas {
		regs[i] = prometheus.NewRegistry()
		wh, err := inprocess.Start(ctx, inprocess.Options{RestConfig: cp.Config, MetricsRegistry: regs[i]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wh.Stop() })
		if err := wh.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		replicas[i] = wh
		backends = append(backends, strings.TrimPrefix(wh.URL, "https://"))
		caBundle = append(caBundle, wh.CA.CertPEM()...)
	}
	front := testenv.RoundRobin(t, backends)
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration("https://"+front, caBundle, webhook.DefaultPolicyNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, cp.Client, webhook.DefaultPolicyNamespace); err != nil {
		t.Fatal(err)
	}

	const ns, rounds, burst, quantity, limit = "team-quota", 10, 20, 10, 60
	if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx,
		devenv.PolicyConfigMap(ns, "quota", fmt.Sprintf("myApples:\n  maxTotalQuantityPerNamespace: %d\n", limit)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	apples := dyn.Resource(myApples).Namespace(ns)
	tooMuch := func(q int64) func() error {
		return func() error {
			_, err := apples.Create(ctx, apple(ns, "probe", q), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil || !strings.Contains(err.Error(), "myApples.maxTotalQuantityPerNamespace") {
				return fmt.Errorf("a dry-run create of %d: %w, want the quota's refusal", q, err)
			}
			return nil
		}
	}
	// Both replicas enforce the policy (each connection goes to the next).
	for range 2 * len(replicas) {
		testenv.Eventually(t, 15*time.Second, "the quota policy in force", tooMuch(limit+1))
	}

	for round := range rounds {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range burst {
			wg.Go(func() {
				<-start
				_, err := apples.Create(ctx, apple(ns, fmt.Sprintf("r%d-%02d", round, i), quantity), metav1.CreateOptions{})
				switch {
				case err == nil:
					admitted.Add(1)
				case !strings.Contains(err.Error(), "myApples.maxTotalQuantityPerNamespace"):
					t.Errorf("round %d: create %d: %v", round, i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		list, err := apples.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, a := range list.Items {
			q, _, _ := unstructured.NestedInt64(a.Object, "spec", "quantity")
			stored += q
		}
		t.Logf("round %d: %d of %d admitted, %d stored", round, admitted.Load(), burst, stored)
		if stored > limit {
			t.Fatalf("round %d: the namespace holds %d, above its quota of %d", round, stored, limit)
		}
		if admitted.Load() != limit/quantity {
			t.Errorf("round %d: %d admitted, want exactly %d", round, admitted.Load(), limit/quantity)
		}
		if err := apples.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		// Both replicas' caches have seen the deletions once each admits
		// the whole limit again.
		for range 2 * len(replicas) {
			testenv.Eventually(t, 15*time.Second, "the quota freed", func() error {
				_, err := apples.Create(ctx, apple(ns, "probe", limit), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				return err
			})
		}
	}

	for i, reg := range regs {
		n := promtest.Sum(t, reg, "policy_webhook_quota_reservations_total", map[string]string{"outcome": "reserved"})
		t.Logf("replica %d reserved %v, after %v conflicts with the other", i, n, promtest.Sum(t, reg, "policy_webhook_quota_conflicts_total", nil))
		if n == 0 {
			t.Errorf("replica %d reserved nothing: the test did not spread admissions over both replicas", i)
		}
	}
}

func apple(ns, name string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       map[string]any{"color": "red", "size": "small", "quantity": quantity},
	}}
}
