package cache

import (
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// apple is a MyApple as the informer stores it: what the quota rule and
// CEL's cluster.myApples read, plus the UID and resourceVersion that quota
// reservations are confirmed by (and the informer compares to tell a resync
// from a change).
type apple struct {
	namespace, name, uid, resourceVersion string
	color, size                           string
	quantity                              int64
}

var _ runtime.Object = (*apple)(nil)
var _ metav1.ObjectMetaAccessor = (*apple)(nil)

func (a *apple) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (a *apple) DeepCopyObject() runtime.Object {
	c := *a
	return &c
}

// GetObjectMeta is built on each call, a few times per watch event and never
// per admission, so that the stored object need not carry an ObjectMeta.
func (a *apple) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: a.namespace, Name: a.name, ResourceVersion: a.resourceVersion}
}

// appleIndex is, per namespace, each MyApple kept ready for the quota rule
// and CEL's cluster.* (cel.Apples: values built and tallies kept as
// MyApples change), so that no admission reads in proportion to the
// MyApples of its namespace. The tallies leave out the one under update
// consistently (the store runs ahead of its handlers).
type appleIndex struct {
	mu   sync.RWMutex
	byNS map[string]*namespaceApples
	// deleted holds the UIDs of MyApples seen deleted in the last
	// DeletedRetention, and when: a quota reservation for one of them is
	// settled, so deleting a MyApple frees its quantity at once.
	deleted    map[string]time.Time
	lastPruned time.Time
	clock      clock.PassiveClock
}

// DeletedRetention is how long the cache remembers a deleted MyApple's
// UID: longer than any quota reservation lives.
const DeletedRetention = 10 * time.Minute

type namespaceApples struct {
	apples *cel.Apples
	// versions is, by UID, each MyApple's name and resourceVersion: what
	// tells a quota reservation the cache has seen what it reserved for.
	versions map[string]version
	uids     map[string]string // by name
}

type version struct {
	name, resourceVersion string
}

func newAppleIndex() *appleIndex {
	return &appleIndex{byNS: map[string]*namespaceApples{}, deleted: map[string]time.Time{}, clock: clock.RealClock{}}
}

func (ix *appleIndex) set(a *apple) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[a.namespace]
	if ns == nil {
		ns = &namespaceApples{apples: cel.NewApples(), versions: map[string]version{}, uids: map[string]string{}}
		ix.byNS[a.namespace] = ns
	}
	if old, ok := ns.uids[a.name]; ok && old != a.uid {
		// Deleted and created again under the same name, the deletion
		// unseen (a relist): the old one is gone.
		ix.forget(ns, old)
	}
	ns.apples.Set(cel.Apple{Name: a.name, Color: a.color, Size: a.size, Quantity: a.quantity})
	ns.uids[a.name] = a.uid
	ns.versions[a.uid] = version{name: a.name, resourceVersion: a.resourceVersion}
}

func (ix *appleIndex) remove(namespace, name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return
	}
	if _, ok := ns.apples.Remove(name); !ok {
		return
	}
	ix.forget(ns, ns.uids[name])
	delete(ns.uids, name)
	if ns.apples.Len() == 0 {
		delete(ix.byNS, namespace)
	}
}

// forget records a UID as deleted, and drops the records older than
// DeletedRetention every so often, so they take memory in proportion to
// the deletions of the last few minutes.
func (ix *appleIndex) forget(ns *namespaceApples, uid string) {
	delete(ns.versions, uid)
	if uid == "" {
		return
	}
	now := ix.clock.Now()
	ix.deleted[uid] = now
	if now.Sub(ix.lastPruned) < DeletedRetention/4 {
		return
	}
	ix.lastPruned = now
	for u, at := range ix.deleted {
		if now.Sub(at) > DeletedRetention {
			delete(ix.deleted, u)
		}
	}
}

// Seen is what the cache has seen of one MyApple, by UID.
type Seen struct {
	// Present: the cache holds it, at ResourceVersion with Quantity.
	Present         bool
	ResourceVersion string
	Quantity        int64
	// Deleted: the cache held it and saw it deleted (in the last
	// DeletedRetention).
	Deleted bool
}

// seen looks a MyApple up by UID.
func (ix *appleIndex) seen(namespace, uid string) Seen {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ns := ix.byNS[namespace]; ns != nil {
		if v, ok := ns.versions[uid]; ok {
			a, _ := ns.apples.Get(v.name)
			return Seen{Present: true, ResourceVersion: v.resourceVersion, Quantity: a.Quantity}
		}
	}
	_, deleted := ix.deleted[uid]
	return Seen{Deleted: deleted}
}

// tally is cel.Apples.Tally of a namespace.
func (ix *appleIndex) tally(namespace string, by cel.GroupBy, value, except string) cel.Tally {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return cel.Tally{}
	}
	return ns.apples.Tally(by, value, except)
}

// sum is the total quantity in a namespace, leaving out the MyApple named
// except.
func (ix *appleIndex) sum(namespace, except string) int64 {
	return ix.tally(namespace, cel.ByNamespace, "", except).Quantity
}

// groups is cel.Apples.Groups of a namespace.
func (ix *appleIndex) groups(namespace string, by cel.GroupBy) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ns := ix.byNS[namespace]
	if ns == nil {
		return nil
	}
	return ns.apples.Groups(by)
}

// list is the MyApples of a namespace, sorted by name, shared until the
// namespace's MyApples change. The first read after a change builds it
// (List writes), so it takes the write lock then.
func (ix *appleIndex) list(namespace string) cel.AppleList {
	ix.mu.RLock()
	ns := ix.byNS[namespace]
	if ns == nil {
		ix.mu.RUnlock()
		return cel.AppleList{}
	}
	l, ok := ns.apples.BuiltList()
	ix.mu.RUnlock()
	if ok {
		return l
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ns = ix.byNS[namespace]; ns == nil { // changed while unlocked, perhaps
		return cel.AppleList{}
	}
	return ns.apples.List()
}

// largest is the number of MyApples of the namespace that has the most.
func (ix *appleIndex) largest() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, ns := range ix.byNS {
		n = max(n, ns.apples.Len())
	}
	return n
}

// count is the number of MyApples indexed, for logs.
func (ix *appleIndex) count() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, ns := range ix.byNS {
		n += ns.apples.Len()
	}
	return n
}

// handler keeps the index in step with the informer.
func (ix *appleIndex) handler() toolscache.ResourceEventHandler {
	set := func(obj any) {
		if a, ok := obj.(*apple); ok {
			ix.set(a)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if ns, name, ok := objectKey(obj); ok {
				ix.remove(ns, name)
			}
		},
	}
}
