package devenv

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/policy"
)

// PolicyConfigMap is a ConfigMap carrying spec as a policy: labelled so the
// webhook watches and validates it, the spec under policy.yaml.
func PolicyConfigMap(namespace, name, spec string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{policy.PolicyLabel: "true"}},
		Data:       map[string]string{policy.ConfigMapDataKey: spec},
	}
}
