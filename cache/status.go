package cache

import (
	"context"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// The condition an AdmissionPolicy's status carries, and its reasons.
const (
	ConditionReady = "Ready"
	// ReasonInForce: the current generation is in force.
	ReasonInForce = "InForce"
	// ReasonInvalidPolicy, also the reason of the Warning Event on an
	// invalid ConfigMap or AdmissionPolicy: the current version is invalid;
	// the message says which version, if any, stays in force. The webhook
	// refuses such a policy at admission, so this only happens to one
	// written while the webhook was not registered.
	ReasonInvalidPolicy = "InvalidPolicy"
)

// fieldManager names the leader's status writes (observedGeneration, the
// Ready condition, inForce) in managedFields, whichever replica leads: a
// new leader takes the fields over from the last one without a conflict.
// Each replica writes its own status.replicas entry under
// ReplicaFieldManager instead.
const fieldManager = "policy-webhook"

// ReplicaFieldManager is the field manager under which a replica applies
// its own status.replicas entry. Server-side apply tracks each entry of the
// list (keyed by name) as owned by the manager that applied it, so replicas
// never overwrite each other's entries, and applying nothing under a
// manager removes what it owned: how the leader withdraws the entry of a
// replica that is gone.
func ReplicaFieldManager(replica string) string { return fieldManager + "/" + replica }

// conditionMessageLimit is the API's limit on a condition message.
const conditionMessageLimit = 32768

// replicaEffect is what this replica enforces of an AdmissionPolicy, and
// since when.
type replicaEffect struct {
	uid     types.UID
	gen     int64
	inForce bool
	since   time.Time
}

// replicaStatus writes this replica's own status.replicas entry on every
// AdmissionPolicy, on every replica, leader or not. Only its goroutine
// touches effects and written.
type replicaStatus struct {
	queue   workqueue.TypedRateLimitingInterface[string]
	effects map[string]replicaEffect
	written written
}

func newReplicaStatus() *replicaStatus {
	return &replicaStatus{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "replica-status"}),
		effects: map[string]replicaEffect{},
		written: written{},
	}
}

// written remembers, per AdmissionPolicy, what a writer last applied and
// the resourceVersion of the cached object it decided from. Until the
// informer delivers a newer version the cache still lacks that write, and
// a sync that would apply the same again (another event queued meanwhile)
// skips it: one write per change, not one per informer lag. A different
// content, or any newer version of the object, is written as usual.
type written map[string]writeMemo

type writeMemo struct {
	from    string // resourceVersion decided from
	content any    // a comparable summary of what was applied
}

func (w written) pending(u *unstructured.Unstructured, content any) bool {
	m, ok := w[u.GetName()]
	return ok && m.from == u.GetResourceVersion() && m.content == content
}

func (w written) record(u *unstructured.Unstructured, content any) {
	w[u.GetName()] = writeMemo{from: u.GetResourceVersion(), content: content}
}

// statusChanged asks both status writers to look at an AdmissionPolicy:
// this replica's entry, and, if this replica leads, what the leader writes.
func (c *Cache) statusChanged(name string) {
	c.replicaStatus.queue.Add(name)
	c.reporter.enqueue(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
}

// replicaStatusLoop writes this replica's entries one policy at a time, away
// from the informer handlers and far from the request path. It retries
// failures with backoff.
func (c *Cache) replicaStatusLoop(ctx context.Context) {
	q := c.replicaStatus.queue
	for {
		name, shutdown := q.Get()
		if shutdown || ctx.Err() != nil {
			return
		}
		err := c.syncReplicaStatus(ctx, name)
		switch {
		case err == nil:
			q.Forget(name)
		case ctx.Err() != nil:
		default:
			c.metrics.statusUpdates.WithLabelValues(statusResultFailed).Inc()
			c.log.Error(err, "Writing this replica's AdmissionPolicy status, will retry", "name", name)
			q.AddRateLimited(name)
		}
		q.Done(name)
	}
}

// policyState is what a snapshot enforces of an AdmissionPolicy whose
// newest generation is gen: ok is false when the snapshot has not caught up
// with gen yet (the next snapshot enqueues the policy again).
func policyState(s *Snapshot, name string, gen int64) (inForce bool, se SourceError, ok bool) {
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}
	version := strconv.FormatInt(gen, 10)
	if e, invalid := s.Errors[src]; invalid {
		return false, e, e.Version == version
	}
	p := s.policy(src)
	return true, SourceError{}, p != nil && p.Version == version
}

// syncReplicaStatus makes this replica's status.replicas entry say which
// generation of an AdmissionPolicy it enforces, once the snapshot that
// enforces it is swapped in, and applies it only if it differs from the
// entry on the object.
func (c *Cache) syncReplicaStatus(ctx context.Context, name string) error {
	effects := c.replicaStatus.effects
	u, ok := c.admissionPolicy(name)
	if !ok {
		delete(effects, name)
		delete(c.replicaStatus.written, name)
		return nil
	}
	gen := u.GetGeneration()
	snap := c.snapshot.Load()
	inForce, se, ok := policyState(snap, name, gen)
	if !ok {
		return nil
	}
	e, seen := effects[name]
	if !seen || e.uid != u.GetUID() || e.gen != gen || e.inForce != inForce {
		// The snapshot that enforces this was built at or before
		// snap.Built; builds follow changes within milliseconds.
		e = replicaEffect{uid: u.GetUID(), gen: gen, inForce: inForce, since: snap.Built}
		effects[name] = e
	}
	want := v1alpha1.ReplicaStatus{
		Name:               c.cfg.Replica,
		ObservedGeneration: gen,
		InForce:            inForce,
		LastTransitionTime: metav1.NewTime(e.since.Truncate(time.Second)),
	}
	if !inForce {
		want.Message = fmt.Sprintf("generation %d is invalid (%s)", gen, stillInForce(policy.SourceAdmissionPolicy, se, c.cfg.PolicyNamespace))
	}
	st := statusOf(u)
	for _, r := range st.Replicas {
		if r.Name == want.Name && r.ObservedGeneration == want.ObservedGeneration && r.InForce == want.InForce && r.Message == want.Message {
			return nil
		}
	}
	content := replicaContent{gen: gen, inForce: inForce, message: want.Message}
	if c.replicaStatus.written.pending(u, content) {
		return nil
	}
	if err := c.applyStatus(ctx, name, ReplicaFieldManager(c.cfg.Replica), &v1alpha1.AdmissionPolicyStatus{Replicas: []v1alpha1.ReplicaStatus{want}}); err != nil {
		return err
	}
	c.replicaStatus.written.record(u, content)
	c.log.V(1).Info("This replica's AdmissionPolicy status applied", "name", name, "generation", gen, "inForce", inForce)
	return nil
}

// replicaContent is what a replica entry says, for written.
type replicaContent struct {
	gen     int64
	inForce bool
	message string
}

// admissionPolicy reads an AdmissionPolicy from the informer's store.
func (c *Cache) admissionPolicy(name string) (*unstructured.Unstructured, bool) {
	obj, exists, err := c.policyInformer.GetStore().GetByKey(name)
	if err != nil || !exists {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok
}

// statusOf decodes an AdmissionPolicy's status; one that cannot be read is
// read as empty, and replaced.
func statusOf(u *unstructured.Unstructured) v1alpha1.AdmissionPolicyStatus {
	var st v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st)
	}
	return st
}

// applyStatus applies status (nil: nothing) to an AdmissionPolicy's status
// subresource with server-side apply under manager. Force takes over fields
// another manager holds: each manager here owns its fields by design.
func (c *Cache) applyStatus(ctx context.Context, name, manager string, status *v1alpha1.AdmissionPolicyStatus) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AdmissionPolicy",
		"metadata":   map[string]any{"name": name},
	}}
	if status != nil {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
		if err != nil {
			return fmt.Errorf("encoding the status of AdmissionPolicy %s: %w", name, err)
		}
		obj.Object["status"] = content
	}
	_, err := c.cfg.Dynamic.Resource(v1alpha1.Resource).ApplyStatus(ctx, name, obj, metav1.ApplyOptions{FieldManager: manager, Force: true})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("applying the status of AdmissionPolicy %s as %s: %w", name, manager, err)
	}
	c.metrics.statusUpdates.WithLabelValues(statusResultUpdated).Inc()
	return nil
}

// readyCondition is the Ready condition for a policy whose generation gen
// is the newest the cache has seen.
func readyCondition(inForce bool, se SourceError, gen int64, policyNamespace string) metav1.Condition {
	if inForce {
		return metav1.Condition{
			Type:               ConditionReady,
			Status:             metav1.ConditionTrue,
			Reason:             ReasonInForce,
			Message:            fmt.Sprintf("generation %d is in force", gen),
			ObservedGeneration: gen,
		}
	}
	msg := fmt.Sprintf("generation %d is invalid: %s (%s)", gen, problems(se.Err), stillInForce(policy.SourceAdmissionPolicy, se, policyNamespace))
	if len(msg) > conditionMessageLimit {
		msg = msg[:conditionMessageLimit-3] + "..."
	}
	return metav1.Condition{
		Type:               ConditionReady,
		Status:             metav1.ConditionFalse,
		Reason:             ReasonInvalidPolicy,
		Message:            msg,
		ObservedGeneration: gen,
	}
}
