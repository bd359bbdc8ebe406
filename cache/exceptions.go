package cache

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// exceptionState is the compiled newest version of one PolicyException,
// or why it is invalid (then it lifts nothing).
type exceptionState struct {
	uid        types.UID
	generation string
	compiled   *policy.Exception // nil when invalid
	err        error
}

// exceptionTable holds the compiled PolicyExceptions. Only informer
// handlers write it and only the snapshot builder reads it.
type exceptionTable struct {
	mu sync.Mutex
	m  map[string]*exceptionState // namespace/name
}

func newExceptionTable() *exceptionTable {
	return &exceptionTable{m: map[string]*exceptionState{}}
}

// list returns the valid exceptions, active or not: whether one applies
// is decided per request, against the request's clock.
func (t *exceptionTable) list() []*policy.Exception {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*policy.Exception, 0, len(t.m))
	for _, st := range t.m {
		if st.compiled != nil {
			out = append(out, st.compiled)
		}
	}
	return out
}

// exceptionHandler feeds PolicyExceptions to the table, skipping resyncs
// and changes of metadata or status (the leader's own status writes),
// which leave the generation alone.
func (c *Cache) exceptionHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: c.onPolicyException,
		UpdateFunc: func(old, obj any) {
			if !sameResourceVersion(old, obj) {
				c.onPolicyException(obj)
			}
		},
		DeleteFunc: func(obj any) {
			ns, name, ok := objectKey(obj)
			if !ok {
				return
			}
			key := ns + "/" + name
			c.exceptions.mu.Lock()
			_, had := c.exceptions.m[key]
			delete(c.exceptions.m, key)
			c.exceptions.mu.Unlock()
			if had {
				c.metrics.policyErrors.DeleteLabelValues(policy.SourcePolicyException, ns, name)
				c.log.Info("PolicyException deleted, no longer in force", "exception", key)
				c.changed(time.Now())
			}
		},
	}
}

func (c *Cache) onPolicyException(obj any) {
	received := time.Now()
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	generation := strconv.FormatInt(u.GetGeneration(), 10)
	c.exceptions.mu.Lock()
	st := c.exceptions.m[key]
	same := st != nil && st.uid == u.GetUID() && st.generation == generation && generation != "0"
	c.exceptions.mu.Unlock()
	if same {
		return
	}
	x, err := CompileException(u, c.cfg.PolicyNamespace)
	c.exceptions.mu.Lock()
	c.exceptions.m[key] = &exceptionState{uid: u.GetUID(), generation: generation, compiled: x, err: err}
	c.exceptions.mu.Unlock()
	if err != nil {
		// An invalid exception lifts nothing: the policies hold in full.
		c.metrics.policyErrors.WithLabelValues(policy.SourcePolicyException, u.GetNamespace(), u.GetName()).Set(1)
		c.log.Error(err, "PolicyException is invalid and lifts nothing", "exception", key, "generation", generation)
	} else {
		c.metrics.policyErrors.DeleteLabelValues(policy.SourcePolicyException, u.GetNamespace(), u.GetName())
		c.log.V(1).Info("PolicyException in force", "exception", key, "generation", generation, "expiresAt", x.ExpiresAt)
	}
	c.changed(received)
}

// DecodeException reads a PolicyException as the API serves it.
func DecodeException(u *unstructured.Unstructured) (*v1alpha1.PolicyException, error) {
	var x v1alpha1.PolicyException
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &x); err != nil {
		return nil, err
	}
	return &x, nil
}

// CompileException decodes and compiles a stored PolicyException, whatever
// the clock: an expired one compiles, and is inactive.
func CompileException(u *unstructured.Unstructured, policyNamespace string) (*policy.Exception, error) {
	x, err := DecodeException(u)
	if err != nil {
		return nil, &policy.InvalidError{Source: exceptionSource(u), Errs: field.ErrorList{field.Invalid(field.NewPath("spec"), "", err.Error())}}
	}
	compiled, errs := policy.CompileException(u.GetNamespace(), u.GetName(), strconv.FormatInt(u.GetGeneration(), 10), &x.Spec, policyNamespace)
	if len(errs) > 0 {
		return nil, &policy.InvalidError{Source: exceptionSource(u), Errs: errs}
	}
	return compiled, nil
}

func exceptionSource(u *unstructured.Unstructured) policy.Source {
	return policy.Source{Kind: policy.SourcePolicyException, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// PolicyException reads a PolicyException from the informer's store. The
// object is the cached one: read it, never write it.
func (c *Cache) PolicyException(namespace, name string) (*unstructured.Unstructured, bool) {
	return stored(c.exceptionInformer, namespace+"/"+name)
}

// PolicyExceptionKeys lists the PolicyExceptions in the informer's store,
// as namespace/name, sorted.
func (c *Cache) PolicyExceptionKeys() []string {
	keys := c.exceptionInformer.GetStore().ListKeys()
	slices.Sort(keys)
	return keys
}

// exceptionsInForce counts the exceptions of the current snapshot active now.
func (c *Cache) exceptionsInForce() float64 {
	return float64(c.snapshot.Load().Set.Exceptions().ActiveAt(time.Now()))
}
