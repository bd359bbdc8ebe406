package carrier

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/policy"
)

func celConfigMap(policyYAML string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "probes", "namespace": "team-a", "labels": map[string]any{policy.PolicyLabel: "true"}},
		"data":     map[string]any{policy.ConfigMapDataKey: policyYAML},
	}}
}

func celAdmissionPolicy(spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.example.com/v1alpha1", "kind": policy.SourceAdmissionPolicy,
		"metadata": map[string]any{"name": "probes", "generation": int64(1)},
		"spec":     spec,
	}}
}

func TestCompileCELOnlyPolicy(t *testing.T) {
	p, err := New().Compile(celConfigMap(`
match: {kinds: [Pod]}
params: {max: 3}
validations:
- expression: "size(object.spec.containers) <= params.max"
`), "policy-webhook")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Judges(policy.KindPod) || p.Judges(policy.KindMyApple) {
		t.Errorf("judges Pod %v, MyApple %v; want only Pods", p.Judges(policy.KindPod), p.Judges(policy.KindMyApple))
	}
}

func TestCompileCELErrorsArePrefixed(t *testing.T) {
	_, err := New().Compile(celConfigMap(`
match: {kinds: [Pod]}
validations:
- expression: "object.spec.containrs.size() > 0"
`), "policy-webhook")
	var inv *policy.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("got %v, want an InvalidError", err)
	}
	if got := inv.Problems(); !strings.Contains(got, "policy.yaml: validations[0].expression:") || !strings.Contains(got, "undefined field 'containrs'") || !strings.Contains(got, "(1:") {
		t.Errorf("problems:\n%s", got)
	}

	_, err = New().Compile(celAdmissionPolicy(map[string]any{
		"match":       map[string]any{"kinds": []any{"MyApple"}},
		"validations": []any{map[string]any{"expression": "object.spec.colour == 'red'"}},
	}), "policy-webhook")
	if !errors.As(err, &inv) {
		t.Fatalf("got %v, want an InvalidError", err)
	}
	if got := inv.Problems(); !strings.Contains(got, "spec.validations[0].expression:") || !strings.Contains(got, "undefined field 'colour'") {
		t.Errorf("problems:\n%s", got)
	}
}

func TestCompileCELBothKindsNamesTheKind(t *testing.T) {
	_, err := New().Compile(celConfigMap(`
validations:
- expression: "has(object.spec.containers)"
`), "policy-webhook")
	if err == nil || !strings.Contains(err.Error(), "judging a MyApple") {
		t.Errorf("got %v, want an error naming MyApple", err)
	}
}
