package policy

import (
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

// MyApple is the part of a stable.example.com/v1 MyApple that rules read.
type MyApple struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MyAppleSpec `json:"spec"`
}

// MyAppleSpec is the spec of a MyApple.
type MyAppleSpec struct {
	Color    string `json:"color"`
	Size     string `json:"size"`
	Quantity int64  `json:"quantity"`
}

// Request is one admission to judge: an already decoded Pod or MyApple, and
// on UPDATE the object it replaces.
type Request struct {
	Kind        string // KindPod or KindMyApple
	Operation   Operation
	SubResource string
	Namespace   string

	Pod    *corev1.Pod
	OldPod *corev1.Pod

	MyApple    *MyApple
	OldMyApple *MyApple
}

// Object returns the metadata of the object being admitted.
func (r *Request) Object() *metav1.ObjectMeta {
	switch {
	case r.Pod != nil:
		return &r.Pod.ObjectMeta
	case r.MyApple != nil:
		return &r.MyApple.ObjectMeta
	}
	return &metav1.ObjectMeta{}
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
	if m.Name == "" && m.GenerateName != "" {
		return m.GenerateName + "*"
	}
	return m.Name
}

// Cluster is the cluster state rules refer to. Offline it is fed from
// files; in the webhook, from the informer cache, so no rule makes an API call.
type Cluster interface {
	// NamespaceLabels returns a namespace's labels and whether it is known.
	NamespaceLabels(name string) (map[string]string, bool)
	// MyAppleQuantity is the sum of spec.quantity over the MyApples of a
	// namespace, leaving out the one named except (the object under update).
	MyAppleQuantity(namespace, except string) int64
}
