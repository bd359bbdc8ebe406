package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Reasons of a PolicyException's conditions and of its Event.
const (
	ReasonBeforeExpiry     = "BeforeExpiry"
	ReasonExceptionExpired = "ExceptionExpired"
	ReasonInvalidException = "InvalidException"
)

// ExceptionStatus writes, on the leader only, each PolicyException's
// status: the Active and Expired conditions, status.active for `kubectl
// get`, and coveredObjects from the last audit sweep; and records an Event
// when one expires. Admission never waits on it: every replica stops
// applying an exception at its expiresAt by its own clock.
type ExceptionStatus struct {
	w    *writer
	wake chan struct{}
	// emitted are the expiries whose Event this leader has written.
	emitted map[types.UID]string // uid → generation
}

// NeedLeaderElection makes the manager run it on the elected replica only.
func (r *ExceptionStatus) NeedLeaderElection() bool { return true }

// Poke has the statuses compared again: the snapshot or the audit changed.
func (r *ExceptionStatus) Poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start syncs every exception when poked, at each expiry, and every
// resync interval, until ctx is done.
func (r *ExceptionStatus) Start(ctx context.Context) error {
	cfg := r.w.cfg
	if !cfg.Cache.WaitForSync(ctx) {
		return nil
	}
	r.w.log.Info("Starting the PolicyException status writer")
	resync := time.NewTicker(cfg.HeartbeatInterval)
	defer resync.Stop()
	expiry := time.NewTimer(0)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-resync.C:
		case <-expiry.C:
		}
		next := r.syncAll(ctx)
		expiry.Stop()
		if !next.IsZero() {
			expiry.Reset(max(next.Sub(cfg.Clock.Now()), 0))
		}
	}
}

// syncAll syncs every exception and returns the next expiry to come.
func (r *ExceptionStatus) syncAll(ctx context.Context) time.Time {
	cfg := r.w.cfg
	now := cfg.Clock.Now()
	var next time.Time
	for _, key := range cfg.Cache.PolicyExceptionKeys() {
		if ctx.Err() != nil {
			return next
		}
		ns, name, ok := splitKey(key)
		if !ok {
			continue
		}
		u, ok := cfg.Cache.PolicyException(ns, name)
		if !ok {
			continue
		}
		x, err := cache.CompileException(u, cfg.PolicyNamespace)
		if err == nil && x.ExpiresAt.After(now) && (next.IsZero() || x.ExpiresAt.Before(next)) {
			next = x.ExpiresAt
		}
		if err := r.sync(ctx, u, x, err, now); err != nil {
			r.w.metrics.statusUpdates.WithLabelValues(statusResultFailed).Inc()
			r.w.log.Error(err, "Writing the status of a PolicyException", "exception", key)
		}
	}
	return next
}

func splitKey(key string) (namespace, name string, ok bool) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}

// sync writes one exception's status if it differs from what it should be.
func (r *ExceptionStatus) sync(ctx context.Context, u *unstructured.Unstructured, x *policy.Exception, compileErr error, now time.Time) error {
	cfg := r.w.cfg
	var cur v1alpha1.PolicyExceptionStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &cur)
	}
	want := cur.DeepCopy()
	want.ObservedGeneration = u.GetGeneration()
	active, expired := metav1.Condition{Type: v1alpha1.ConditionActive}, metav1.Condition{Type: v1alpha1.ConditionExpired}
	switch {
	case compileErr != nil:
		active.Status, active.Reason, active.Message = metav1.ConditionFalse, ReasonInvalidException, policy.Truncate(cache.Problems(compileErr), eventMessageLimit)
		expired.Status, expired.Reason, expired.Message = metav1.ConditionFalse, ReasonInvalidException, "the exception is invalid and lifts nothing"
	case x.Active(now):
		until := x.ExpiresAt.UTC().Format(time.RFC3339)
		active.Status, active.Reason, active.Message = metav1.ConditionTrue, ReasonBeforeExpiry, "lifts the rules it names until "+until
		expired.Status, expired.Reason, expired.Message = metav1.ConditionFalse, ReasonBeforeExpiry, "expires at "+until
	default:
		at := x.ExpiresAt.UTC().Format(time.RFC3339)
		active.Status, active.Reason, active.Message = metav1.ConditionFalse, ReasonExceptionExpired, "expired at "+at+": it lifts nothing"
		expired.Status, expired.Reason, expired.Message = metav1.ConditionTrue, ReasonExceptionExpired, "expired at "+at
	}
	for _, c := range []metav1.Condition{active, expired} {
		c.ObservedGeneration = u.GetGeneration()
		c.LastTransitionTime = metav1.NewTime(now)
		meta.SetStatusCondition(&want.Conditions, c) // keeps the transition time of an unchanged status
	}
	want.Active = string(active.Status)
	if cfg.ExceptionCoverage != nil {
		if objects, at, ok := cfg.ExceptionCoverage(); ok {
			n := objects[u.GetNamespace()+"/"+u.GetName()]
			want.CoveredObjects = &n
			// The sweep's time is written with a new count only, so that
			// every sweep does not write every exception again.
			if cur.CoveredObjects == nil || *cur.CoveredObjects != n || want.LastAuditTime == nil {
				t := metav1.NewTime(at.Truncate(time.Second))
				want.LastAuditTime = &t
			}
		}
	}
	if compileErr == nil && !x.Active(now) {
		if err := r.recordExpired(ctx, u, x); err != nil {
			return err
		}
	}
	if apiequality.Semantic.DeepEqual(&cur, want) {
		return nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return fmt.Errorf("encoding the status of PolicyException %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       policy.SourcePolicyException,
		"metadata":   map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()},
		"status":     content,
	}}
	_, err = cfg.Dynamic.Resource(v1alpha1.ExceptionResource).Namespace(u.GetNamespace()).ApplyStatus(ctx, u.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("applying the status of PolicyException %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	r.w.metrics.statusUpdates.WithLabelValues(statusResultUpdated).Inc()
	r.w.log.V(1).Info("PolicyException status written", "exception", u.GetNamespace()+"/"+u.GetName(), "active", want.Active)
	return nil
}

// recordExpired records, once per exception generation, a Normal Event
// saying it expired. Its name derives from the UID and generation and it is
// only created, so an earlier or overlapping leader's makes this a no-op.
func (r *ExceptionStatus) recordExpired(ctx context.Context, u *unstructured.Unstructured, x *policy.Exception) error {
	cfg := r.w.cfg
	gen := fmt.Sprint(u.GetGeneration())
	if r.emitted[u.GetUID()] == gen {
		return nil
	}
	sum := sha256.Sum256([]byte(string(u.GetUID()) + "/" + gen))
	name := u.GetName()
	if len(name) > 200 {
		name = name[:200]
	}
	now := metav1.NewTime(cfg.Clock.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name + ".expired." + hex.EncodeToString(sum[:8]), Namespace: u.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: policy.SourcePolicyException,
			Namespace: u.GetNamespace(), Name: u.GetName(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		},
		Reason:         ReasonExceptionExpired,
		Message:        policy.Truncate(fmt.Sprintf("PolicyException %s expired at %s: the rules it named are enforced again (reason was: %s)", x.Ref(), x.ExpiresAt.UTC().Format(time.RFC3339), x.Reason), eventMessageLimit),
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: eventComponent, Host: cfg.Replica},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	_, err := cfg.Kube.CoreV1().Events(u.GetNamespace()).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("recording the expiry of PolicyException %s: %w", x.Ref(), err)
	}
	r.emitted[u.GetUID()] = gen
	return nil
}
