package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// warnings collects the warnings the API server returns to a client.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// `kubectl apply --dry-run=server` of a new policy says what it would deny
// among the objects that exist, through the API server, and stores nothing.
func TestImpactWarningOnDryRun(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	for _, name := range []string{"web", "api"} {
		if err := createPod(ctx, pod(ns, name, nil, "evil.io/app:1"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s before any policy: %v", name, err)
		}
	}
	if err := createPod(ctx, pod(ns, "ok", nil, "registry.example.com/app:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	seen := &warnings{}
	cfg := rest.CopyConfig(env.cp.Config)
	cfg.WarningHandlerWithContext = seen
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cm := devenv.PolicyConfigMap(ns, "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n")
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("dry-run apply of the policy: %v", err)
	}
	want := "this policy would deny 2 Pods among existing objects: Pod " + ns + "/"
	seen.mu.Lock()
	got := strings.Join(seen.list, "\n")
	seen.mu.Unlock()
	if !strings.Contains(got, want) || !strings.Contains(got, "(pods.allowedRegistries)") || strings.Contains(got, ns+"/ok") {
		t.Errorf("warnings %q, want one starting %q naming web and api", got, want)
	}
	if _, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, "registries", metav1.GetOptions{}); err == nil {
		t.Error("the dry run stored the policy")
	}
}
