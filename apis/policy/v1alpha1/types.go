package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enforcement says what a violation of a policy does to the request.
// +kubebuilder:validation:Enum=Deny;Warn;Audit
type Enforcement string

const (
	// Deny rejects the request.
	Deny Enforcement = "Deny"
	// Warn admits the request and returns the violation as a warning.
	Warn Enforcement = "Warn"
	// Audit admits the request silently; the violation is only counted and logged.
	Audit Enforcement = "Audit"
)

// PolicySpec is the policy schema, the same whether it is carried by a
// ConfigMap (data key policy.yaml) or by an AdmissionPolicy (spec).
type PolicySpec struct {
	// Enforcement is Deny (the default), Warn or Audit.
	// On an AdmissionPolicy the API server fills the default in, so that
	// `kubectl get admissionpolicies` shows it.
	// +optional
	// +kubebuilder:default=Deny
	Enforcement Enforcement `json:"enforcement,omitempty"`
	// Match narrows which admissions the policy judges.
	// +optional
	Match Match `json:"match,omitempty"`
	// Pods holds the rules for Pods.
	// +optional
	Pods *PodRules `json:"pods,omitempty"`
	// MyApples holds the rules for MyApples.
	// +optional
	MyApples *MyAppleRules `json:"myApples,omitempty"`

	// Params is any YAML value, given to CEL expressions as `params`.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Params *apiextensionsv1.JSON `json:"params,omitempty"`
	// Variables are CEL expressions named for the others to use as
	// `variables.<name>`; each is evaluated lazily, at most once per
	// admission, and may use the variables before it.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Variables []Variable `json:"variables,omitempty"`
	// MatchConditions are CEL expressions that must all be true for the
	// policy to judge the object, as in a ValidatingAdmissionPolicy.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	MatchConditions []MatchCondition `json:"matchConditions,omitempty"`
	// Validations are CEL expressions that must be true of the object; each
	// one that is false is a violation.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Validations []Validation `json:"validations,omitempty"`
	// FailurePolicy says what a CEL expression that fails to evaluate (an
	// error, the cost budget or the time limit exhausted) does: Fail (the
	// default) makes it a violation, Ignore passes over it.
	// +optional
	FailurePolicy *FailurePolicy `json:"failurePolicy,omitempty"`
}

// FailurePolicy says what a CEL expression that fails to evaluate does.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

const (
	// Fail makes an evaluation error a violation of the expression's validation.
	Fail FailurePolicy = "Fail"
	// Ignore passes over an expression that fails to evaluate.
	Ignore FailurePolicy = "Ignore"
)

// Variable is a named CEL expression.
type Variable struct {
	// Name is how other expressions refer to it: variables.<name>; a CEL
	// identifier.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name string `json:"name"`
	// Expression is the CEL expression; any result type.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`
}

// MatchCondition is a named CEL expression that must be true for the policy
// to judge the object.
type MatchCondition struct {
	// Name identifies the condition.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Expression is the CEL expression; it must be a bool.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`
}

// Validation is a CEL expression that must be true of the object.
type Validation struct {
	// Name, if set, names the rule a violation reports:
	// validations.<name>, else validations[<index>].
	// +optional
	Name string `json:"name,omitempty"`
	// Expression is the CEL expression; it must be a bool.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`
	// Message is the violation's message; the default names the expression.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// MessageExpression is a CEL expression, a string, giving the message;
	// it wins over Message when it evaluates to a non-empty string.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	MessageExpression string `json:"messageExpression,omitempty"`
	// FieldPath is the field a violation reports, e.g. spec.containers.
	// +optional
	FieldPath string `json:"fieldPath,omitempty"`
}

// Match selects the admissions a policy judges.
type Match struct {
	// Kinds the policy judges: Pod, MyApple. Empty means both.
	// +optional
	// +listType=set
	Kinds []string `json:"kinds,omitempty"`
	// NamespaceSelector matches the labels of the object's namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// ObjectSelector matches the labels of the object.
	// +optional
	ObjectSelector *metav1.LabelSelector `json:"objectSelector,omitempty"`
	// ExcludedNamespaces are never judged by this policy.
	// +optional
	// +listType=set
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// PodControllers narrows which objects that create Pods are judged, by
	// the Pod their template describes, when the policy judges Pods:
	// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob,
	// ReplicationController. Absent means all of them; an empty list means
	// bare Pods only.
	// +optional
	// +listType=set
	PodControllers *[]string `json:"podControllers,omitempty"`
}

// PodRules apply to every container of a Pod: init, regular and ephemeral.
type PodRules struct {
	// AllowedRegistries are repository prefixes an image must start with, at
	// a path-component boundary ("registry.example.com/", "ghcr.io/acme/").
	// +optional
	AllowedRegistries []string `json:"allowedRegistries,omitempty"`
	// DisallowedTags may not be used; an image with neither tag nor digest
	// counts as "latest".
	// +optional
	DisallowedTags []string `json:"disallowedTags,omitempty"`
	// RequireDigest requires every image to be pinned by digest.
	// +optional
	RequireDigest bool `json:"requireDigest,omitempty"`
	// RequiredLabels must be present on the Pod.
	// +optional
	RequiredLabels []string `json:"requiredLabels,omitempty"`
	// ForbidPrivileged refuses privileged containers.
	// +optional
	ForbidPrivileged bool `json:"forbidPrivileged,omitempty"`
	// ForbidHostNamespaces refuses hostNetwork, hostPID and hostIPC.
	// +optional
	ForbidHostNamespaces bool `json:"forbidHostNamespaces,omitempty"`
	// ForbidHostPath refuses hostPath volumes.
	// +optional
	ForbidHostPath bool `json:"forbidHostPath,omitempty"`
	// RequireRunAsNonRoot requires runAsNonRoot: true for every container,
	// set on the container or inherited from the Pod.
	// +optional
	RequireRunAsNonRoot bool `json:"requireRunAsNonRoot,omitempty"`
	// RequireResourceLimits lists resources (cpu, memory, ...) every regular
	// and init container must set a limit for.
	// +optional
	RequireResourceLimits []string `json:"requireResourceLimits,omitempty"`
}

// MyAppleRules apply to MyApples (stable.example.com/v1).
type MyAppleRules struct {
	// AllowedColors for spec.color.
	// +optional
	AllowedColors []string `json:"allowedColors,omitempty"`
	// AllowedSizes for spec.size.
	// +optional
	AllowedSizes []string `json:"allowedSizes,omitempty"`
	// MinQuantity is the smallest spec.quantity allowed.
	// +optional
	MinQuantity *int64 `json:"minQuantity,omitempty"`
	// MaxQuantity is the largest spec.quantity allowed.
	// +optional
	MaxQuantity *int64 `json:"maxQuantity,omitempty"`
	// MaxTotalQuantityPerNamespace caps the sum of spec.quantity over the
	// MyApples of a namespace, this one included.
	// +optional
	MaxTotalQuantityPerNamespace *int64 `json:"maxTotalQuantityPerNamespace,omitempty"`
}

// AdmissionPolicySpec is the policy in force and, beside it, a candidate:
// the next version of the policy, judged on live traffic without changing
// a verdict until `policy-webhook promote` makes it the spec.
type AdmissionPolicySpec struct {
	PolicySpec `json:",inline"`
	// Candidate is a complete policy of the same schema, evaluated beside
	// the spec on every admission either matches and in every audit sweep;
	// its disagreements with the spec are counted in status.candidate.
	// +optional
	Candidate *PolicySpec `json:"candidate,omitempty"`
}

// Candidate outcomes: how the candidate's verdict on one admission compares
// with the spec's.
const (
	// OutcomeSame: the candidate decides as the spec does.
	OutcomeSame = "same"
	// OutcomeWouldDeny: the candidate denies what the spec admits.
	OutcomeWouldDeny = "would_deny"
	// OutcomeWouldAllow: the candidate admits what the spec denies.
	OutcomeWouldAllow = "would_allow"
	// OutcomeWouldWarn: both admit (or both deny), but the warnings differ.
	OutcomeWouldWarn = "would_warn"
)

// MaxCandidateDenials bounds the recent would-deny examples a status lists.
const MaxCandidateDenials = 10

// MaxCandidateExisting bounds the existing objects status.candidate lists.
const MaxCandidateExisting = 20

// CandidateCounts are the admissions a candidate judged, by outcome.
type CandidateCounts struct {
	// Judged counts the admissions either the spec or the candidate matched.
	Judged int64 `json:"judged"`
	// Same counts those the candidate decided as the spec did.
	Same int64 `json:"same"`
	// WouldDeny counts those the candidate would deny and the spec admitted.
	WouldDeny int64 `json:"wouldDeny"`
	// WouldAllow counts those the candidate would admit and the spec denied.
	WouldAllow int64 `json:"wouldAllow"`
	// WouldWarn counts those whose warnings the candidate would change.
	WouldWarn int64 `json:"wouldWarn"`
}

// CandidateDenial is one admission the candidate would have denied.
type CandidateDenial struct {
	// Kind of the object: Pod, MyApple or a Pod controller.
	Kind string `json:"kind"`
	// Namespace of the object.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name of the object.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
	// Operation: CREATE or UPDATE.
	Operation string `json:"operation"`
	// Time of the admission.
	Time metav1.Time `json:"time"`
	// Violation is the candidate's first Deny violation: rule, field, message.
	// +kubebuilder:validation:MaxLength=1024
	Violation string `json:"violation"`
}

// ReplicaCandidate is what one replica saw of the candidate: written by the
// replica itself in its status.replicas entry.
type ReplicaCandidate struct {
	// Hash identifies the candidate judged (sha256 of its document, 16 hex digits).
	// +kubebuilder:validation:MaxLength=64
	Hash string `json:"hash"`
	// Since is when this replica started judging it.
	Since metav1.Time `json:"since"`
	// Counts of the admissions this replica judged with it.
	CandidateCounts `json:",inline"`
	// Denials are the last admissions this replica saw it would deny.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Denials []CandidateDenial `json:"denials,omitempty"`
}

// CandidateStatus is how the candidate fared beside the spec, summed over
// the replicas by the elected one.
type CandidateStatus struct {
	// Generation of the AdmissionPolicy the candidate was read from.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Hash identifies the candidate (sha256 of its document, 16 hex digits).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Hash string `json:"hash,omitempty"`
	// Valid is false when the candidate is invalid: Message says why, and
	// the counts are those of its last good version, if any.
	Valid bool `json:"valid"`
	// Message says why the candidate is invalid.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Message string `json:"message,omitempty"`
	// Since is when the first replica started judging it.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// Counts of the admissions judged, summed over the replicas.
	CandidateCounts `json:",inline"`
	// Summary is "+<would deny> deny / -<would allow>", for `kubectl get`.
	// +optional
	Summary string `json:"summary,omitempty"`
	// RecentDenials are the last admissions it would have denied, newest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	RecentDenials []CandidateDenial `json:"recentDenials,omitempty"`
	// Existing is what the last audit sweep found the candidate would deny
	// among the existing objects that the spec admits.
	// +optional
	Existing *AuditStatus `json:"existing,omitempty"`
}

// AdmissionPolicyStatus says whether the policy is in force, and on which
// replicas of the webhook.
type AdmissionPolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// Written by the elected (leader) replica.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready is True when the current generation is in force,
	// False with the reason when it is invalid and an earlier one stays in force.
	// Written by the elected (leader) replica.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// InForce is "<replicas enforcing the current generation>/<replicas>",
	// counted over the replicas that are alive, for `kubectl get`.
	// Written by the elected (leader) replica.
	// +optional
	InForce string `json:"inForce,omitempty"`
	// Replicas is what each replica of the webhook enforces. Each replica
	// writes only its own entry (server-side apply under its own field
	// manager); the leader removes the entries of replicas that are gone.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Replicas []ReplicaStatus `json:"replicas,omitempty"`

	// Audit is what the last background audit found among the existing
	// objects, written by the elected replica after each sweep.
	// +optional
	Audit *AuditStatus `json:"audit,omitempty"`

	// Candidate is how spec.candidate fares beside the spec: admissions
	// judged and each outcome summed over the replicas, the last it would
	// have denied, and the existing objects it would deny. Written by the
	// elected (leader) replica; absent without a candidate.
	// +optional
	Candidate *CandidateStatus `json:"candidate,omitempty"`
}

// ReplicaStatus is what one replica of the webhook enforces of a policy.
type ReplicaStatus struct {
	// Name of the replica (its Pod name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// ObservedGeneration is the newest generation this replica has read.
	ObservedGeneration int64 `json:"observedGeneration"`
	// InForce is true when this replica enforces ObservedGeneration; false
	// when that generation is invalid (Message says which one, if any, this
	// replica enforces instead).
	InForce bool `json:"inForce"`
	// LastTransitionTime is when this replica started enforcing what this
	// entry says: the moment its new policy snapshot was swapped in.
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
	// Message says why ObservedGeneration is not in force.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Message string `json:"message,omitempty"`
	// Candidate is what this replica saw of spec.candidate since it last
	// changed, written at most every 10 s while it changes.
	// +optional
	Candidate *ReplicaCandidate `json:"candidate,omitempty"`
}

// AuditStatus is the outcome of the last background audit for one policy.
type AuditStatus struct {
	// LastAuditTime is when the sweep that found these violations ended.
	LastAuditTime metav1.Time `json:"lastAuditTime"`
	// TotalViolations counts the violations of this policy among the
	// existing objects, all of them, not only those listed.
	TotalViolations int64 `json:"totalViolations"`
	// Violations lists the first ones (at most 20), in the order listed.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Violations []AuditViolation `json:"violations,omitempty"`
}

// AuditViolation is one rule one existing object breaks.
type AuditViolation struct {
	// Kind of the object: Pod or MyApple.
	Kind string `json:"kind"`
	// Namespace of the object.
	Namespace string `json:"namespace"`
	// Name of the object.
	Name string `json:"name"`
	// Rule broken, as in a denial (pods.allowedRegistries, ...).
	Rule string `json:"rule"`
	// Field at fault.
	// +optional
	Field string `json:"field,omitempty"`
	// Message says why.
	// +optional
	Message string `json:"message,omitempty"`
}

// AdmissionPolicy is a cluster-wide policy judged by policy-webhook.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ap
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`
// +kubebuilder:printcolumn:name="In Force",type=string,JSONPath=`.status.inForce`,description="Replicas enforcing the current generation / replicas alive"
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.audit.totalViolations`
// +kubebuilder:printcolumn:name="Candidate",type=string,JSONPath=`.status.candidate.summary`,description="Admissions the candidate would deny (+) and admit (-) that the spec decides otherwise"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AdmissionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AdmissionPolicySpec   `json:"spec,omitempty"`
	Status AdmissionPolicyStatus `json:"status,omitempty"`
}

// AdmissionPolicyList is a list of AdmissionPolicies.
//
// +kubebuilder:object:root=true
type AdmissionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AdmissionPolicy `json:"items"`
}
