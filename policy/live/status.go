package live

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
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

// fieldManager names the cache's status writes in managedFields.
const fieldManager = "policy-webhook"

// conditionMessageLimit is the API's limit on a condition message.
const conditionMessageLimit = 32768

// enqueueStatus asks the status writer to look at an AdmissionPolicy.
func (c *Cache) enqueueStatus(name string) {
	c.statusQueue.Add(name)
}

// statusLoop writes AdmissionPolicy status, one policy at a time, away
// from the informer handlers and far from the request path. It retries
// failures with backoff.
func (c *Cache) statusLoop(ctx context.Context) {
	for {
		name, shutdown := c.statusQueue.Get()
		if shutdown || ctx.Err() != nil {
			return
		}
		err := c.syncStatus(ctx, name)
		switch {
		case err == nil:
			c.statusQueue.Forget(name)
		case ctx.Err() != nil:
		default:
			c.metrics.statusUpdates.WithLabelValues(statusResultFailed).Inc()
			c.log.Error(err, "Writing AdmissionPolicy status, will retry", "name", name)
			c.statusQueue.AddRateLimited(name)
		}
		c.statusQueue.Done(name)
	}
}

// syncStatus makes an AdmissionPolicy's Ready condition and
// observedGeneration say whether its current generation is in force, and
// writes them through the status subresource if, and only if, they change.
func (c *Cache) syncStatus(ctx context.Context, name string) error {
	obj, exists, err := c.policyInformer.GetStore().GetByKey(name)
	if err != nil {
		return fmt.Errorf("reading AdmissionPolicy %s from the cache: %w", name, err)
	}
	if !exists {
		return nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	gen := u.GetGeneration()
	st, ok := c.sources.get(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
	if !ok || st.uid != u.GetUID() || st.version != strconv.FormatInt(gen, 10) {
		// The store is ahead of the handler, which enqueues the policy
		// again once it has compiled this generation.
		return nil
	}

	var status v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		// A status we cannot read is one we replace.
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &status)
	}
	conditions := slices.Clone(status.Conditions)
	changed := meta.SetStatusCondition(&conditions, readyCondition(&st, gen))
	if !changed && status.ObservedGeneration == gen {
		return nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&v1alpha1.AdmissionPolicyStatus{
		ObservedGeneration: gen,
		Conditions:         conditions,
	})
	if err != nil {
		return fmt.Errorf("encoding the status of AdmissionPolicy %s: %w", name, err)
	}
	next := u.DeepCopy()
	next.Object["status"] = content
	// The update carries the cached resourceVersion: if the object changed
	// meanwhile, it fails with a conflict and is retried from the newer one.
	_, err = c.cfg.Dynamic.Resource(v1alpha1.Resource).UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: fieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("updating the status of AdmissionPolicy %s: %w", name, err)
	}
	c.metrics.statusUpdates.WithLabelValues(statusResultUpdated).Inc()
	c.log.V(1).Info("AdmissionPolicy status updated", "name", name, "generation", gen, "inForce", st.err == nil)
	return nil
}

// readyCondition is the Ready condition for a policy whose generation gen
// is the newest the cache has seen.
func readyCondition(st *sourceState, gen int64) metav1.Condition {
	if st.err == nil {
		return metav1.Condition{
			Type:               ConditionReady,
			Status:             metav1.ConditionTrue,
			Reason:             ReasonInForce,
			Message:            fmt.Sprintf("generation %d is in force", gen),
			ObservedGeneration: gen,
		}
	}
	msg := fmt.Sprintf("generation %d is invalid: %s (%s)", gen, problems(st.err), stillInForce(policy.SourceAdmissionPolicy, inForceVersion(st)))
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
