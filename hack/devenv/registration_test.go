package devenv_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/diff"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/quota"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// TestStateNames keeps the names the registration matches the webhook's
// state by the ones the webhook writes.
func TestStateNames(t *testing.T) {
	for got, want := range map[string]string{
		devenv.LastGoodConfigMap: cache.LastGoodConfigMap,
		devenv.LastGoodKeySecret: cache.LastGoodKeySecret,
		devenv.LedgerPrefix:      quota.LedgerPrefix,
	} {
		if got != want {
			t.Errorf("devenv matches %q, the webhook writes %q", got, want)
		}
	}
}

// TestWebhookConfigurationMatchesManifest keeps the local registration
// (devcluster, e2e) the one a cluster gets from manifests/webhook, apart
// from how the webhook is reached: a URL on 127.0.0.1 instead of the Service,
// and a caBundle of the throwaway CA instead of cainjector's.
func TestWebhookConfigurationMatchesManifest(t *testing.T) {
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "manifests", "webhook", "validatingwebhookconfiguration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &want); err != nil {
		t.Fatal(err)
	}
	got := devenv.WebhookConfiguration("https://127.0.0.1:9443", []byte("ca"), webhook.DefaultPolicyNamespace)
	if got.Name != want.Name {
		t.Errorf("name %q, manifest %q", got.Name, want.Name)
	}
	if len(got.Webhooks) != len(want.Webhooks) {
		t.Fatalf("%d webhooks, manifest %d", len(got.Webhooks), len(want.Webhooks))
	}
	for i := range want.Webhooks {
		g, w := got.Webhooks[i].DeepCopy(), want.Webhooks[i].DeepCopy()
		if g.ClientConfig.URL == nil || w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
			t.Fatalf("webhook %s: local one has no URL or manifest has no service path", w.Name)
		}
		if wantURL := "https://127.0.0.1:9443" + *w.ClientConfig.Service.Path; *g.ClientConfig.URL != wantURL {
			t.Errorf("webhook %s: URL %s, want %s", w.Name, *g.ClientConfig.URL, wantURL)
		}
		g.ClientConfig, w.ClientConfig = admissionregistrationv1.WebhookClientConfig{}, admissionregistrationv1.WebhookClientConfig{}
		if !equality.Semantic.DeepEqual(g, w) {
			t.Errorf("webhook %d differs from the manifest (-manifest +local):\n%s", i, diff.Diff(w, g))
		}
	}
}

// TestPodControllersWebhook checks that the Pod controllers' webhook sends
// the seven kinds that create Pods, by the objects themselves (no scale or
// status subresource), and is configured as the Pods' webhook is: the same
// failure policy, timeouts and namespaces left out, so a controller is never
// judged where its Pods would not be.
func TestPodControllersWebhook(t *testing.T) {
	vwc := devenv.WebhookConfiguration("https://127.0.0.1:9443", []byte("ca"), webhook.DefaultPolicyNamespace)
	byName := map[string]admissionregistrationv1.ValidatingWebhook{}
	for _, h := range vwc.Webhooks {
		byName[h.Name] = h
	}
	pods, ok := byName[devenv.PodsWebhook]
	if !ok {
		t.Fatalf("no webhook %s", devenv.PodsWebhook)
	}
	ctrl, ok := byName[devenv.PodControllersWebhook]
	if !ok {
		t.Fatalf("no webhook %s", devenv.PodControllersWebhook)
	}
	if got, want := *ctrl.ClientConfig.URL, "https://127.0.0.1:9443/validate-podcontrollers"; got != want {
		t.Errorf("URL %s, want %s", got, want)
	}

	var got []string
	for _, r := range ctrl.Rules {
		if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
			t.Errorf("rule %+v: operations %v, want CREATE and UPDATE", r.Rule, r.Operations)
		}
		if r.Scope == nil || *r.Scope != admissionregistrationv1.NamespacedScope {
			t.Errorf("rule %+v: scope %v, want Namespaced", r.Rule, r.Scope)
		}
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					got = append(got, g+"/"+v+"/"+res)
				}
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"/v1/replicationcontrollers",
		"apps/v1/daemonsets", "apps/v1/deployments", "apps/v1/replicasets", "apps/v1/statefulsets",
		"batch/v1/cronjobs", "batch/v1/jobs",
	}
	if !slices.Equal(got, want) {
		t.Errorf("matches %q, want %q", got, want)
	}

	// Everything but what it is and where it is sent is the Pods' webhook's.
	pods.Name, pods.ClientConfig, pods.Rules = ctrl.Name, ctrl.ClientConfig, ctrl.Rules
	if !equality.Semantic.DeepEqual(ctrl, pods) {
		t.Errorf("configured unlike the Pods' webhook (-pods +podcontrollers):\n%s", diff.Diff(pods, ctrl))
	}
}
