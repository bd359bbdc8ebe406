package vapimport

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// AdmissionPolicy is p as an AdmissionPolicy, in YAML.
func (p *Policy) AdmissionPolicy() ([]byte, error) {
	// A struct of its own rather than v1alpha1.AdmissionPolicy, whose empty
	// status and creationTimestamp would be written out.
	out, err := yaml.Marshal(struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        meta                `json:"metadata"`
		Spec            v1alpha1.PolicySpec `json:"spec"`
	}{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: policy.SourceAdmissionPolicy},
		Metadata: meta{Name: p.Name, Annotations: map[string]string{FromAnnotation: p.From}},
		Spec:     p.Spec,
	})
	if err != nil {
		return nil, fmt.Errorf("writing AdmissionPolicy %s: %w", p.Name, err)
	}
	return out, nil
}

// ConfigMap is p as a policy ConfigMap of namespace, in YAML: it judges the
// objects of that namespace, or of every namespace when namespace is the
// webhook's own.
func (p *Policy) ConfigMap(namespace string) ([]byte, error) {
	spec, err := yaml.Marshal(p.Spec)
	if err != nil {
		return nil, fmt.Errorf("writing the policy of ConfigMap %s/%s: %w", namespace, p.Name, err)
	}
	out, err := yaml.Marshal(struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        meta              `json:"metadata"`
		Data            map[string]string `json:"data"`
	}{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: policy.SourceConfigMap},
		Metadata: meta{
			Name: p.Name, Namespace: namespace,
			Labels:      map[string]string{policy.PolicyLabel: "true"},
			Annotations: map[string]string{FromAnnotation: p.From},
		},
		Data: map[string]string{policy.ConfigMapDataKey: string(spec)},
	})
	if err != nil {
		return nil, fmt.Errorf("writing ConfigMap %s/%s: %w", namespace, p.Name, err)
	}
	return out, nil
}

type meta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
