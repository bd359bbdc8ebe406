package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// imageCacheSize bounds the normalised image references shared by every
// snapshot: a cluster runs far fewer distinct images than this.
const imageCacheSize = 4096

// Cache is the live policy state: informers, the compiled policy of each
// source, and the current snapshot. It is the policy.Cluster that rules
// read, so evaluating a request makes no API call.
type Cache struct {
	cfg      Config
	log      logr.Logger
	images   *policy.ImageCache
	metrics  *metrics
	compiler *carrier.Compiler

	configMapInformer, policyInformer, appleInformer, namespaceInformer toolscache.SharedIndexInformer
	exceptionInformer                                                   toolscache.SharedIndexInformer
	exceptions                                                          *exceptionTable
	handlers                                                            []toolscache.ResourceEventHandlerRegistration

	informers []watchedInformer // all seven, in start order
	sources   *sourceTable
	apples    *appleIndex
	// Namespaces read from the API server for admissions the informer had
	// not caught up with (namespaces.go), and that informer's health.
	nsReads         *namespaceReads
	namespaceHealth *informerHealth

	// The persisted last good versions (lastgood.go).
	lastGoodInformer toolscache.SharedIndexInformer
	// lastGoodKeyInformer watches LastGoodKeySecret.
	lastGoodKeyInformer toolscache.SharedIndexInformer
	lastGood            *lastGoodTable

	// dirty asks the builder for a new snapshot; its one slot coalesces
	// bursts. pendingSince is when the oldest change not yet in a snapshot
	// arrived (UnixNano, 0 for none).
	dirty        chan struct{}
	pendingSince atomic.Int64

	snapshot atomic.Pointer[Snapshot]
	swapped  chan struct{} // one slot: see Swapped
	started  atomic.Bool
	synced   atomic.Bool
	syncedCh chan struct{}

	// candidates tallies the candidate outcomes of this replica's admissions.
	candidates *CandidateTally

	// The writers (package controllers) hearing of changes.
	onSnapshot      []func(*Snapshot)
	policyListeners []func(name string)
}

var _ policy.Cluster = (*Cache)(nil)
var _ cel.Cluster = (*Cache)(nil)

// New sets up the informers and their handlers. Nothing runs, and nothing
// is requested from the API server, until Start.
func New(cfg Config) (*Cache, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuring the policy cache: %w", err)
	}
	if cfg.Compiler == nil {
		cfg.Compiler = carrier.New()
	}
	c := &Cache{
		cfg:        cfg,
		log:        cfg.Log,
		images:     policy.NewImageCache(imageCacheSize),
		compiler:   cfg.Compiler,
		sources:    newSourceTable(),
		exceptions: newExceptionTable(),
		apples:     newAppleIndex(),
		nsReads:    newNamespaceReads(),
		lastGood:   newLastGoodTable(),
		dirty:      make(chan struct{}, 1),
		swapped:    make(chan struct{}, 1),
		syncedCh:   make(chan struct{}),
	}
	m, err := newMetrics(cfg.Metrics, func() float64 { return float64(c.apples.count()) }, c.exceptionsInForce)
	if err != nil {
		return nil, fmt.Errorf("configuring the policy cache: %w", err)
	}
	c.metrics = m
	c.candidates = NewCandidateTally(c.Snapshot)
	c.snapshot.Store(&Snapshot{Set: policy.NewSet(nil, policy.WithImageCache(c.images))})

	selector := labels.SelectorFromSet(labels.Set{policy.PolicyLabel: "true"}).String()
	configMaps := cfg.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("configmaps"))
	policies := cfg.Dynamic.Resource(v1alpha1.Resource)
	exceptions := cfg.Dynamic.Resource(v1alpha1.ExceptionResource)
	apples := cfg.Dynamic.Resource(MyAppleResource())
	namespaces := cfg.Metadata.Resource(corev1.SchemeGroupVersion.WithResource("namespaces"))
	lastGood := configMaps.Namespace(cfg.PolicyNamespace)
	lastGoodName := fields.OneTermEqualSelector("metadata.name", LastGoodConfigMap).String()
	lastGoodKey := cfg.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(cfg.PolicyNamespace)
	lastGoodKeyName := fields.OneTermEqualSelector("metadata.name", LastGoodKeySecret).String()
	for _, s := range []struct {
		resource, what string
		informer       *toolscache.SharedIndexInformer
		client         any // asked whether it supports watch lists
		list           func(context.Context, metav1.ListOptions) (runtime.Object, error)
		watch          func(context.Context, metav1.ListOptions) (watch.Interface, error)
		example        runtime.Object
		transform      toolscache.TransformFunc // nil: none
		handler        toolscache.ResourceEventHandler
	}{
		{"configmaps", "policy ConfigMaps", &c.configMapInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = selector
				return configMaps.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = selector
				return configMaps.Watch(ctx, o)
			},
			&unstructured.Unstructured{}, transformConfigMap, c.sourceHandler(policy.SourceConfigMap, c.onConfigMap)},
		{"admissionpolicies", "AdmissionPolicies", &c.policyInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return policies.List(ctx, o) },
			policies.Watch, &unstructured.Unstructured{}, transformAdmissionPolicy, c.sourceHandler(policy.SourceAdmissionPolicy, c.onAdmissionPolicy)},
		{"myapples", "MyApples", &c.appleInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return apples.List(ctx, o) },
			apples.Watch, &unstructured.Unstructured{}, transformMyApple, c.apples.handler()},
		// Selectors read the store; the handler only wakes the admissions
		// waiting for a namespace (namespaces.go).
		{"namespaces", "Namespaces", &c.namespaceInformer, cfg.Metadata,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return namespaces.List(ctx, o)
			},
			namespaces.Watch, &metav1.PartialObjectMetadata{}, transformNamespace, c.nsReads.handler()},
		{"lastgood", "last good versions", &c.lastGoodInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = lastGoodName
				return lastGood.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = lastGoodName
				return lastGood.Watch(ctx, o)
			},
			&unstructured.Unstructured{}, nil, c.lastGoodHandler()},
		// The one Secret, by name: RBAC grants reading it and no other.
		{"lastgoodkey", "key of the last good versions", &c.lastGoodKeyInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = lastGoodKeyName
				return lastGoodKey.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = lastGoodKeyName
				return lastGoodKey.Watch(ctx, o)
			},
			&unstructured.Unstructured{}, nil, c.lastGoodKeyHandler()},
		{"policyexceptions", "PolicyExceptions", &c.exceptionInformer, cfg.Dynamic,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return exceptions.List(ctx, o)
			},
			exceptions.Watch, &unstructured.Unstructured{}, transformAdmissionPolicy, c.exceptionHandler()},
	} {
		health := newInformerHealth(s.resource, s.what, c.log, c.metrics, clock.RealClock{})
		if s.informer == &c.namespaceInformer {
			c.namespaceHealth = health
		}
		// As client-go's informer factories make them.
		inf := toolscache.NewSharedIndexInformerWithOptions(listWatch(health, s.client, s.list, s.watch), s.example, toolscache.SharedIndexInformerOptions{
			ResyncPeriod:      cfg.ResyncPeriod,
			Indexers:          toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc},
			ObjectDescription: s.what,
		})
		if s.transform != nil {
			if err := inf.SetTransform(s.transform); err != nil {
				return nil, fmt.Errorf("setting the transform of the %s informer: %w", s.what, err)
			}
		}
		if err := inf.SetWatchErrorHandlerWithContext(health.watchErrorHandler); err != nil {
			return nil, fmt.Errorf("setting the watch error handler of the %s informer: %w", s.what, err)
		}
		reg, err := inf.AddEventHandler(s.handler)
		if err != nil {
			return nil, fmt.Errorf("adding the %s event handler: %w", s.what, err)
		}
		*s.informer = inf
		c.handlers = append(c.handlers, reg)
		c.informers = append(c.informers, watchedInformer{informer: inf, health: health})
	}
	if err := c.metrics.registerStaleness(c.informers); err != nil {
		return nil, fmt.Errorf("configuring the policy cache: %w", err)
	}
	return c, nil
}

// watchedInformer is an informer and what its ListerWatcher knows of its
// connection to the API server.
type watchedInformer struct {
	informer toolscache.SharedIndexInformer
	health   *informerHealth
}

// MyAppleResource is the MyApple CRD's resource.
func MyAppleResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: policy.GroupMyApple, Version: "v1", Resource: policy.ResourceApples}
}

// Start runs the cache until ctx is done: it starts the informers, waits
// until every one has synced and its handler has seen the initial list,
// builds the first snapshot, then keeps snapshots current. Once ctx is
// done it stops the informers, waits for them and returns nil. A Cache
// starts once.
func (c *Cache) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("starting the policy cache: already started")
	}
	begun := time.Now()
	ctx, cancel := context.WithCancel(ctx)

	var workers, informers sync.WaitGroup
	defer func() {
		// Reverse order of start.
		cancel()
		workers.Wait()
		informers.Wait()
		c.log.Info("Policy cache stopped")
	}()

	c.log.Info("Starting policy cache", "policyNamespace", c.cfg.PolicyNamespace)
	for _, i := range c.informers {
		informers.Go(func() { i.informer.RunWithContext(ctx) })
	}

	checkers := make([]toolscache.DoneChecker, len(c.handlers))
	for i, h := range c.handlers {
		checkers[i] = h.HasSyncedChecker()
	}
	if !toolscache.WaitFor(ctx, "", checkers...) {
		c.log.Info("Policy cache stopped before it synced")
		return nil
	}

	// Everything handled so far goes into the first snapshot.
	select {
	case <-c.dirty:
	default:
	}
	snap := c.rebuild(false)
	// The metric first, so that whoever sees the cache synced sees it too.
	c.metrics.synced.Set(1)
	c.synced.Store(true)
	close(c.syncedCh)
	c.log.Info("Policy cache synced", "policies", snap.Set.Len(), "invalid", len(snap.Errors),
		"myApples", c.apples.count(), "namespaces", len(c.namespaceInformer.GetStore().ListKeys()), "took", time.Since(begun))

	workers.Go(func() { c.buildLoop(ctx) })

	<-ctx.Done()
	c.metrics.synced.Set(0)
	return nil
}

// NeedLeaderElection tells controller-runtime's manager to run the cache on
// every replica: each one answers admissions from its own cache.
func (c *Cache) NeedLeaderElection() bool { return false }

// OnSnapshot has fn called with every snapshot swapped in, from the
// goroutine that builds them: fn must not block. Call it before Start.
func (c *Cache) OnSnapshot(fn func(*Snapshot)) { c.onSnapshot = append(c.onSnapshot, fn) }

// OnAdmissionPolicy has fn called with the name of an AdmissionPolicy whose
// metadata or status changed without a new generation, from an informer
// handler: fn must not block. Call it before Start.
func (c *Cache) OnAdmissionPolicy(fn func(name string)) {
	c.policyListeners = append(c.policyListeners, fn)
}

// AdmissionPolicy reads an AdmissionPolicy from the informer's store. The
// object is the cached one: read it, never write it.
func (c *Cache) AdmissionPolicy(name string) (*unstructured.Unstructured, bool) {
	return stored(c.policyInformer, name)
}

// AdmissionPolicyNames lists the AdmissionPolicies in the informer's store.
func (c *Cache) AdmissionPolicyNames() []string { return c.policyInformer.GetStore().ListKeys() }

// ConfigMap reads a policy ConfigMap from the informer's store.
func (c *Cache) ConfigMap(namespace, name string) (*unstructured.Unstructured, bool) {
	return stored(c.configMapInformer, namespace+"/"+name)
}

// LastGoodConfigMap reads the ConfigMap of persisted last good versions
// from the informer's store.
func (c *Cache) LastGoodConfigMap() (*unstructured.Unstructured, bool) {
	return stored(c.lastGoodInformer, c.cfg.PolicyNamespace+"/"+LastGoodConfigMap)
}

func stored(inf toolscache.SharedIndexInformer, key string) (*unstructured.Unstructured, bool) {
	obj, exists, err := inf.GetStore().GetByKey(key)
	if err != nil || !exists {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok
}

// HasSynced reports whether every informer has synced and the first
// snapshot is built; the empty snapshot before it decides wrongly.
func (c *Cache) HasSynced() bool { return c.synced.Load() }

// WaitForSync waits until HasSynced, and reports false if ctx ends first.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	select {
	case <-c.syncedCh:
		return true
	case <-ctx.Done():
		return false
	}
}

// Snapshot returns the current snapshot. Before the first sync it is an
// empty one (Version 0).
func (c *Cache) Snapshot() *Snapshot { return c.snapshot.Load() }

// Swapped is signalled after a new snapshot is swapped in; signals not yet
// received coalesce into one. It has one reader: the background audit.
func (c *Cache) Swapped() <-chan struct{} { return c.swapped }

// PolicySet is the current snapshot's policies and exceptions.
func (c *Cache) PolicySet() *policy.Set { return c.snapshot.Load().Set }

// Evaluate judges a request against the current snapshot, with the cache
// as the cluster state rules read. Callers check HasSynced first.
func (c *Cache) Evaluate(req *policy.Request) policy.Decision {
	return c.snapshot.Load().Set.Evaluate(req, c)
}

// EvaluateIn judges a request against the current snapshot with another
// view of the cluster (the cache's plus quota reservations).
func (c *Cache) EvaluateIn(req *policy.Request, cluster policy.Cluster) policy.Decision {
	return c.snapshot.Load().Set.Evaluate(req, cluster)
}

// MyAppleSeen is the resourceVersion and quantity at which the cache holds
// the MyApple with this UID ("" and 0 when it holds none), and whether it
// saw it deleted in the last DeletedRetention.
func (c *Cache) MyAppleSeen(namespace, uid string) (resourceVersion string, quantity int64, deleted bool) {
	s := c.apples.seen(namespace, uid)
	return s.ResourceVersion, s.Quantity, s.Deleted
}

// DeletedRetention is how long MyAppleSeen remembers a deletion.
func (c *Cache) DeletedRetention() time.Duration { return DeletedRetention }

// NamespaceLabels returns a namespace's labels from the cache. The map is
// the cached one: read it, never write it.
func (c *Cache) NamespaceLabels(name string) (map[string]string, bool) {
	m, ok := c.namespace(name)
	if !ok {
		return nil, false
	}
	return m.Labels, true
}

// NamespaceAnnotations returns a namespace's annotations from the cache
// (less kubectl's last-applied copy). The map is the cached one: read it,
// never write it.
func (c *Cache) NamespaceAnnotations(name string) map[string]string {
	if m, ok := c.namespace(name); ok {
		return m.Annotations
	}
	return nil
}

// namespace is the informer's copy of a namespace, else one EnsureNamespace
// read from the API server while the informer had yet to deliver it.
func (c *Cache) namespace(name string) (*metav1.PartialObjectMetadata, bool) {
	obj, ok, err := c.namespaceInformer.GetStore().GetByKey(name)
	if err != nil || !ok {
		return c.nsReads.lookup(name, time.Now())
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok
}

// NamespacePolicies names the policy ConfigMaps a namespace holds.
func (c *Cache) NamespacePolicies(namespace string) []string {
	objs, err := c.configMapInformer.GetIndexer().ByIndex(toolscache.NamespaceIndex, namespace)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		if _, name, ok := objectKey(o); ok {
			names = append(names, name)
		}
	}
	return names
}

// MyApples lists the MyApples of a namespace, sorted by name, from memory:
// CEL's cluster.myApples. The list is shared until the namespace's
// MyApples change.
func (c *Cache) MyApples(namespace string) cel.AppleList { return c.apples.list(namespace) }

// MyAppleTally counts the MyApples of a namespace (of one color or size)
// and sums their quantities, leaving out the one named except: CEL's
// cluster.myAppleStats, read from tallies the informer keeps.
func (c *Cache) MyAppleTally(namespace string, by cel.GroupBy, value, except string) cel.Tally {
	return c.apples.tally(namespace, by, value, except)
}

// MyAppleGroups lists the colors or sizes the MyApples of a namespace have.
func (c *Cache) MyAppleGroups(namespace string, by cel.GroupBy) []string {
	return c.apples.groups(namespace, by)
}

// LargestMyAppleNamespace is how many MyApples the namespace that has the
// most holds: the size a CEL expression applied now may meet.
func (c *Cache) LargestMyAppleNamespace() int { return c.apples.largest() }

// MyAppleQuantity is the total spec.quantity of the MyApples of a namespace,
// leaving out the one named except.
func (c *Cache) MyAppleQuantity(namespace, except string) int64 {
	return c.apples.sum(namespace, except)
}

func (c *Cache) buildLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
			c.rebuild(true)
		}
	}
}

// rebuild builds a snapshot from the compiled sources and swaps it in.
// Only one goroutine builds at a time: Start for the first snapshot, then
// the build loop.
func (c *Cache) rebuild(observe bool) *Snapshot {
	since := c.pendingSince.Swap(0)
	policies, errs, cands := c.sources.collect(c.lastGood.lookup)
	prev := c.snapshot.Load()
	var candidates []*policy.Policy
	for _, cs := range cands {
		if cs.Candidate != nil {
			candidates = append(candidates, cs.Candidate.Policy)
		}
	}
	s := &Snapshot{
		Set:        policy.NewSet(policies, policy.WithImageCache(c.images), policy.WithCandidates(candidates), policy.WithExceptions(policy.NewExceptionSet(c.exceptions.list()))),
		Errors:     errs,
		Candidates: cands,
		Version:    prev.Version + 1,
		Built:      time.Now(),
		bySource:   make(map[policy.Source]*policy.Policy, len(policies)),
	}
	byKind := map[string]int{policy.SourceConfigMap: 0, policy.SourceAdmissionPolicy: 0}
	for _, p := range policies {
		s.bySource[p.Source] = p
		byKind[p.Source.Kind]++
	}
	c.snapshot.Store(s)
	c.logFallbacks(prev, s)
	for _, fn := range c.onSnapshot {
		fn(s)
	}
	select {
	case c.swapped <- struct{}{}:
	default:
	}

	c.metrics.builds.Inc()
	for kind, n := range byKind {
		c.metrics.policies.WithLabelValues(kind).Set(float64(n))
	}
	if observe && since != 0 {
		c.metrics.propagation.Observe(s.Built.Sub(time.Unix(0, since)).Seconds())
	}
	c.log.V(1).Info("Policy snapshot swapped in", "version", s.Version, "policies", len(policies), "invalid", len(errs))
	return s
}
