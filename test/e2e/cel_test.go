package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// TestCELPolicies judges Pods and MyApples through the API server with CEL
// validations, carried by a ConfigMap and by an AdmissionPolicy.
func TestCELPolicies(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)

	t.Run("ConfigMap denies a Pod", func(t *testing.T) {
		mustPutPolicy(t, ns, "probes", `match: {kinds: [Pod]}
validations:
- name: probes
  expression: "object.spec.containers.all(c, has(c.readinessProbe))"
  message: "every container needs a readinessProbe"
  fieldPath: spec.containers
`)
		bad := pod(ns, "no-probe", nil, "registry.example.com/web:1.0")
		eventuallyDenied(t, func() error { return createPod(ctx, bad, metav1.CreateOptions{DryRun: dryRun}) }, podDenial(fmt.Sprintf(
			"policy violation: ConfigMap %s/probes validations.probes spec.containers: every container needs a readinessProbe", ns)))
		good := pod(ns, "probed", nil, "registry.example.com/web:1.0")
		good.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		wantAdmitted(t, createPod(ctx, good, metav1.CreateOptions{DryRun: dryRun}))
	})

	t.Run("AdmissionPolicy warns on a Pod", func(t *testing.T) {
		name := "e2e-cel-" + ns
		createAdmissionPolicy(t, name, map[string]any{
			"enforcement": "Warn",
			"match":       map[string]any{"kinds": []any{"Pod"}, "namespaceSelector": map[string]any{"matchLabels": map[string]any{testLabel: ns}}},
			"validations": []any{map[string]any{
				"expression":        "object.metadata.?labels.?team.orValue('') == namespaceObject.metadata.name",
				"messageExpression": "'label team must be ' + namespaceObject.metadata.name",
			}},
		})
		wc := newWarningClient(t)
		want := fmt.Sprintf("AdmissionPolicy %s validations[0]: label team must be %s", name, ns)
		p := pod(ns, "no-team", nil, "registry.example.com/web:1.0")
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		eventually(t, "the Warn policy in force", func() error {
			if _, err := wc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: dryRun}); err != nil {
				return err
			}
			if got := wc.take(); !slices.Contains(got, want) {
				return fmt.Errorf("warnings %q", got)
			}
			return nil
		})
		p.Labels = map[string]string{"team": ns}
		if _, err := wc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: dryRun}); err != nil {
			t.Fatal(err)
		}
		if got := wc.take(); len(got) != 0 {
			t.Fatalf("warnings %q for a labelled Pod", got)
		}
	})

	t.Run("AdmissionPolicy over cluster.myApples", func(t *testing.T) {
		name := "e2e-cel-apples-" + ns
		createAdmissionPolicy(t, name, map[string]any{
			"match":  map[string]any{"kinds": []any{"MyApple"}, "namespaceSelector": map[string]any{"matchLabels": map[string]any{testLabel: ns}}},
			"params": map[string]any{"maxPerColor": int64(1)},
			"validations": []any{map[string]any{
				"name":              "perColor",
				"expression":        "cluster.myApples(object.metadata.namespace).filter(a, a.color == object.spec.color && a.name != object.metadata.name).size() < params.maxPerColor",
				"messageExpression": "'at most ' + string(params.maxPerColor) + ' MyApple of one color'",
				"fieldPath":         "spec.color",
			}},
		})
		refused := appleDenial(fmt.Sprintf("policy violation: AdmissionPolicy %s validations.perColor spec.color: at most 1 MyApple of one color", name))
		// In force once it has an opinion: a MyApple that passes it.
		eventuallyAdmitted(t, func() error {
			return createApple(ctx, apple(ns, "probe", "green", "small", 3), metav1.CreateOptions{DryRun: dryRun})
		})
		wantAdmitted(t, createApple(ctx, apple(ns, "first", "red", "small", 3), metav1.CreateOptions{}))
		// The cache sees the MyApple created a moment earlier.
		eventuallyDenied(t, func() error {
			return createApple(ctx, apple(ns, "second", "red", "small", 3), metav1.CreateOptions{DryRun: dryRun})
		}, refused)
		wantAdmitted(t, createApple(ctx, apple(ns, "second", "green", "small", 3), metav1.CreateOptions{DryRun: dryRun}))
		// Updating first itself is not counted against it.
		wantAdmitted(t, updateApple(ctx, ns, "first", setQuantity(4), metav1.UpdateOptions{}))
	})
}

// TestCELPolicyTypeErrorRefusedAtApply: a policy whose expression names a
// field the kind's schema does not have is refused, with the position.
func TestCELPolicyTypeErrorRefusedAtApply(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	t.Run("ConfigMap", func(t *testing.T) {
		err := putPolicy(ctx, ns, "typo", "match: {kinds: [Pod]}\nvalidations:\n- expression: \"object.spec.containrs.size() > 0\"\n")
		want := denial(devenv.PolicyConfigMapsWebhook, fmt.Sprintf("ConfigMap %s/typo is not a valid policy: policy.yaml: validations[0].expression: ", ns))
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "undefined field 'containrs'") || !strings.Contains(err.Error(), "(1:") {
			t.Fatalf("got %v, want a refusal starting %q naming 'containrs' and its position", err, want)
		}
	})
	t.Run("AdmissionPolicy", func(t *testing.T) {
		name := "e2e-cel-typo-" + ns
		ap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{
				"match":       map[string]any{"kinds": []any{"MyApple"}},
				"validations": []any{map[string]any{"expression": "object.spec.colour == 'red'"}},
			},
		}}
		_, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{})
		t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })
		want := denial(devenv.AdmissionPoliciesWebhook, fmt.Sprintf("AdmissionPolicy %s is not a valid policy: spec.validations[0].expression: ", name))
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "undefined field 'colour'") || !strings.Contains(err.Error(), "(1:") {
			t.Fatalf("got %v, want a refusal starting %q naming 'colour' and its position", err, want)
		}
	})
}

func createAdmissionPolicy(t *testing.T, name string, spec map[string]any) {
	t.Helper()
	ctx := testCtx(t)
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}}
	if _, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating AdmissionPolicy %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })
}

// TestCELAuditPolicies: a CEL policy with enforcement Audit admits what it
// would refuse, silently (no warning), and records it where the README says:
// the webhook's audit annotations in the API server's audit log (which
// policy version decided, which rule), the webhook's Audit log line (with
// the message) and policy_webhook_violations_total{enforcement="Audit"}.
func TestCELAuditPolicies(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)

	t.Run("ConfigMap audits a Pod", func(t *testing.T) {
		mustPutPolicy(t, ns, "limits", `enforcement: Audit
match: {kinds: [Pod]}
validations:
- name: limits
  expression: "object.spec.containers.all(c, has(c.resources.limits))"
  message: "every container needs resource limits"
  fieldPath: spec.containers
`)
		cm, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, "limits", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		source := fmt.Sprintf("ConfigMap %s/limits", ns)
		counted := violationsCounted(t, "validations.limits", "Audit")
		wc := newWarningClient(t)
		p := pod(ns, "unlimited", nil, "registry.example.com/web:1.0")
		eventually(t, "the Audit policy in force", func() error {
			if _, err := wc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: dryRun}); err != nil {
				return fmt.Errorf("an Audit policy refused: %w", err)
			}
			return wantAudited("pods", ns, p.Name, source+"@"+cm.ResourceVersion, "Audit validations.limits by "+source)
		})
		if got := wc.take(); len(got) != 0 {
			t.Errorf("an Audit policy sent warnings %q", got)
		}
		wantAuditLine(t, ns, p.Name, source+" validations.limits spec.containers: every container needs resource limits")
		if got := violationsCounted(t, "validations.limits", "Audit"); got <= counted {
			t.Errorf("violations_total{validations.limits,Audit} %v, was %v before: not counted", got, counted)
		}
	})

	t.Run("AdmissionPolicy audits a MyApple", func(t *testing.T) {
		name := "e2e-cel-audit-" + ns
		createAdmissionPolicy(t, name, map[string]any{
			"enforcement": "Audit",
			"match":       map[string]any{"kinds": []any{"MyApple"}, "namespaceSelector": map[string]any{"matchLabels": map[string]any{testLabel: ns}}},
			"validations": []any{map[string]any{
				"name":              "smallBatch",
				"expression":        "object.spec.quantity <= 5",
				"messageExpression": "'quantity ' + string(object.spec.quantity) + ' is over 5'",
				"fieldPath":         "spec.quantity",
			}},
		})
		source := "AdmissionPolicy " + name
		counted := violationsCounted(t, "validations.smallBatch", "Audit")
		a := apple(ns, "big", "red", "small", 10)
		eventually(t, "the Audit policy in force", func() error {
			if err := createApple(ctx, a, metav1.CreateOptions{DryRun: dryRun}); err != nil {
				return fmt.Errorf("an Audit policy refused: %w", err)
			}
			return wantAudited("myapples", ns, a.GetName(), source+"@1", "Audit validations.smallBatch by "+source)
		})
		wantAuditLine(t, ns, a.GetName(), source+" validations.smallBatch spec.quantity: quantity 10 is over 5")
		if got := violationsCounted(t, "validations.smallBatch", "Audit"); got <= counted {
			t.Errorf("violations_total{validations.smallBatch,Audit} %v, was %v before: not counted", got, counted)
		}
	})
}

// wantAudited checks the API server's audit log for the last write of an
// object: the webhook's annotations name the policy version that judged it
// and the violations it found.
func wantAudited(resource, ns, name, policyVersion, violations string) error {
	hook := devenv.PodsWebhook
	if resource == "myapples" {
		hook = devenv.MyApplesWebhook
	}
	got, err := auditedAnnotations(resource, ns, name)
	if err != nil {
		return err
	}
	if p := got[hook+"/policies"]; !slices.Contains(strings.Split(p, ", "), policyVersion) {
		return fmt.Errorf("audit annotation %s/policies %q, want it to name %q", hook, p, policyVersion)
	}
	if v := got[hook+"/violations"]; v != violations {
		return fmt.Errorf("audit annotation %s/violations %q, want %q", hook, v, violations)
	}
	return nil
}

// wantAuditLine checks that the webhook logged the Audit violation of an
// object, with its message.
func wantAuditLine(t *testing.T, ns, name, violation string) {
	t.Helper()
	if got := env.logs.auditLinesWith("namespace="+ns, "name="+name, violation); len(got) == 0 {
		t.Errorf("no %q log line for %s/%s naming %q", auditLogMessage, ns, name, violation)
	}
}

// An expression whose cost is certain to be excessive with its real params
// — two loops nested over a list of params — is refused when the policy is
// applied, naming its estimated cost: at a team ConfigMap's limit with 300
// items, at a cluster-wide policy's with 1,500. The webhook goes on judging
// Pods meanwhile.
func TestCELExpensiveExpressionRefusedAtApply(t *testing.T) {
	ctx := testCtx(t)
	good, bad, refused := registryScenario(ctx, t)
	ns := good.Namespace
	const nested = "params.l.all(x, params.l.all(y, x == y))"
	items := func(n int) []any {
		l := make([]any, n)
		for i := range l {
			l[i] = int64(i)
		}
		return l
	}
	wantCost := func(t *testing.T, err error, prefix, limit string) {
		t.Helper()
		if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), "estimated cost ") ||
			!strings.Contains(err.Error(), "exceeds the limit of "+limit+" per expression") {
			t.Fatalf("got %v, want a refusal starting %q naming the estimated cost and the limit of %s", err, prefix, limit)
		}
	}
	t.Run("ConfigMap", func(t *testing.T) {
		l, err := json.Marshal(items(300))
		if err != nil {
			t.Fatal(err)
		}
		err = putPolicy(ctx, ns, "expensive", "match: {kinds: [Pod]}\nparams: {l: "+string(l)+"}\nvalidations:\n- expression: \""+nested+"\"\n")
		wantCost(t, err, denial(devenv.PolicyConfigMapsWebhook, fmt.Sprintf("ConfigMap %s/expensive is not a valid policy: policy.yaml: validations[0].expression: ", ns)), "100000")
	})
	t.Run("AdmissionPolicy", func(t *testing.T) {
		name := "e2e-cel-expensive-" + ns
		ap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{
				"match":       map[string]any{"kinds": []any{"Pod"}},
				"params":      map[string]any{"l": items(1500)},
				"validations": []any{map[string]any{"expression": nested}},
			},
		}}
		_, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{})
		t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })
		wantCost(t, err, denial(devenv.AdmissionPoliciesWebhook, fmt.Sprintf("AdmissionPolicy %s is not a valid policy: spec.validations[0].expression: ", name)), "1000000")
	})
	// Judging goes on, with the policy that was in force.
	wantAdmitted(t, createPod(ctx, good, metav1.CreateOptions{DryRun: dryRun}))
	wantDenied(t, createPod(ctx, bad, metav1.CreateOptions{DryRun: dryRun}), refused)
}
