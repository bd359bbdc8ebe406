package faults

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/quota"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// TestStateOnlyTheWebhookWrites attacks the webhook's own state as a
// cluster-admin other than the webhook: writes refused while it is
// registered; behind its back (unregistered) a tampered last good version
// repaired by the leader within 10 s and a forged one not enforced after a
// restart; a reservation dated 2099 not counted; a deleted namespace's
// ledger removed within a minute.
func TestStateOnlyTheWebhookWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	pns := webhook.DefaultPolicyNamespace
	cfg, err := env.cp.AddUser("mallory", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cms := mallory.CoreV1().ConfigMaps(pns)

	team := namespace(t, "forged", nil)
	quotaNS := namespace(t, "ledger", nil)
	const strict = "pods:\n  allowedRegistries: [registry.example.com/]\n"
	if err := putPolicy(ctx, team, "registries", strict); err != nil {
		t.Fatal(err)
	}
	if err := putPolicy(ctx, quotaNS, "limit", "myApples:\n  maxTotalQuantityPerNamespace: 10\n"); err != nil {
		t.Fatal(err)
	}
	h := startHook(t, inprocess.Options{LedgerCleanupInterval: time.Second})
	nginx := podReview(team, nil, "nginx")
	h.converge(t, 30*time.Second, admissionCase{"the strict policy", webhook.PathPods, nginx, false, "not under an allowed registry"})

	// Invalid behind the webhook's back: the leader persists the strict
	// version, signed.
	if err := putPolicy(ctx, team, "registries", "pods:\n  allowedRegistries: [https://nope/]\n"); err != nil {
		t.Fatal(err)
	}
	key := cache.LastGoodKey(policy.Source{Kind: policy.SourceConfigMap, Namespace: team, Name: "registries"})
	var persisted string
	waitUntil(t, ctx, 30*time.Second, "the last good version persisted", func() bool {
		cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
		persisted = ""
		if err == nil {
			persisted = cm.Data[key]
		}
		return strings.Contains(persisted, "registry.example.com/") && strings.Contains(persisted, "signature: hmac-sha256:")
	})

	// Registered: the admin's writes are refused, with a message.
	vwc := devenv.WebhookConfiguration(h.URL, h.CA.CertPEM(), pns)
	if err := devenv.Register(ctx, env.client, vwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = devenv.Unregister(context.Background(), env.client, devenv.ConfigurationName) })
	if err := devenv.WaitCalled(ctx, env.client, team); err != nil {
		t.Fatal(err)
	}
	weak := strings.Replace(persisted, "registry.example.com/", "docker.io/", 1)
	refusals := map[string]func() error{
		"update the last good versions": func() error {
			cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data[key] = weak
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		},
		"delete the last good versions": func() error {
			return cms.Delete(ctx, cache.LastGoodConfigMap, metav1.DeleteOptions{})
		},
		"create a quota ledger": func() error {
			_, err := cms.Create(ctx, forgedLedger(pns, "nowhere"), metav1.CreateOptions{})
			return err
		},
		"replace the key": func() error {
			s, err := mallory.CoreV1().Secrets(pns).Get(ctx, cache.LastGoodKeySecret, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Data[cache.LastGoodKeyData] = []byte(strings.Repeat("k", cache.LastGoodKeyBytes))
			_, err = mallory.CoreV1().Secrets(pns).Update(ctx, s, metav1.UpdateOptions{})
			return err
		},
	}
	for what, write := range refusals {
		err := write()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `denied the request: policy-webhook:`) || !strings.Contains(err.Error(), "state only the webhook writes") {
			t.Errorf("a cluster-admin's attempt to %s: %v, want it refused by the webhook with a message", what, err)
			continue
		}
		t.Logf("%s: refused: %v", what, err)
	}
	// The webhook's own writes still go through: a MyApple reserves its
	// quota in a ledger it creates.
	if _, err := env.dyn.Resource(myApples).Namespace(quotaNS).Create(ctx, apple(quotaNS, "first", "red", 3), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a MyApple under the quota, the webhook writing its ledger: %v", err)
	}
	if _, err := cms.Get(ctx, quota.LedgerPrefix+quotaNS, metav1.GetOptions{}); err != nil {
		t.Fatalf("the webhook's ledger: %v", err)
	}

	// Unregistered: tampered, and an entry invented for a policy that never
	// had one; the leader repairs within 10 s.
	if err := devenv.Unregister(ctx, env.client, devenv.ConfigurationName); err != nil {
		t.Fatal(err)
	}
	never := policy.Source{Kind: policy.SourceConfigMap, Namespace: team, Name: "never-good"}
	if err := putPolicy(ctx, team, never.Name, "pods:\n  allowedRegistries: [ftp://x/]\n"); err != nil {
		t.Fatal(err)
	}
	invented := strings.NewReplacer("registries", never.Name, "registry.example.com/", "docker.io/").Replace(persisted)
	waitUntil(t, ctx, 30*time.Second, "the admin's tampering stored", func() bool {
		cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cm.Data[key] = weak
		cm.Data[cache.LastGoodKey(never)] = invented
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err == nil
	})
	tampered := time.Now()
	waitUntil(t, ctx, 10*time.Second, "the leader repairs the last good versions", func() bool {
		cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
		return err == nil && maps.Equal(cm.Data, map[string]string{key: persisted})
	})
	t.Logf("tampered entry repaired and invented entry removed by the leader in %s", time.Since(tampered).Round(time.Millisecond))
	h.converge(t, 5*time.Second, admissionCase{"the strict version, restored", webhook.PathPods, nginx, false, "not under an allowed registry"})

	// A reservation dated 2099 in a ledger rewritten by hand counts for
	// nothing: 5 more fit under 10 beside the 3 reserved.
	waitUntil(t, ctx, 30*time.Second, "the forged reservation stored", func() bool {
		cm, err := cms.Get(ctx, quota.LedgerPrefix+quotaNS, metav1.GetOptions{})
		if err != nil {
			return false
		}
		forged := forgedLedger(pns, quotaNS)
		cm.Data = forged.Data
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err == nil
	})
	v, err := h.admit(ctx, webhook.PathMyApples, review("MyApple", policy.ResourceApples, quotaNS, "second", apple(quotaNS, "second", "red", 5).Object, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := expect(v, true, ""); err != nil {
		t.Errorf("a MyApple under the quota beside a reservation dated 2099: %v", err)
	}
	if cm, err := cms.Get(ctx, quota.LedgerPrefix+quotaNS, metav1.GetOptions{}); err != nil || strings.Contains(cm.Data[quota.LedgerKey], "ghost") {
		t.Errorf("the ledger after the next reservation: %v %v, want the 2099 reservation dropped", cm.Data, err)
	}

	// Its namespace deleted, the ledger goes within a minute.
	if err := env.client.CoreV1().Namespaces().Delete(ctx, quotaNS, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// No namespace controller here: finalize it as the controller would.
	waitUntil(t, ctx, 30*time.Second, "the namespace finalized", func() bool {
		ns, err := env.client.CoreV1().Namespaces().Get(ctx, quotaNS, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true
		}
		if err != nil {
			return false
		}
		ns.Spec.Finalizers = nil
		_, _ = env.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
		return false
	})
	deleted := time.Now()
	waitUntil(t, ctx, time.Minute, "the deleted namespace's ledger removed", func() bool {
		_, err := cms.Get(ctx, quota.LedgerPrefix+quotaNS, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	t.Logf("the deleted namespace's ledger removed in %s", time.Since(deleted).Round(time.Millisecond))

	// Forged while no replica runs: the replica that starts enforces the
	// stand-in, not the forgery, and removes it.
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, 30*time.Second, "the forgery stored", func() bool {
		cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cm.Data[key] = weak
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err == nil
	})
	h = startHook(t, inprocess.Options{})
	v, err = h.admit(ctx, webhook.PathPods, podReview(team, nil, "docker.io/library/nginx:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := expect(v, false, "no good version of it is known"); err != nil {
		t.Errorf("after a restart, a Pod the forged entry allows: %v", err)
	}
	waitUntil(t, ctx, 10*time.Second, "the forged entry removed", func() bool {
		cm, err := cms.Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
		return err == nil && cm.Data[key] == ""
	})
}

// forgedLedger is a ledger for namespace ns holding a reservation of 1,000
// dated 2099.
func forgedLedger(pns, ns string) *corev1.ConfigMap {
	data, err := json.Marshal(map[string]any{"reservations": []quota.Reservation{{
		UID: "forged", Name: "ghost", Quantity: 1000, At: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
	}}})
	if err != nil {
		panic(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: quota.LedgerPrefix + ns, Namespace: pns, Labels: map[string]string{quota.NamespaceLabel: ns}},
		Data:       map[string]string{quota.LedgerKey: string(data)},
	}
}

// waitUntil polls ok every 100 ms for at most within, failing t after.
func waitUntil(t *testing.T, ctx context.Context, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
