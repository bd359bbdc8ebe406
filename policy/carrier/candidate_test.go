package carrier

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/policy"
)

func TestCompileCandidate(t *testing.T) {
	cm := func(data map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "baseline", "namespace": "team-a", "resourceVersion": "42",
				"labels": map[string]any{policy.PolicyLabel: "true"}},
			"data": data,
		}}
	}
	ap := func(spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
			"metadata": map[string]any{"name": "baseline", "generation": int64(7)},
			"spec":     spec,
		}}
	}
	registries := map[string]any{"allowedRegistries": []any{"registry.example.com/"}}
	tests := []struct {
		name        string
		obj         *unstructured.Unstructured
		present     bool
		specErr     string // a problem of the policy itself, "" for none
		candErr     string // a problem of the candidate, "" for none
		wantVersion string
	}{
		{"AdmissionPolicy without a candidate", ap(map[string]any{"pods": registries}), false, "", "", ""},
		{"AdmissionPolicy with a candidate", ap(map[string]any{"pods": registries,
			"candidate": map[string]any{"pods": map[string]any{"disallowedTags": []any{"latest"}}}}), true, "", "", "7"},
		{"AdmissionPolicy with an invalid candidate", ap(map[string]any{"pods": registries,
			"candidate": map[string]any{"pods": map[string]any{"disallowedTag": []any{"latest"}}}}), true, "", "spec.candidate.pods.disallowedTag: unknown field", ""},
		{"AdmissionPolicy with a candidate within its candidate", ap(map[string]any{"pods": registries,
			"candidate": map[string]any{"pods": registries, "candidate": map[string]any{"pods": registries}}}), true, "", "spec.candidate.candidate: unknown field", ""},
		{"an invalid spec beside a valid candidate", ap(map[string]any{"pods": map[string]any{"bogus": true},
			"candidate": map[string]any{"pods": registries}}), true, "spec.pods.bogus: unknown field", "", "7"},
		{"ConfigMap with candidate.yaml", cm(map[string]any{policy.ConfigMapDataKey: "pods:\n  requiredLabels: [app]\n",
			policy.ConfigMapCandidateKey: "pods:\n  disallowedTags: [latest]\n"}), true, "", "", "42"},
		{"ConfigMap with an invalid candidate.yaml", cm(map[string]any{policy.ConfigMapDataKey: "pods:\n  requiredLabels: [app]\n",
			policy.ConfigMapCandidateKey: "enforcement: Sometimes\npods:\n  disallowedTags: [latest]\n"}), true, "", "candidate.yaml: enforcement", ""},
		{"ConfigMap whose policy.yaml holds a candidate", cm(map[string]any{policy.ConfigMapDataKey: "pods:\n  requiredLabels: [app]\ncandidate:\n  pods: {}\n"}),
			false, "policy.yaml: candidate: unknown field", "", ""},
	}
	c := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cand, present, err := c.CompileCandidate(tt.obj, "policy-system")
			if present != tt.present {
				t.Fatalf("present %t, want %t", present, tt.present)
			}
			checkErr(t, "candidate", err, tt.candErr)
			if tt.wantVersion != "" {
				if cand == nil || cand.Policy.Version != tt.wantVersion || len(cand.Hash) != 16 {
					t.Fatalf("candidate %+v, want version %s and a hash", cand, tt.wantVersion)
				}
			}
			// The policy in force never sees the candidate, good or bad.
			_, specErr := c.Compile(tt.obj, "policy-system")
			checkErr(t, "spec", specErr, tt.specErr)
			// At apply, both are judged and every problem is listed.
			_, verr := c.Validate(tt.obj, "policy-system")
			for _, want := range []string{tt.specErr, tt.candErr} {
				if want != "" && (verr == nil || !strings.Contains(verr.Error(), want)) {
					t.Errorf("Validate: %v, want %q among the problems", verr, want)
				}
			}
			if tt.specErr == "" && tt.candErr == "" && verr != nil {
				t.Errorf("Validate: %v, want none", verr)
			}
		})
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s: %v, want none", what, err)
		}
		return
	}
	var invalid *policy.InvalidError
	if !errors.As(err, &invalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: %v, want an InvalidError with %q", what, err, want)
	}
}
