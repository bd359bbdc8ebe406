package policy

import "github.com/policy-webhook/policy-webhook/policy/cel"

// Kind is a kind of object a policy judges, KindPod or KindMyApple, as the
// API names it.
type Kind string

// Kinds a policy judges, defined in package cel, which cannot import this
// one. Untyped, so code keeping kinds as strings uses them too.
const (
	KindPod     = cel.KindPod
	KindMyApple = cel.KindMyApple
)

// Resources the webhook judges, as the API server names them.
const (
	GroupMyApple    = "stable.example.com"
	VersionMyApple  = "v1"
	ResourcePods    = "pods"
	ResourceApples  = "myapples"
	SubResEphemeral = "ephemeralcontainers"
)

// Carrier kinds: the objects a policy is written in.
const (
	SourceConfigMap       = "ConfigMap"
	SourceAdmissionPolicy = "AdmissionPolicy"
)

// PolicyLabel marks a ConfigMap as a policy carrier; only those are watched.
const PolicyLabel = "policy.example.com/policy"

// ConfigMapDataKey is the ConfigMap data key that carries a policy spec.
const ConfigMapDataKey = "policy.yaml"

// ConfigMapCandidateKey is the ConfigMap data key that carries a candidate:
// the next version of the policy, judged beside it without enforcing.
const ConfigMapCandidateKey = "candidate.yaml"

// DefaultPolicyNamespace is the webhook's own namespace unless configured
// otherwise: its ConfigMap policies apply to every namespace.
const DefaultPolicyNamespace = "policy-system"
