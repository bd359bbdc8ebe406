package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

var (
	myApples          = schema.GroupVersionResource{Group: "stable.example.com", Version: "v1", Resource: "myapples"}
	admissionPolicies = schema.GroupVersionResource{Group: "policy.example.com", Version: "v1alpha1", Resource: "admissionpolicies"}
	dryRun            = []string{metav1.DryRunAll}
)

// testLabel labels each test namespace with its own name, so a cluster-wide
// policy (an AdmissionPolicy, or a ConfigMap in policy-system) can be aimed
// at one test's namespaces with match.namespaceSelector.
const testLabel = "e2e.policy.example.com/namespace"

// propagationTimeout bounds how long a test waits for the webhook's cache
// to follow a change; the design target is milliseconds.
const propagationTimeout = 15 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// newNamespace creates a namespace for one test. Without a namespace
// controller in envtest it is never really deleted, which is harmless.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	slug := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(slug) > 40 {
		slug = strings.TrimRight(slug[:40], "-")
	}
	name := "e2e-" + slug + "-" + rand.String(5)
	all := map[string]string{testLabel: name}
	for k, v := range labels {
		all[k] = v
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: all}}
	if _, err := env.client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = env.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// putPolicy creates or updates a policy ConfigMap, returning the API
// server's error (a refusal by the webhook, for an invalid policy).
func putPolicy(ctx context.Context, ns, name, spec string) error {
	cms := env.client.CoreV1().ConfigMaps(ns)
	cm := devenv.PolicyConfigMap(ns, name, spec)
	cur, err := cms.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	cur.Labels, cur.Data = cm.Labels, cm.Data
	_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func mustPutPolicy(t *testing.T, ns, name, spec string) {
	t.Helper()
	if err := putPolicy(testCtx(t), ns, name, spec); err != nil {
		t.Fatalf("writing policy ConfigMap %s/%s: %v", ns, name, err)
	}
}

// denial is the error string a user sees (kubectl prints it after
// `Error from server (...): error when creating "...": `).
func denial(webhook, message string) string {
	return fmt.Sprintf("admission webhook %q denied the request: %s", webhook, message)
}

func podDenial(message string) string   { return denial(devenv.PodsWebhook, message) }
func appleDenial(message string) string { return denial(devenv.MyApplesWebhook, message) }

func wantDenied(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted; want refused with:\n%s", want)
	}
	if err.Error() != want {
		t.Fatalf("refused with:\n%s\nwant:\n%s", err, want)
	}
}

func wantAdmitted(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
}

// eventually polls try until it returns nil, failing the test with the last
// error after propagationTimeout. It returns how long it took.
func eventually(t *testing.T, what string, try func() error) time.Duration {
	t.Helper()
	return testenv.Eventually(t, propagationTimeout, what, try)
}

// eventuallyDenied waits until attempt is refused with exactly want, which
// is how a test knows the webhook's cache has caught up with a change.
func eventuallyDenied(t *testing.T, attempt func() error, want string) time.Duration {
	t.Helper()
	return eventually(t, "refusal "+want, func() error {
		err := attempt()
		if err == nil {
			return fmt.Errorf("still admitted")
		}
		if err.Error() != want {
			return fmt.Errorf("refused with %q", err.Error())
		}
		return nil
	})
}

func eventuallyAdmitted(t *testing.T, attempt func() error) time.Duration {
	t.Helper()
	return eventually(t, "admission", attempt)
}

// pod is a minimal Pod with one container per image (c0, c1, ...).
func pod(ns, name string, labels map[string]string, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return p
}

func createPod(ctx context.Context, p *corev1.Pod, opts metav1.CreateOptions) error {
	_, err := env.client.CoreV1().Pods(p.Namespace).Create(ctx, p, opts)
	return err
}

// apple is a MyApple.
func apple(ns, name, color, size string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       map[string]any{"color": color, "size": size, "quantity": quantity},
	}}
}

func createApple(ctx context.Context, a *unstructured.Unstructured, opts metav1.CreateOptions) error {
	_, err := env.dyn.Resource(myApples).Namespace(a.GetNamespace()).Create(ctx, a, opts)
	return err
}

// updateApple reads a MyApple, changes it with edit, and writes it back.
func updateApple(ctx context.Context, ns, name string, edit func(*unstructured.Unstructured), opts metav1.UpdateOptions) error {
	api := env.dyn.Resource(myApples).Namespace(ns)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading MyApple %s/%s: %w", ns, name, err)
	}
	edit(cur)
	_, err = api.Update(ctx, cur, opts)
	return err
}

func setQuantity(q int64) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { _ = unstructured.SetNestedField(u.Object, q, "spec", "quantity") }
}

func setColor(c string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { _ = unstructured.SetNestedField(u.Object, c, "spec", "color") }
}

// warningClient is a clientset that keeps the warnings the API server sends
// back (kubectl prints them as "Warning: ...").
type warningClient struct {
	kubernetes.Interface
	mu       sync.Mutex
	warnings []string
}

func newWarningClient(t *testing.T) *warningClient {
	t.Helper()
	wc := &warningClient{}
	cfg := rest.CopyConfig(env.cfg)
	cfg.WarningHandler = wc
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("building a clientset: %v", err)
	}
	wc.Interface = cs
	return wc
}

func (w *warningClient) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// take returns the warnings received since the last take.
func (w *warningClient) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// registryScenario puts a registry allowlist policy in a fresh namespace and
// waits until it is in force. It returns a Pod the policy admits, one it
// refuses, and the refusal a user sees for that one.
func registryScenario(ctx context.Context, t *testing.T) (good, bad *corev1.Pod, refused string) {
	t.Helper()
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n")
	refused = podDenial(fmt.Sprintf(`policy violation: ConfigMap %s/registries pods.allowedRegistries spec.containers[0].image: `+
		`image "nginx:1.27" resolves to docker.io/library/nginx:1.27, which is not under an allowed registry (registry.example.com/)`, ns))
	good = pod(ns, "good", nil, "registry.example.com/team/web:1.0")
	bad = pod(ns, "bad", nil, "nginx:1.27")
	eventuallyDenied(t, func() error { return createPod(ctx, bad, metav1.CreateOptions{DryRun: dryRun}) }, refused)
	return good, bad, refused
}

// isRenewal tells a watch the informers renew on their own schedule (every
// 5 to 10 minutes) from a request made to answer an admission.
func isRenewal(r string) bool {
	return strings.Contains(r, "watch=true") || strings.Contains(r, "watch=1")
}

// isBookkeeping tells what the cache writes in the background, whenever it
// gets to it (Events, status, leader and heartbeat Leases), from a request
// made to answer an admission.
func isBookkeeping(r string) bool {
	return strings.Contains(r, "/leases") ||
		!strings.HasPrefix(r, "GET ") && (strings.Contains(r, "/events") || strings.Contains(r, "/status"))
}
