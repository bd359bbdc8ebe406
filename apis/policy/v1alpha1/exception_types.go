package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExceptionResource is the GroupVersionResource of PolicyExceptions.
var ExceptionResource = GroupVersion.WithResource("policyexceptions")

// Kinds of policy carriers an exception names.
const (
	PolicyKindAdmissionPolicy = "AdmissionPolicy"
	PolicyKindConfigMap       = "ConfigMap"
)

// Bounds of a PolicyException, held by the API server's schema and by the
// webhook alike.
const (
	MaxExceptionReasonBytes = 1024
	MaxExceptionEntries     = 16
	MaxExceptionRules       = 32
	MaxExceptionNames       = 16
	MaxExceptionKinds       = 8
	MaxExceptionNameBytes   = 253
)

// PolicyExceptionSpec lifts named rules of named policies for the objects it
// matches, until ExpiresAt.
type PolicyExceptionSpec struct {
	// Reason says why the exception exists: a ticket, a plan. Required.
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// ExpiresAt is when the exception stops applying. Required; at most
	// the webhook's --max-exception-duration ahead when written.
	// +kubebuilder:validation:Format=date-time
	ExpiresAt metav1.Time `json:"expiresAt"`
	// Exceptions name the rules of each policy that are lifted.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Exceptions []ExceptionEntry `json:"exceptions"`
	// Match narrows the objects covered; all of it must hold.
	// +optional
	Match *ExceptionMatch `json:"match,omitempty"`
}

// ExceptionEntry names one policy and which of its rules are lifted.
type ExceptionEntry struct {
	// Policy is the policy whose rules are lifted.
	Policy PolicyReference `json:"policy"`
	// Rules are the rule names violations carry: pods.requireRunAsNonRoot,
	// validations.require-probes, ...
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	Rules []string `json:"rules"`
}

// PolicyReference names a policy: an AdmissionPolicy by name, or a policy
// ConfigMap by namespace and name.
type PolicyReference struct {
	// Kind is AdmissionPolicy or ConfigMap.
	// +kubebuilder:validation:Enum=AdmissionPolicy;ConfigMap
	Kind string `json:"kind"`
	// Namespace of a ConfigMap; empty for an AdmissionPolicy.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// Name of the policy.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ExceptionMatch narrows which objects an exception covers.
type ExceptionMatch struct {
	// Kinds covered: Pod, MyApple or a Pod controller (Deployment, ...).
	// Empty means all.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	Kinds []string `json:"kinds,omitempty"`
	// Names are globs ('*' any run of characters) on the object's name.
	// Empty means any name.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	Names []string `json:"names,omitempty"`
	// ObjectSelector matches the labels of the object.
	// +optional
	ObjectSelector *metav1.LabelSelector `json:"objectSelector,omitempty"`
	// NamespaceSelector matches the labels of the object's namespace; only
	// an exception in the webhook's own namespace may set it.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// PolicyExceptionStatus is written by the elected (leader) replica.
type PolicyExceptionStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Active is True until expiresAt, Expired True after it.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Active is "True" or "False", for `kubectl get`.
	// +optional
	Active string `json:"active,omitempty"`
	// CoveredObjects counts the existing objects the exception covered in
	// the last audit sweep.
	// +optional
	CoveredObjects *int64 `json:"coveredObjects,omitempty"`
	// LastAuditTime is when that sweep ended.
	// +optional
	LastAuditTime *metav1.Time `json:"lastAuditTime,omitempty"`
}

// Condition types of a PolicyException.
const (
	ConditionActive  = "Active"
	ConditionExpired = "Expired"
)

// PolicyException lifts named rules of named policies for matching objects
// in its own namespace (any namespace, from the webhook's own) until its
// expiresAt.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=pex
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.exceptions[0].policy.name`
// +kubebuilder:printcolumn:name="Rules",type=string,JSONPath=`.spec.exceptions[0].rules`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expiresAt`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.active`
// +kubebuilder:printcolumn:name="Covered",type=integer,JSONPath=`.status.coveredObjects`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PolicyException struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicyExceptionSpec   `json:"spec,omitempty"`
	Status PolicyExceptionStatus `json:"status,omitempty"`
}

// PolicyExceptionList is a list of PolicyExceptions.
//
// +kubebuilder:object:root=true
type PolicyExceptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PolicyException `json:"items"`
}
