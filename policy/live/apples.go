package live

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// apple is a MyApple as the informer stores it: what the quota rule reads,
// plus the resourceVersion the informer compares to tell a resync from a
// change. It is about 100 bytes with its strings, against several
// kilobytes for the unstructured object it replaces.
type apple struct {
	namespace, name, resourceVersion string
	quantity                         int64
}

var _ runtime.Object = (*apple)(nil)
var _ metav1.ObjectMetaAccessor = (*apple)(nil)

func (a *apple) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (a *apple) DeepCopyObject() runtime.Object {
	c := *a
	return &c
}

// GetObjectMeta gives the informer's key function and resourceVersion
// checks their view of the object. It is built on each call, which
// happens a few times per watch event and never per admission, so that
// the stored object need not carry a whole ObjectMeta.
func (a *apple) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: a.namespace, Name: a.name, ResourceVersion: a.resourceVersion}
}

// appleIndex is the index by namespace that the quota rule reads: per
// namespace, the quantity of each MyApple and their running total.
//
// The informer's own namespace index would answer the same question by
// copying every MyApple of the namespace into a new slice and summing it,
// O(n) work and an allocation on every MyApple admission. Kept here, a
// total is O(1) to read, and keeping each MyApple's quantity beside it
// makes leaving out the one under update just as cheap and always
// consistent with the total (the informer's store runs slightly ahead of
// its handlers).
type appleIndex struct {
	mu   sync.RWMutex
	byNS map[string]*namespaceApples
}

type namespaceApples struct {
	total    int64
	quantity map[string]int64 // by name
}

func newAppleIndex() *appleIndex {
	return &appleIndex{byNS: map[string]*namespaceApples{}}
}

func (ix *appleIndex) set(a *apple) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[a.namespace]
	if ns == nil {
		ns = &namespaceApples{quantity: map[string]int64{}}
		ix.byNS[a.namespace] = ns
	}
	ns.total += a.quantity - ns.quantity[a.name]
	ns.quantity[a.name] = a.quantity
}

func (ix *appleIndex) remove(namespace, name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return
	}
	q, ok := ns.quantity[name]
	if !ok {
		return
	}
	ns.total -= q
	delete(ns.quantity, name)
	if len(ns.quantity) == 0 {
		delete(ix.byNS, namespace)
	}
}

// sum is the total quantity in a namespace, leaving out the MyApple named
// except.
func (ix *appleIndex) sum(namespace, except string) int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return 0
	}
	return ns.total - ns.quantity[except]
}

// count is the number of MyApples indexed, for logs.
func (ix *appleIndex) count() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, ns := range ix.byNS {
		n += len(ns.quantity)
	}
	return n
}

// handler keeps the index in step with the informer.
func (ix *appleIndex) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if a, ok := obj.(*apple); ok {
				ix.set(a)
			}
		},
		UpdateFunc: func(_, obj any) {
			if a, ok := obj.(*apple); ok {
				ix.set(a)
			}
		},
		DeleteFunc: func(obj any) {
			if ns, name, ok := objectKey(obj); ok {
				ix.remove(ns, name)
			}
		},
	}
}
