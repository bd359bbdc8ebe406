package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

const nonRootPolicy = "pods:\n  requireRunAsNonRoot: true\n"

// policyException is a PolicyException in ns lifting rules of the policy
// ConfigMap policyNS/policyName, for objects whose name matches names.
func policyException(ns, name, reason string, expiresAt time.Time, policyNS, policyName string, rules []string, names ...string) *unstructured.Unstructured {
	ruleList := make([]any, len(rules))
	for i, r := range rules {
		ruleList[i] = r
	}
	spec := map[string]any{
		"expiresAt": expiresAt.UTC().Format(time.RFC3339),
		"exceptions": []any{map[string]any{
			"policy": map[string]any{"kind": "ConfigMap", "namespace": policyNS, "name": policyName},
			"rules":  ruleList,
		}},
	}
	if reason != "-" {
		spec["reason"] = reason
	}
	if len(names) > 0 {
		globs := make([]any, len(names))
		for i, n := range names {
			globs[i] = n
		}
		spec["match"] = map[string]any{"names": globs}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "PolicyException",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
}

// exceptionEnv is a control plane of its own with the OpenReports CRDs,
// and one webhook replica that admits and audits.
type exceptionEnv struct {
	client *warningClient
	dyn    dynamic.Interface
}

func startExceptionEnv(t *testing.T) *exceptionEnv {
	t.Helper()
	ctx := testCtx(t)
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: env.log.WithName("exceptions"),
		ExtraCRDDirs: []string{filepath.Join(root, "manifests", "components", "openreports")}})
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}
	// The audit's interval is long, so that a report that changes at an
	// expiry shows the sweep the expiry itself triggers.
	wh := inprocess.StartForTest(t, inprocess.Options{
		RestConfig: cp.Config, Log: env.log.WithName("exceptions-webhook"), MetricsRegistry: prometheus.NewRegistry(), AuditInterval: 10 * time.Minute,
	})
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, cp.Client, wh.PolicyNamespace); err != nil {
		t.Fatal(err)
	}
	wc := &warningClient{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = wc
	if wc.Interface, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	// Its warnings are kept too: impact warnings come with a write.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &exceptionEnv{client: wc, dyn: dyn}
}

func (e *exceptionEnv) namespace(t *testing.T) string {
	t.Helper()
	name := "e2e-pex-" + rand.String(5)
	if _, err := e.client.CoreV1().Namespaces().Create(testCtx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func (e *exceptionEnv) policy(t *testing.T, ns, name, spec string) {
	t.Helper()
	if _, err := e.client.CoreV1().ConfigMaps(ns).Create(testCtx(t), devenv.PolicyConfigMap(ns, name, spec), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating policy %s/%s: %v", ns, name, err)
	}
}

func (e *exceptionEnv) createPod(ctx context.Context, p *corev1.Pod, opts metav1.CreateOptions) error {
	_, err := e.client.CoreV1().Pods(p.Namespace).Create(ctx, p, opts)
	return err
}

func (e *exceptionEnv) createException(ctx context.Context, x *unstructured.Unstructured) error {
	_, err := e.dyn.Resource(v1alpha1.ExceptionResource).Namespace(x.GetNamespace()).Create(ctx, x, metav1.CreateOptions{})
	return err
}

// rootPod runs as root: it breaks requireRunAsNonRoot.
func rootPod(ns, name string) *corev1.Pod {
	return pod(ns, name, nil, "registry.example.com/vendor/db:1.0")
}

// A Pod breaking requireRunAsNonRoot is refused; an exception for that rule
// in its namespace admits it with a warning naming the exception and its
// expiry; one in another team's namespace does not help; an exception
// stops applying at its expiresAt, and the report's result for the object
// turns from skip to fail within one sweep; invalid exceptions are refused
// with their field paths.
func TestPolicyExceptions(t *testing.T) {
	ctx := testCtx(t)
	e := startExceptionEnv(t)
	teamA, teamB := e.namespace(t), e.namespace(t)
	e.policy(t, teamA, "baseline", nonRootPolicy)
	rule := "pods.requireRunAsNonRoot"
	refusal := podDenial(fmt.Sprintf(`policy violation: ConfigMap %s/baseline pods.requireRunAsNonRoot spec.containers[0].securityContext.runAsNonRoot: container "c0" does not set runAsNonRoot: true, nor does the pod's securityContext`, teamA))
	eventuallyDenied(t, func() error {
		return e.createPod(ctx, rootPod(teamA, "legacy-0"), metav1.CreateOptions{DryRun: []string{"All"}})
	}, refusal)

	far := time.Now().Add(30 * 24 * time.Hour).Truncate(24 * time.Hour)
	// Another team's exception, for the same policy and rule, first: the
	// informer delivers it before the one below.
	if err := e.createException(ctx, policyException(teamB, "legacy-root", "theirs", far, teamA, "baseline", []string{rule})); err != nil {
		t.Fatalf("creating team B's exception: %v", err)
	}
	if err := e.createException(ctx, policyException(teamA, "legacy-root", "vendor image runs as root (TICKET-123)", far, teamA, "baseline", []string{rule}, "legacy-*")); err != nil {
		t.Fatalf("creating the exception: %v", err)
	}
	wc := e.client
	eventuallyAdmitted(t, func() error {
		_, err := wc.CoreV1().Pods(teamA).Create(ctx, rootPod(teamA, "legacy-1"), metav1.CreateOptions{})
		return err
	})
	want := fmt.Sprintf("excepted by PolicyException %s/legacy-root until %s: ConfigMap %s/baseline pods.requireRunAsNonRoot", teamA, far.UTC().Format(time.DateOnly), teamA)
	if w := wc.take(); len(w) == 0 || !strings.HasPrefix(w[len(w)-1], want) {
		t.Errorf("warnings %q, want one starting %q", w, want)
	}
	// Team B's exception, in the cache by now, does not cover team A.
	wantDenied(t, e.createPod(ctx, rootPod(teamA, "web"), metav1.CreateOptions{}),
		strings.Replace(refusal, "legacy-0", "web", 1))

	// Impact at apply: an exception that would cover legacy-1 says so.
	wc.take()
	if err := e.createException(ctx, policyException(teamA, "impact", "r", far, teamA, "baseline", []string{rule}, "legacy-*")); err != nil {
		t.Fatalf("creating the impact exception: %v", err)
	}
	wantImpact := fmt.Sprintf("this exception would exempt 1 existing object: Pod %s/legacy-1 (pods.requireRunAsNonRoot)", teamA)
	if w := wc.take(); len(w) != 1 || w[0] != wantImpact {
		t.Errorf("warnings %q, want %q", w, wantImpact)
	}
	// Of two exceptions covering one violation, the first by namespace and
	// name lifts it: this one goes, so that legacy-root covers legacy-1.
	if err := e.dyn.Resource(v1alpha1.ExceptionResource).Namespace(teamA).Delete(ctx, "impact", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Expiry is exact: 20 s ahead, in whole seconds as the API stores it.
	expiresAt := time.Now().Add(20 * time.Second).Truncate(time.Second).Add(time.Second)
	if err := e.createException(ctx, policyException(teamA, "soon", "a short one", expiresAt, teamA, "baseline", []string{rule}, "soon-*")); err != nil {
		t.Fatalf("creating the expiring exception: %v", err)
	}
	eventuallyAdmitted(t, func() error { return e.createPod(ctx, rootPod(teamA, "soon-1"), metav1.CreateOptions{}) })
	// A policy change has the audit sweep again, now that soon-1 exists.
	e.policy(t, teamB, "nudge", nonRootPolicy)
	reports := schema.GroupVersionResource{Group: "openreports.io", Version: "v1alpha1", Resource: "reports"}
	resultOf := func(name string) (string, error) {
		list, err := e.dyn.Resource(reports).Namespace(teamA).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		for _, r := range list.Items {
			results, _ := r.Object["results"].([]any)
			for _, res := range results {
				res, _ := res.(map[string]any)
				subjects, _ := res["resources"].([]any)
				for _, s := range subjects {
					if s, _ := s.(map[string]any); s["name"] == name && res["rule"] == rule {
						return fmt.Sprintf("%v %v", res["result"], res["properties"]), nil
					}
				}
			}
		}
		return "", fmt.Errorf("no result for Pod %s yet", name)
	}
	testenv.Eventually(t, time.Until(expiresAt)-2*time.Second, "a skip result naming the exception for Pod soon-1", func() error {
		got, err := resultOf("soon-1")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got, "skip ") || !strings.Contains(got, "exception:"+teamA+"/soon") {
			return fmt.Errorf("result %s, want skip naming %s/soon", got, teamA)
		}
		return nil
	})
	if time.Until(expiresAt) < 2*time.Second {
		t.Fatal("the expiring exception expired before the test could check it in force")
	}
	wantAdmitted(t, e.createPod(ctx, rootPod(teamA, "soon-2"), metav1.CreateOptions{DryRun: []string{"All"}}))
	time.Sleep(time.Until(expiresAt))
	err := e.createPod(ctx, rootPod(teamA, "soon-3"), metav1.CreateOptions{})
	late := time.Since(expiresAt)
	wantDenied(t, err, strings.Replace(refusal, "legacy-0", "soon-3", 1))
	if late > 2*time.Second {
		t.Errorf("refused %s after the expiry, want within 2s", late)
	}
	t.Logf("refused again %s after expiresAt", late)
	// The audit sweeps at the expiry: no interval elapses before the report changes.
	took := testenv.Eventually(t, 30*time.Second, "a fail result for Pod soon-1", func() error {
		got, err := resultOf("soon-1")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got, "fail ") {
			return fmt.Errorf("result %s, want fail", got)
		}
		return nil
	})
	t.Logf("the report's result turned to fail %s after expiresAt (%s polling)", time.Since(expiresAt), took)

	// The leader's status and Event: the expired exception is inactive;
	// the one in force covers the Pod the audit found.
	xs := e.dyn.Resource(v1alpha1.ExceptionResource).Namespace(teamA)
	testenv.Eventually(t, 30*time.Second, "the status of the exceptions", func() error {
		for name, want := range map[string]string{"soon": "False", "legacy-root": "True"} {
			u, err := xs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			active, _, _ := unstructured.NestedString(u.Object, "status", "active")
			covered, found, _ := unstructured.NestedInt64(u.Object, "status", "coveredObjects")
			switch {
			case active != want:
				return fmt.Errorf("%s: status.active %q, want %q", name, active, want)
			case name == "legacy-root" && (!found || covered != 1):
				return fmt.Errorf("%s: status.coveredObjects %d (%v), want 1 (Pod legacy-1)", name, covered, found)
			}
		}
		events, err := e.client.CoreV1().Events(teamA).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=soon"})
		if err != nil {
			return err
		}
		for _, ev := range events.Items {
			if ev.Reason == "ExceptionExpired" {
				return nil
			}
		}
		return fmt.Errorf("no ExceptionExpired Event on soon yet (%d Events)", len(events.Items))
	})

	t.Run("invalid exceptions are refused with their field paths", func(t *testing.T) {
		now := time.Now()
		for _, tt := range []struct {
			name  string
			x     *unstructured.Unstructured
			field string
		}{
			{"past-expiry", policyException(teamA, "past", "r", now.Add(-time.Hour), teamA, "baseline", []string{rule}), "spec.expiresAt"},
			{"no-reason", policyException(teamA, "no-reason", "-", far, teamA, "baseline", []string{rule}), "spec.reason"},
			{"empty-reason", policyException(teamA, "empty-reason", "", far, teamA, "baseline", []string{rule}), "spec.reason"},
			{"a-year-ahead", policyException(teamA, "year", "r", now.AddDate(1, 0, 0), teamA, "baseline", []string{rule}), "spec.expiresAt"},
			{"unknown-rule", policyException(teamA, "unknown", "r", far, teamA, "baseline", []string{"pods.forbidPrivileged"}), "spec.exceptions[0].rules[0]"},
			{"quota-rule", policyException(teamA, "quota", "r", far, teamA, "baseline", []string{"myApples.maxTotalQuantityPerNamespace"}), "spec.exceptions[0].rules[0]"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				err := e.createException(ctx, tt.x)
				if err == nil {
					t.Fatalf("created; want refused at %s", tt.field)
				}
				if !strings.Contains(err.Error(), tt.field) {
					t.Errorf("refused with %q, want the field path %s", err, tt.field)
				}
				t.Logf("refused: %v", err)
			})
		}
	})

	t.Run("an expired exception stays readable and an unchanged update passes", func(t *testing.T) {
		xs := e.dyn.Resource(v1alpha1.ExceptionResource).Namespace(teamA)
		cur, err := xs.Get(ctx, "soon", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.SetLabels(map[string]string{"expired": "true"})
		if cur, err = xs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("relabelling the expired exception: %v", err)
		}
		if err := unstructured.SetNestedField(cur.Object, "a new reason", "spec", "reason"); err != nil {
			t.Fatal(err)
		}
		if _, err := xs.Update(ctx, cur, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "spec.expiresAt") {
			t.Errorf("changing the expired exception's spec: %v, want refused at spec.expiresAt", err)
		}
	})
}
