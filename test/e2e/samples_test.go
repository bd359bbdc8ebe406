package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// expectAnnotation on each judged sample says what must happen to it:
// allow, warn (admitted with warnings) or deny.
const expectAnnotation = "policy.example.com/expect"

// TestSamplesThroughAPIServer applies manifests/samples in file order, as
// the README tells a newcomer to, through a control plane of its own (the
// samples' cluster-wide policies would judge every other test's objects)
// with the webhook registered, and holds every Pod and MyApple to the
// verdict its sample expects and to the verdict `policy-webhook check`
// gives offline, with the same rules: the CEL samples included.
func TestSamplesThroughAPIServer(t *testing.T) {
	ctx := testCtx(t)
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: env.log.WithName("samples")})
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	wh := inprocess.StartForTest(t, inprocess.Options{RestConfig: cp.Config, Log: env.log.WithName("samples-webhook"), MetricsRegistry: reg})
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, cp.Client, wh.PolicyNamespace); err != nil {
		t.Fatal(err)
	}

	docs, err := check.ReadPaths([]string{filepath.Join("..", "..", "manifests", "samples")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := check.New(docs, check.Options{PolicyNamespace: webhook.DefaultPolicyNamespace})
	if err != nil {
		t.Fatalf("the samples' policies: %v", err)
	}
	a := newApplier(t, cp.Config)

	judged, policies := 0, 0
	for _, d := range docs {
		_, controller := policy.PodControllerOf(policy.Kind(d.Kind))
		isJudged := d.Kind == policy.KindPod || d.Kind == policy.KindMyApple || controller
		if isJudged && policies > 0 {
			// Every policy in force before the first object is judged:
			// kubectl's own time between objects hides propagation, a
			// client's does not.
			waitPolicies(t, reg, policies)
			policies = 0
		}
		want, err := checker.Judge(d)
		if err != nil {
			t.Fatalf("%s: check: %v", d.Where, err)
		}
		got := a.apply(ctx, d)
		if !isJudged {
			if got.refusal != "" {
				t.Fatalf("%s: %s refused: %s", d.Where, d.Kind, got.refusal)
			}
			if d.Kind == "ConfigMap" || d.Kind == "AdmissionPolicy" {
				policies = checker.Policies()
			}
			continue
		}
		judged++
		ref := fmt.Sprintf("%s: %s %s/%s", d.Where, want.Kind, want.Namespace, want.Name)
		if expect := expectation(t, d); got.verdict() != expect || strings.ToLower(want.Verdict()) != expect {
			t.Errorf("%s: the API server said %s, check said %s, the sample expects %s\n  API server: %s %q\n  check: %v",
				ref, got.verdict(), strings.ToLower(want.Verdict()), expect, got.refusal, got.warnings, want.Violations)
			continue
		}
		// The same violations, word for word, in the denial or the
		// warnings (Audit ones are in neither).
		said := got.refusal + "\n" + strings.Join(got.warnings, "\n")
		for _, v := range want.Violations {
			if v.Enforcement != v1alpha1.Audit && !strings.Contains(said, v.String()) {
				t.Errorf("%s: check says %q, the API server did not:\n%s", ref, v.String(), said)
			}
		}
	}
	if judged < 20 {
		t.Fatalf("only %d objects judged: the samples were not read", judged)
	}
	t.Logf("%d Pods, Pod controllers and MyApples: the API server through the webhook, check and the samples agree", judged)
}

// waitPolicies waits until the webhook has n policies in force.
func waitPolicies(t *testing.T, reg prometheus.Gatherer, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(testCtx(t), 10*time.Millisecond, propagationTimeout, true, func(context.Context) (bool, error) {
		return int(promtest.Sum(t, reg, "policy_webhook_policies", nil)) == n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d policies in force: %v (%v in force)", n, err, promtest.Sum(t, reg, "policy_webhook_policies", nil))
	}
}

func expectation(t *testing.T, d check.Document) string {
	t.Helper()
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(d.Raw, &u.Object); err != nil {
		t.Fatalf("%s: %v", d.Where, err)
	}
	want := u.GetAnnotations()[expectAnnotation]
	if want == "" {
		t.Fatalf("%s: no %s annotation", d.Where, expectAnnotation)
	}
	return want
}

// applier applies sample objects as `kubectl apply --server-side` would,
// mapping kinds to resources by discovery.
type applier struct {
	t      *testing.T
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	mu     sync.Mutex
	warned []string
}

type created struct {
	refusal  string
	warnings []string
}

func (c created) verdict() string {
	switch {
	case c.refusal != "":
		return "deny"
	case len(c.warnings) > 0:
		return "warn"
	}
	return "allow"
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	a := &applier{t: t}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandlerWithContext = a
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *applier) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warned = append(a.warned, text)
}

func (a *applier) apply(ctx context.Context, d check.Document) created {
	a.t.Helper()
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(d.Raw, &u.Object); err != nil {
		a.t.Fatalf("%s: %v", d.Where, err)
	}
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset() // a CRD the discovery cache had not seen
		if m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			a.t.Fatalf("%s: %v", d.Where, err)
		}
	}
	a.mu.Lock()
	a.warned = nil
	a.mu.Unlock()
	var res dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ns := u.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		res = a.dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = res.Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "samples", Force: true})
	a.mu.Lock()
	defer a.mu.Unlock()
	out := created{warnings: slices.Clone(a.warned)}
	if err != nil {
		out.refusal = err.Error()
	}
	return out
}
