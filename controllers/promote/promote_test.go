package promote

import (
	"errors"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/policy"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		ok   bool
	}{
		{"admissionpolicy/baseline", Target{Kind: policy.SourceAdmissionPolicy, Name: "baseline"}, true},
		{"ap/baseline", Target{Kind: policy.SourceAdmissionPolicy, Name: "baseline"}, true},
		{"AdmissionPolicies/baseline", Target{Kind: policy.SourceAdmissionPolicy, Name: "baseline"}, true},
		{"configmap/team-a/registries", Target{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}, true},
		{"cm/team-a/registries", Target{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}, true},
		{"configmap/registries", Target{}, false},
		{"admissionpolicy/", Target{}, false},
		{"admissionpolicy/a/b", Target{}, false},
		{"configmap/team-a/", Target{}, false},
		{"deployment/web", Target{}, false},
		{"baseline", Target{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, ok %t", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestPromoteConfigMap(t *testing.T) {
	const spec, cand = "pods: {allowedRegistries: [registry.example.com/]}\n", "pods: {disallowedTags: [latest]}\n"
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "registries", Namespace: "team-a", ResourceVersion: "7",
			Labels: map[string]string{policy.PolicyLabel: "true"}}, Data: data}
	}
	target := Target{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	tests := []struct {
		name     string
		data     map[string]string
		race     bool // another write between promote's read and its write
		wantErr  error
		wantData map[string]string
	}{
		{"promoted", map[string]string{policy.ConfigMapDataKey: spec, policy.ConfigMapCandidateKey: cand, "notes": "kept"}, false, nil,
			map[string]string{policy.ConfigMapDataKey: cand, "notes": "kept"}},
		{"no candidate", map[string]string{policy.ConfigMapDataKey: spec}, false, ErrNoCandidate,
			map[string]string{policy.ConfigMapDataKey: spec}},
		{"an edit meanwhile", map[string]string{policy.ConfigMapDataKey: spec, policy.ConfigMapCandidateKey: cand}, true, ErrConflict,
			map[string]string{policy.ConfigMapDataKey: spec, policy.ConfigMapCandidateKey: cand, "edited": "meanwhile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			kube := fake.NewClientset(cm(tt.data))
			if tt.race {
				raced := false
				kube.PrependReactor("update", "configmaps", func(action k8stesting.Action) (bool, runtime.Object, error) {
					if raced {
						return false, nil, nil
					}
					raced = true
					// Someone edits it first; the tracker then holds a newer version.
					edited := cm(maps.Clone(tt.data))
					edited.Data["edited"] = "meanwhile"
					edited.ResourceVersion = "8"
					if err := kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("configmaps"), edited, "team-a"); err != nil {
						t.Fatal(err)
					}
					upd := action.(k8stesting.UpdateAction).GetObject().(*corev1.ConfigMap)
					if upd.ResourceVersion != "7" {
						t.Errorf("the update is conditioned on resourceVersion %q, want the one read, 7", upd.ResourceVersion)
					}
					if upd.ResourceVersion != "8" {
						return true, nil, apierrors.NewConflict(corev1.Resource("configmaps"), upd.Name, errors.New("the object has been modified"))
					}
					return false, nil, nil
				})
			}
			_, err := Promote(ctx, nil, kube, target)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Promote: %v, want %v", err, tt.wantErr)
			}
			got, gerr := kube.CoreV1().ConfigMaps("team-a").Get(ctx, "registries", metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if !maps.Equal(got.Data, tt.wantData) {
				t.Errorf("data %v, want %v", got.Data, tt.wantData)
			}
		})
	}
}
