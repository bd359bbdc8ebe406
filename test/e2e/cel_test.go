package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/test/testenv"
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
		want := denial(testenv.PolicyConfigMapsWebhook, fmt.Sprintf("ConfigMap %s/typo is not a valid policy: policy.yaml: validations[0].expression: ", ns))
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
		want := denial(testenv.AdmissionPoliciesWebhook, fmt.Sprintf("AdmissionPolicy %s is not a valid policy: spec.validations[0].expression: ", name))
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
