package policy

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
