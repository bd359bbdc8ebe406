package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// Unseen namespaces. A request may name a namespace the informer has not
// delivered yet: one created a moment before its first Pod, or while the
// informer's watch is being re-established after an API server restart.
// Judged without its labels, it would slip past every namespaceSelector.
// Like the in-tree NamespaceLifecycle admission plugin, the cache then
// waits briefly for the informer and reads the namespace once from the API
// server: the one API call an admission may make.
const (
	// UnseenNamespaceWait is how long EnsureNamespace waits for the
	// informer (while it has a watch open) before reading the namespace.
	UnseenNamespaceWait = 500 * time.Millisecond
	// UnseenNamespaceReadTimeout bounds the read, well within the
	// webhook's 5 s timeout.
	UnseenNamespaceReadTimeout = 2 * time.Second
	// readNamespaceTTL is how long a namespace read from the API server
	// stands in for the informer's copy; the informer's delivery replaces
	// it at once, and a replica whose informer is stale this long is
	// unready anyway (--max-cache-staleness).
	readNamespaceTTL = time.Minute
	// maxReadNamespaces bounds the namespaces read and kept: only real
	// namespaces are kept, and the informer's delivery removes them.
	maxReadNamespaces = 4096
)

// Outcomes of EnsureNamespace for a namespace the cache did not hold, the
// values of MetricUnseenNamespaces' outcome label.
const (
	unseenInformer = "informer"  // the informer delivered it within the wait
	unseenRead     = "read"      // read from the API server
	unseenNotFound = "not_found" // the API server has no such namespace: refused
	unseenError    = "error"     // the read failed: refused
)

// namespaceReads are the namespaces read from the API server, and the
// signal that the informer delivered a namespace.
type namespaceReads struct {
	mu      sync.Mutex
	arrived chan struct{} // closed and replaced on every namespace the informer delivers
	read    map[string]readNamespace
	group   singleflight.Group // one read per namespace at a time, however many admissions ask
}

type readNamespace struct {
	meta *metav1.PartialObjectMetadata
	at   time.Time
}

func newNamespaceReads() *namespaceReads {
	return &namespaceReads{arrived: make(chan struct{}), read: map[string]readNamespace{}}
}

// handler is the namespace informer's: each delivery wakes the waiters and
// retires a copy read from the API server.
func (r *namespaceReads) handler() toolscache.ResourceEventHandler {
	delivered := func(obj any) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.read, m.Name)
		close(r.arrived)
		r.arrived = make(chan struct{})
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    delivered,
		UpdateFunc: func(_, obj any) { delivered(obj) },
	}
}

func (r *namespaceReads) signal() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrived
}

func (r *namespaceReads) lookup(name string, now time.Time) (*metav1.PartialObjectMetadata, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.read[name]
	if !ok || now.Sub(e.at) >= readNamespaceTTL {
		return nil, false
	}
	return e.meta, true
}

func (r *namespaceReads) keep(m *metav1.PartialObjectMetadata, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.read) >= maxReadNamespaces {
		var oldest string
		for name, e := range r.read {
			if now.Sub(e.at) >= readNamespaceTTL {
				delete(r.read, name)
			} else if oldest == "" || e.at.Before(r.read[oldest].at) {
				oldest = name
			}
		}
		if len(r.read) >= maxReadNamespaces {
			delete(r.read, oldest)
		}
	}
	r.read[m.Name] = readNamespace{meta: m, at: now}
}

// UnknownNamespaceError is EnsureNamespace's refusal: the namespace could
// not be confirmed, so the request cannot be judged against its labels.
type UnknownNamespaceError struct {
	Namespace string
	NotFound  bool
	Err       error // the read's error, when it failed
}

func (e *UnknownNamespaceError) Error() string {
	if e.NotFound {
		return fmt.Sprintf("namespace %q does not exist", e.Namespace)
	}
	return fmt.Sprintf("namespace %q is not in the webhook's cache yet and reading it from the API server failed: %v", e.Namespace, e.Err)
}

func (e *UnknownNamespaceError) Unwrap() error { return e.Err }

// EnsureNamespace returns nil once the namespace's labels and annotations
// can be read from the cache (NamespaceLabels), which for a namespace the
// informer holds costs no API call. Otherwise it waits up to
// UnseenNamespaceWait for the informer, then reads the namespace from the
// API server, once however many admissions ask at the same time, and keeps
// it until the informer delivers it. An *UnknownNamespaceError says why it
// could not: the caller refuses the request rather than judge it without
// its namespace's labels.
func (c *Cache) EnsureNamespace(ctx context.Context, name string) error {
	if _, ok := c.namespace(name); ok {
		return nil
	}
	if c.namespaceHealth.staleness(time.Now()).For == 0 && c.waitNamespace(ctx, name, UnseenNamespaceWait) {
		c.metrics.unseenNamespaces.WithLabelValues(unseenInformer).Inc()
		return nil
	}
	_, err, _ := c.nsReads.group.Do(name, func() (any, error) {
		// Its own deadline: the first caller's going away must not fail
		// the others waiting on the same read.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), UnseenNamespaceReadTimeout)
		defer cancel()
		return nil, c.readNamespace(rctx, name)
	})
	return err
}

// waitNamespace waits for the informer to deliver the namespace, and
// reports whether it did within wait.
func (c *Cache) waitNamespace(ctx context.Context, name string, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		// The signal first: a delivery between the look and the wait still wakes it.
		arrived := c.nsReads.signal()
		if _, ok := c.namespace(name); ok {
			return true
		}
		select {
		case <-arrived:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// readNamespace reads the namespace's metadata from the API server and
// keeps it for NamespaceLabels.
func (c *Cache) readNamespace(ctx context.Context, name string) error {
	if _, ok := c.namespace(name); ok {
		return nil // delivered while this read waited its turn
	}
	obj, err := c.cfg.Metadata.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c.metrics.unseenNamespaces.WithLabelValues(unseenNotFound).Inc()
		return &UnknownNamespaceError{Namespace: name, NotFound: true}
	case err != nil:
		c.metrics.unseenNamespaces.WithLabelValues(unseenError).Inc()
		c.log.Error(err, "Reading a namespace the cache does not hold yet; its admissions are refused", "namespace", name)
		return &UnknownNamespaceError{Namespace: name, Err: err}
	}
	c.metrics.unseenNamespaces.WithLabelValues(unseenRead).Inc()
	m, _ := transformNamespace(obj)
	c.nsReads.keep(m.(*metav1.PartialObjectMetadata), time.Now())
	c.log.V(1).Info("Read a namespace the cache did not hold yet from the API server", "namespace", name)
	return nil
}
