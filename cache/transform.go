package cache

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Transforms drop what nothing here reads before the informer stores an
// object. Each passes through anything that is not the raw type it expects,
// which keeps it idempotent, as client-go asks.

// trimMetadata drops managedFields and the last-applied annotation.
func trimMetadata(u *unstructured.Unstructured) {
	md, ok := u.Object["metadata"].(map[string]any)
	if !ok {
		return
	}
	delete(md, "managedFields")
	if ann, ok := md["annotations"].(map[string]any); ok {
		delete(ann, corev1.LastAppliedConfigAnnotation)
		if len(ann) == 0 {
			delete(md, "annotations")
		}
	}
}

// transformConfigMap keeps a policy ConfigMap's identity, labels and the
// policy.yaml and candidate.yaml keys. Other keys (notes, examples) are never read.
func transformConfigMap(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	trimMetadata(u)
	if data, ok := u.Object["data"].(map[string]any); ok {
		for k := range data {
			if k != policy.ConfigMapDataKey && k != policy.ConfigMapCandidateKey {
				delete(data, k)
			}
		}
	}
	delete(u.Object, "binaryData")
	return u, nil
}

// transformAdmissionPolicy keeps spec and status: status is compared
// before it is written, so that it is written only when it changes.
func transformAdmissionPolicy(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		trimMetadata(u)
	}
	return obj, nil
}

// transformNamespace keeps a namespace's name, labels and annotations: what
// a namespaceSelector and CEL's namespaceObject read.
func transformNamespace(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ManagedFields = nil
	delete(m.Annotations, corev1.LastAppliedConfigAnnotation)
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
	m.OwnerReferences = nil
	m.Finalizers = nil
	return m, nil
}

// transformMyApple replaces a MyApple by its identity and the spec fields
// the quota rule and CEL's cluster.myApples read. The CRD requires color,
// size and an integer quantity; anything else reads as zero rather than
// failing the watch.
func transformMyApple(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	spec, _ := u.Object["spec"].(map[string]any)
	a := &apple{
		namespace:       u.GetNamespace(),
		name:            u.GetName(),
		uid:             string(u.GetUID()),
		resourceVersion: u.GetResourceVersion(),
	}
	a.color, _ = spec["color"].(string)
	a.size, _ = spec["size"].(string)
	switch q := spec["quantity"].(type) {
	case int64:
		a.quantity = q
	case float64:
		a.quantity = int64(q)
	}
	return a, nil
}
