package live

import (
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// apple is a MyApple as the informer stores it: what the quota rule and
// CEL's cluster.myApples read, plus the resourceVersion the informer
// compares to tell a resync from a change. It is about 150 bytes with its
// strings, against several kilobytes for the unstructured object it
// replaces.
type apple struct {
	namespace, name, resourceVersion string
	color, size                      string
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

// appleIndex is the index by namespace that the quota rule and CEL's
// cluster.myApples read: per namespace, each MyApple and the running total
// of their quantities.
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
	total  int64
	apples map[string]cel.Apple // by name
	// list is apples sorted by name, built on the first read after a
	// change and shared by every read until the next one, so that
	// admissions reading cluster.myApples allocate nothing. Nil when stale.
	list []cel.Apple
}

func newAppleIndex() *appleIndex {
	return &appleIndex{byNS: map[string]*namespaceApples{}}
}

func (ix *appleIndex) set(a *apple) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[a.namespace]
	if ns == nil {
		ns = &namespaceApples{apples: map[string]cel.Apple{}}
		ix.byNS[a.namespace] = ns
	}
	ns.total += a.quantity - ns.apples[a.name].Quantity
	ns.apples[a.name] = cel.Apple{Name: a.name, Color: a.color, Size: a.size, Quantity: a.quantity}
	ns.list = nil
}

func (ix *appleIndex) remove(namespace, name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return
	}
	a, ok := ns.apples[name]
	if !ok {
		return
	}
	ns.total -= a.Quantity
	delete(ns.apples, name)
	ns.list = nil
	if len(ns.apples) == 0 {
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
	return ns.total - ns.apples[except].Quantity
}

// list is the MyApples of a namespace, sorted by name. The slice is shared
// until the namespace's MyApples change: callers must not modify it.
func (ix *appleIndex) list(namespace string) []cel.Apple {
	ix.mu.RLock()
	ns := ix.byNS[namespace]
	if ns == nil || ns.list != nil {
		defer ix.mu.RUnlock()
		if ns == nil {
			return nil
		}
		return ns.list
	}
	ix.mu.RUnlock()

	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns = ix.byNS[namespace] // changed while unlocked, perhaps
	if ns == nil {
		return nil
	}
	if ns.list == nil {
		l := make([]cel.Apple, 0, len(ns.apples))
		for _, a := range ns.apples {
			l = append(l, a)
		}
		slices.SortFunc(l, func(a, b cel.Apple) int { return strings.Compare(a.Name, b.Name) })
		ns.list = l
	}
	return ns.list
}

// count is the number of MyApples indexed, for logs.
func (ix *appleIndex) count() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, ns := range ix.byNS {
		n += len(ns.apples)
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
