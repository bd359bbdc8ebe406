package carrier

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/hack/workload"
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

// registriesYAML is issue 22's allowed-registries rule, as VAP users write it.
const registriesYAML = workload.RegistriesCELPolicy

// square is issue 22's loop over 300 params in a loop over them.
func square() string {
	return "match: {kinds: [Pod]}\nparams: {l: [" + strings.TrimSuffix(strings.Repeat("same, ", 300), ", ") + "]}\n" +
		"validations:\n- expression: \"params.l.all(x, params.l.all(y, x == y))\"\n"
}

func TestCostAtApply(t *testing.T) {
	c := New()
	inPolicyNamespace := func(u *unstructured.Unstructured) *unstructured.Unstructured {
		u.SetNamespace("policy-system")
		return u
	}
	js, err := yaml.YAMLToJSON([]byte(registriesYAML))
	if err != nil {
		t.Fatal(err)
	}
	asAdmissionPolicy := map[string]any{}
	if err := utiljson.Unmarshal(js, &asAdmissionPolicy); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]*unstructured.Unstructured{
		"a namespace's ConfigMap":    celConfigMap(registriesYAML),
		"a cluster-wide ConfigMap":   inPolicyNamespace(celConfigMap(registriesYAML)),
		"an AdmissionPolicy":         celAdmissionPolicy(asAdmissionPolicy),
		"cluster-wide, the 300² one": inPolicyNamespace(celConfigMap(square())),
	} {
		if _, err := c.Compile(u, "policy-system"); err != nil {
			t.Errorf("%s: got %v, want accepted", name, err)
		}
	}

	_, err = c.Compile(celConfigMap(square()), "policy-system")
	want := "ConfigMap team-a/probes is not a valid policy: policy.yaml: validations[0].expression: Forbidden: estimated cost 541502, with these params and whatever the object, exceeds the limit of 100000 per expression of a namespace's own policy"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a namespace's 300² loop: got %v, want %q", err, want)
	}
}

// A compiler estimating at the cache's namespaces holds policies to the
// same limits as the one it comes from.
func TestWithMyApplesBoundKeepsLimits(t *testing.T) {
	c := New(WithLimits(Limits{PoliciesPerNamespace: 3}))
	if got := c.WithMyApplesBound(func() int { return 1 }).Limits(); got != c.Limits() {
		t.Errorf("limits %+v, want %+v", got, c.Limits())
	}
}
