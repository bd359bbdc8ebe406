package policy

import (
	"encoding/json"
	"fmt"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// PolicyLabel marks a ConfigMap as a policy carrier. Only labelled
// ConfigMaps are watched, so unrelated ConfigMaps cost nothing.
const PolicyLabel = "policy.example.com/policy"

// Carrier kinds.
const (
	SourceConfigMap       = "ConfigMap"
	SourceAdmissionPolicy = "AdmissionPolicy"
)

// Source names the object a policy came from, as users see it in denials.
type Source struct {
	Kind      string
	Namespace string
	Name      string
}

func (s Source) String() string {
	if s.Namespace == "" {
		return s.Kind + " " + s.Name
	}
	return s.Kind + " " + s.Namespace + "/" + s.Name
}

// IsPolicyConfigMap reports whether a ConfigMap's labels mark it as a policy.
func IsPolicyConfigMap(labels map[string]string) bool {
	return labels[PolicyLabel] == "true"
}

// ConfigMapScope is the namespace a ConfigMap policy applies to: its own,
// or every namespace ("") when it lives in the webhook's own namespace.
func ConfigMapScope(namespace, policyNamespace string) string {
	if namespace == policyNamespace {
		return ""
	}
	return namespace
}

// ParseConfigMapData reads the policy a ConfigMap carries under policy.yaml.
// Field paths in errors start with "policy.yaml".
func ParseConfigMapData(data map[string]string) (*v1alpha1.PolicySpec, error) {
	raw, ok := data[ConfigMapDataKey]
	if !ok {
		return nil, FieldErrors{{Field: "data", Detail: fmt.Sprintf("missing key %q holding the policy", ConfigMapDataKey)}}
	}
	spec, err := ParseSpec([]byte(raw))
	if err != nil {
		return nil, prefixErr(err, ConfigMapDataKey, ": ")
	}
	return spec, nil
}

// ParseAdmissionPolicySpec reads the spec of an AdmissionPolicy, given as
// JSON or YAML. Field paths in errors start with "spec".
func ParseAdmissionPolicySpec(spec []byte) (*v1alpha1.PolicySpec, error) {
	if len(spec) == 0 {
		return nil, FieldErrors{{Field: "spec", Detail: "required"}}
	}
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, prefixErr(err, "spec", ".")
	}
	return s, nil
}

// ParseAdmissionPolicyObject reads the spec of an AdmissionPolicy held as
// an unstructured map (from a dynamic informer or a manifest file).
func ParseAdmissionPolicyObject(obj map[string]any) (*v1alpha1.PolicySpec, error) {
	spec, ok := obj["spec"]
	if !ok || spec == nil {
		return nil, FieldErrors{{Field: "spec", Detail: "required"}}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding spec: %w", err)
	}
	return ParseAdmissionPolicySpec(raw)
}

func prefixErr(err error, prefix, sep string) error {
	if fe, ok := err.(FieldErrors); ok {
		return fe.prefixed(prefix, sep)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
