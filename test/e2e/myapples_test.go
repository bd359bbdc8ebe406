package e2e

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestMyApplesAdmittedAndRefused(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "apples", `
myApples:
  allowedColors: [red, green]
  allowedSizes: [small, medium]
  minQuantity: 2
  maxQuantity: 10
`)
	src := "ConfigMap " + ns + "/apples"
	probe := func(color, size string, q int64) error {
		return createApple(ctx, apple(ns, "probe", color, size, q), metav1.CreateOptions{DryRun: dryRun})
	}
	eventuallyDenied(t, func() error { return probe("blue", "small", 3) }, appleDenial(fmt.Sprintf(
		`policy violation: %s myApples.allowedColors spec.color: color "blue" is not allowed: use one of red, green`, src)))

	wantAdmitted(t, createApple(ctx, apple(ns, "crate", "red", "small", 3), metav1.CreateOptions{}))
	for _, tc := range []struct {
		name, color, size string
		quantity          int64
		want              string
	}{
		{"size", "red", "large", 3, `myApples.allowedSizes spec.size: size "large" is not allowed: use one of small, medium`},
		{"too many", "red", "small", 11, `myApples.maxQuantity spec.quantity: quantity 11 is above the maximum 10`},
		{"too few", "green", "medium", 1, `myApples.minQuantity spec.quantity: quantity 1 is below the minimum 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantDenied(t, probe(tc.color, tc.size, tc.quantity), appleDenial("policy violation: "+src+" "+tc.want))
		})
	}
	t.Run("update", func(t *testing.T) {
		err := updateApple(ctx, ns, "crate", setColor("blue"), metav1.UpdateOptions{})
		wantDenied(t, err, appleDenial(fmt.Sprintf(
			`policy violation: %s myApples.allowedColors spec.color: color "blue" is not allowed: use one of red, green`, src)))
		wantAdmitted(t, updateApple(ctx, ns, "crate", setColor("green"), metav1.UpdateOptions{}))
	})
	t.Run("AdmissionPolicy selecting namespaces by label", func(t *testing.T) {
		name := "e2e-" + ns
		ap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1",
			"kind":       "AdmissionPolicy",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"match":    map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{testLabel: ns}}},
				"myApples": map[string]any{"allowedColors": []any{"red"}},
			},
		}}
		if _, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating AdmissionPolicy %s: %v", name, err)
		}
		t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })
		// Green passes the namespace's ConfigMap, not the AdmissionPolicy.
		eventuallyDenied(t, func() error { return probe("green", "small", 3) }, appleDenial(fmt.Sprintf(
			`policy violation: AdmissionPolicy %s myApples.allowedColors spec.color: color "green" is not allowed: use one of red`, name)))
		other := newNamespace(t, nil)
		wantAdmitted(t, createApple(ctx, apple(other, "probe", "green", "small", 3), metav1.CreateOptions{DryRun: dryRun}))
		// Two policies, two violations, both listed (in the order of their sources).
		wantDenied(t, probe("blue", "small", 3), appleDenial(fmt.Sprintf("2 policy violations:\n"+
			`- AdmissionPolicy %s myApples.allowedColors spec.color: color "blue" is not allowed: use one of red`+"\n"+
			`- %s myApples.allowedColors spec.color: color "blue" is not allowed: use one of red, green`, name, src)))
	})
}
