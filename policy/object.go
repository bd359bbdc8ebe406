package policy

import (
	"context"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operation is the admission operation being judged.
type Operation string

// Operations the webhook judges.
const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
)

// The types below are only the parts of a Pod and a MyApple that rules read,
// so that decoding skips the rest. Their JSON names, and types with their
// own decoding (Quantity, Time), are the Kubernetes API's.

// ObjectMeta is the metadata rules read.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	GenerateName      string            `json:"generateName,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	DeletionTimestamp *metav1.Time      `json:"deletionTimestamp,omitempty"`
	// UID and ResourceVersion identify the version admitted, which confirms
	// a quota reservation.
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// Pod is the part of a core/v1 Pod that rules read.
type Pod struct {
	ObjectMeta `json:"metadata"`
	Spec       PodSpec `json:"spec"`
}

// PodSpec is the part of a Pod's spec that rules read.
type PodSpec struct {
	InitContainers []Container `json:"initContainers,omitempty"`
	Containers     []Container `json:"containers,omitempty"`
	// EphemeralContainers share the JSON shape of the fields rules read.
	EphemeralContainers []Container         `json:"ephemeralContainers,omitempty"`
	SecurityContext     *PodSecurityContext `json:"securityContext,omitempty"`
	HostNetwork         bool                `json:"hostNetwork,omitempty"`
	HostPID             bool                `json:"hostPID,omitempty"`
	HostIPC             bool                `json:"hostIPC,omitempty"`
	Volumes             []Volume            `json:"volumes,omitempty"`
}

// Container is the part of a container (init, regular or ephemeral) that
// rules read.
type Container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image,omitempty"`
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	Resources       Resources        `json:"resources,omitempty"`
}

// Resources are a container's resource limits; requests are not read.
type Resources struct {
	Limits corev1.ResourceList `json:"limits,omitempty"`
}

// SecurityContext is the part of a container's securityContext rules read.
type SecurityContext struct {
	Privileged   *bool  `json:"privileged,omitempty"`
	RunAsNonRoot *bool  `json:"runAsNonRoot,omitempty"`
	RunAsUser    *int64 `json:"runAsUser,omitempty"`
}

// PodSecurityContext is the part of a Pod's securityContext rules read.
type PodSecurityContext struct {
	RunAsNonRoot *bool  `json:"runAsNonRoot,omitempty"`
	RunAsUser    *int64 `json:"runAsUser,omitempty"`
}

// Volume is the part of a Pod volume rules read.
type Volume struct {
	Name     string       `json:"name"`
	HostPath *HostPath    `json:"hostPath,omitempty"`
	Image    *ImageVolume `json:"image,omitempty"`
}

// HostPath is a hostPath volume source.
type HostPath struct {
	Path string `json:"path"`
}

// ImageVolume is an image volume source: an image the kubelet pulls.
type ImageVolume struct {
	Reference string `json:"reference,omitempty"`
}

// MyApple is the part of a stable.example.com/v1 MyApple that rules read.
type MyApple struct {
	ObjectMeta `json:"metadata"`
	Spec       MyAppleSpec `json:"spec"`
}

// MyAppleSpec is the spec of a MyApple.
type MyAppleSpec struct {
	Color    string `json:"color,omitempty"`
	Size     string `json:"size,omitempty"`
	Quantity int64  `json:"quantity,omitempty"`
}

// Request is one admission to judge: an already decoded Pod or MyApple, and
// on UPDATE the object it replaces.
type Request struct {
	Kind        Kind
	Operation   Operation
	SubResource string
	Namespace   string

	Pod    *Pod
	OldPod *Pod

	MyApple    *MyApple
	OldMyApple *MyApple

	// Now is the instant the request is judged at: exceptions apply while
	// it is before their expiresAt. Zero applies none. Callers read their
	// clock once per request, so that the verdict is that of one instant.
	Now time.Time

	// Controller, when set, is the Pod controller being admitted: Pod and
	// OldPod are its template's Pods, in its namespace, and violations
	// name fields of the controller.
	Controller *Controller

	// The fields below are for CEL only. Context bounds CEL evaluation
	// besides its per-policy timeout; nil is context.Background().
	Context  context.Context
	UserInfo authenticationv1.UserInfo
	DryRun   bool
	// Resource and RequestKind default to the kind's own when empty.
	Resource    metav1.GroupVersionResource
	RequestKind metav1.GroupVersionKind
	// Unstructured decodes the object and, on UPDATE, the old one as CEL
	// reads them. Evaluate calls it at most once, when a CEL policy applies;
	// nil: CEL policies report that they cannot judge the request.
	Unstructured func() (object, oldObject map[string]any, err error)
}

// Object returns the metadata of the object being admitted.
func (r *Request) Object() *ObjectMeta {
	switch {
	case r.Pod != nil:
		return &r.Pod.ObjectMeta
	case r.MyApple != nil:
		return &r.MyApple.ObjectMeta
	}
	return &ObjectMeta{}
}

// ObjectKind is the kind of the object admitted: a Pod controller's own
// kind, not that of its template.
func (r *Request) ObjectKind() Kind {
	if r.Controller != nil {
		return r.Controller.Kind
	}
	return r.Kind
}

// oldLabels returns the labels of the object an UPDATE replaces, and
// whether the request carries it.
func (r *Request) oldLabels() (map[string]string, bool) {
	switch {
	case r.OldPod != nil:
		return r.OldPod.Labels, true
	case r.OldMyApple != nil:
		return r.OldMyApple.Labels, true
	}
	return nil, false
}

// Name is the object's name, or its generateName prefix when the API server
// has yet to pick one.
func (r *Request) Name() string {
	m := r.Object()
	if r.Controller != nil {
		m = &r.Controller.Meta
	}
	if m.Name == "" && m.GenerateName != "" {
		return m.GenerateName + "*"
	}
	return m.Name
}

// Cluster is the cluster state rules refer to (see the package doc).
type Cluster interface {
	// NamespaceLabels returns a namespace's labels and whether it is known.
	NamespaceLabels(name string) (map[string]string, bool)
	// NamespaceAnnotations returns a namespace's annotations, nil when it
	// has none or is unknown.
	NamespaceAnnotations(name string) map[string]string
	// MyAppleQuantity is the sum of spec.quantity over the MyApples of a
	// namespace, leaving out the one named except (the object under update).
	MyAppleQuantity(namespace, except string) int64
}
