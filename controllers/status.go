package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// eventMessageLimit keeps Event messages within what the events API
// accepts; the full error is in the log and the status.
const eventMessageLimit = 1024

// eventComponent is the reporting component of the Events the leader writes.
const eventComponent = "policy-webhook"

// Status writes, on the elected replica only so that it is written once,
// the Warning Event on an invalid policy version, and an AdmissionPolicy's
// observedGeneration, Ready condition and inForce summary, pruning the
// status.replicas entries of replicas that are gone.
type Status struct {
	w *writer
	// queue is nil unless it runs: a new leader walks every source anyway.
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[policy.Source]]

	// Only the worker goroutine touches these.
	alive   map[string]bool
	emitted map[eventKey]bool
	written written
	// summarised is, per ConfigMap with a candidate, what its last
	// outcomes Event said.
	summarised map[policy.Source]summarised
}

// eventKey is one invalid version of one object.
type eventKey struct {
	uid       types.UID
	version   string
	candidate bool
}

// NeedLeaderElection makes controller-runtime's manager run it on the
// elected replica only.
func (r *Status) NeedLeaderElection() bool { return true }

// AuditSwept has every AdmissionPolicy looked at again, for the status.audit
// the sweep just published.
func (r *Status) AuditSwept() {
	for _, name := range r.w.cfg.Cache.AdmissionPolicyNames() {
		r.enqueue(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
	}
}

// enqueue asks it to look at a source, if it runs.
func (r *Status) enqueue(src policy.Source) {
	if q := r.queue.Load(); q != nil {
		(*q).Add(src)
	}
}

// Start walks every source once the cache has synced (whatever changed
// while another replica led), then follows changes and re-reads the
// heartbeat Leases every heartbeat interval, until ctx is done.
func (r *Status) Start(ctx context.Context) error {
	cfg := r.w.cfg
	if !cfg.Cache.WaitForSync(ctx) {
		return nil
	}
	r.w.log.Info("Elected: writing policy Events and AdmissionPolicy status", "replica", cfg.Replica)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[policy.Source](),
		workqueue.TypedRateLimitingQueueConfig[policy.Source]{Name: "leader-status"})
	r.alive, r.emitted, r.written = nil, map[eventKey]bool{}, written{}
	r.summarised = map[policy.Source]summarised{}
	r.queue.Store(&q)
	defer r.queue.Store(nil)

	done := make(chan struct{})
	go func() {
		defer close(done)
		r.work(ctx, q)
	}()

	events := make(chan struct{})
	go func() {
		defer close(events)
		wait.JitterUntilWithContext(ctx, func(context.Context) {
			q.Add(policy.Source{Kind: candidateEventsTick})
		}, cfg.CandidateEventInterval, 0, true)
	}()
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		// Through the queue, so that alive is only touched by the worker.
		q.Add(policy.Source{Kind: aliveRefresh})
	}, cfg.HeartbeatInterval, 0.1, true)
	q.ShutDown()
	<-done
	<-events
	r.w.log.Info("No longer writing policy Events and AdmissionPolicy status", "replica", cfg.Replica)
	return nil
}

// aliveRefresh is the Kind of the queue key that has the worker re-read
// the heartbeat Leases.
const aliveRefresh = "<alive>"

func (r *Status) work(ctx context.Context, q workqueue.TypedRateLimitingInterface[policy.Source]) {
	for {
		src, shutdown := q.Get()
		if shutdown || ctx.Err() != nil {
			return
		}
		var err error
		switch src.Kind {
		case aliveRefresh:
			err = r.refreshAlive(ctx, q)
		case candidateEventsTick:
			err = r.candidateEvents(ctx)
		case policy.SourceConfigMap:
			err = r.syncConfigMap(ctx, src)
		case policy.SourceAdmissionPolicy:
			err = r.syncAdmissionPolicy(ctx, q, src.Name)
		}
		switch {
		case err == nil:
			q.Forget(src)
		case ctx.Err() != nil:
		default:
			r.w.metrics.statusUpdates.WithLabelValues(statusResultFailed).Inc()
			r.w.log.Error(err, "Writing policy Events or status as leader, will retry", "source", src.String())
			q.AddRateLimited(src)
		}
		q.Done(src)
	}
}

// refreshAlive re-reads which replicas are alive. On the first read, and
// whenever the set changes, every source is looked at again: the summary
// counts the replicas alive, and entries of the gone are pruned.
func (r *Status) refreshAlive(ctx context.Context, q workqueue.TypedRateLimitingInterface[policy.Source]) error {
	alive, err := r.w.aliveReplicas(ctx, r.w.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if r.alive != nil && maps.Equal(alive, r.alive) {
		return nil
	}
	r.alive = alive
	for _, src := range r.sourcesToReport() {
		q.Add(src)
	}
	return nil
}

// sourcesToReport lists every AdmissionPolicy and invalid ConfigMap.
func (r *Status) sourcesToReport() []policy.Source {
	var out []policy.Source
	for _, name := range r.w.cfg.Cache.AdmissionPolicyNames() {
		out = append(out, policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
	}
	snap := r.w.cfg.Cache.Snapshot()
	for src := range snap.Errors {
		if src.Kind == policy.SourceConfigMap {
			out = append(out, src)
		}
	}
	for src, cs := range snap.Candidates {
		if _, dup := snap.Errors[src]; src.Kind == policy.SourceConfigMap && cs.Err != nil && !dup {
			out = append(out, src)
		}
	}
	return out
}

// syncConfigMap writes the Event of an invalid ConfigMap version.
func (r *Status) syncConfigMap(ctx context.Context, src policy.Source) error {
	snap := r.w.cfg.Cache.Snapshot()
	u, ok := r.w.cfg.Cache.ConfigMap(src.Namespace, src.Name)
	if !ok {
		return nil
	}
	if cs, has := snap.Candidates[src]; has && cs.Err != nil && candidateCurrent(snap, src, u.GetResourceVersion()) {
		if err := r.recordInvalidCandidate(ctx, src, u, cs); err != nil {
			return err
		}
	}
	se, invalid := snap.Errors[src]
	if !invalid || u.GetResourceVersion() != se.Version {
		// The snapshot lags the store: the next one enqueues it again.
		return nil
	}
	return r.recordInvalid(ctx, src, u, se)
}

// candidateCurrent says whether the snapshot has caught up with version of
// src, so that what it holds of the candidate is of that version.
func candidateCurrent(snap *cache.Snapshot, src policy.Source, version string) bool {
	if se, invalid := snap.Errors[src]; invalid {
		return se.Version == version
	}
	p := snap.Policy(src)
	return p != nil && p.Version == version
}

// syncAdmissionPolicy writes the Event of an invalid generation, prunes
// the entries of replicas that are gone, and sets observedGeneration, the
// Ready condition and the inForce summary, each only if it changes.
func (r *Status) syncAdmissionPolicy(ctx context.Context, q workqueue.TypedRateLimitingInterface[policy.Source], name string) error {
	cfg := r.w.cfg
	u, ok := cfg.Cache.AdmissionPolicy(name)
	if !ok {
		delete(r.written, name)
		return nil
	}
	gen := u.GetGeneration()
	inForce, se, ok := cfg.Cache.Snapshot().AdmissionPolicyState(name, gen)
	if !ok {
		return nil
	}
	if r.alive == nil {
		// Never prune before knowing who is alive.
		if err := r.refreshAlive(ctx, q); err != nil {
			return err
		}
	}
	st := statusOf(u)
	if !inForce {
		// The Event goes before the condition, so a condition that already
		// says this generation is invalid proves its Event was written, even
		// after the Event expired or leadership changed.
		if cur := meta.FindStatusCondition(st.Conditions, ConditionReady); cur == nil ||
			cur.Status != metav1.ConditionFalse || cur.ObservedGeneration != gen {
			if err := r.recordInvalid(ctx, policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}, u, se); err != nil {
				return err
			}
		}
	}

	// Prune, then count. An entry younger than a Lease's duration is kept
	// without a Lease: its replica may have started since the last read.
	now := cfg.Clock.Now()
	grace := heartbeatMisses * cfg.HeartbeatInterval
	members := maps.Clone(r.alive)
	inForceCount := 0
	for _, e := range st.Replicas {
		if !r.alive[e.Name] {
			if age := now.Sub(e.LastTransitionTime.Time); age < grace {
				q.AddAfter(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}, grace-age)
			} else {
				if err := r.w.applyStatus(ctx, name, ReplicaFieldManager(e.Name), nil); err != nil {
					return fmt.Errorf("removing the entry of gone replica %s: %w", e.Name, err)
				}
				r.w.log.Info("Removed the AdmissionPolicy status entry of a replica that is gone", "name", name, "replica", e.Name)
				continue
			}
		}
		members[e.Name] = true
		if e.ObservedGeneration == gen && e.InForce {
			inForceCount++
		}
	}
	summary := strconv.Itoa(inForceCount) + "/" + strconv.Itoa(len(members))

	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}
	cs, hasCandidate := cfg.Cache.Snapshot().Candidates[src]
	if hasCandidate && cs.Err != nil {
		if err := r.recordInvalidCandidate(ctx, src, u, cs); err != nil {
			return err
		}
	}
	var candidate *v1alpha1.CandidateStatus
	if hasCandidate {
		candidate = sumCandidate(cs, st.Replicas, r.candidateExisting(name), cfg.PolicyNamespace)
	}

	ready := readyCondition(inForce, se, gen, cfg.PolicyNamespace)
	conditions := slices.Clone(st.Conditions)
	changed := meta.SetStatusCondition(&conditions, ready)
	// status.audit is the last sweep's, or, before this leader's first
	// sweep, what an earlier leader wrote: applied without it, it would go.
	audit := st.Audit
	if cfg.Audit != nil {
		if a, ok := cfg.Audit.AuditStatus(name); ok {
			audit = a
		}
	}
	if !changed && st.ObservedGeneration == gen && st.InForce == summary && equality.Semantic.DeepEqual(st.Audit, audit) &&
		equality.Semantic.DeepEqual(st.Candidate, candidate) {
		return nil
	}
	content := leaderContent{gen: gen, status: ready.Status, message: ready.Message, summary: summary, audit: audit, candidate: candidateSummary(candidate)}
	if r.written.pending(u, content) {
		return nil
	}
	// Apply only the fields the leader owns; SetStatusCondition kept
	// Ready's lastTransitionTime if its status did not change.
	if err := r.w.applyStatus(ctx, name, FieldManager, &v1alpha1.AdmissionPolicyStatus{
		ObservedGeneration: gen,
		Conditions:         []metav1.Condition{*meta.FindStatusCondition(conditions, ConditionReady)},
		InForce:            summary,
		Audit:              audit,
		Candidate:          candidate,
	}); err != nil {
		return err
	}
	r.written.record(u, content)
	r.w.log.V(1).Info("AdmissionPolicy status applied", "name", name, "generation", gen, "inForce", inForce, "replicasInForce", summary)
	return nil
}

// leaderContent is what the leader's part of the status says, for written.
type leaderContent struct {
	audit     *v1alpha1.AuditStatus
	candidate string
	gen       int64
	status    metav1.ConditionStatus
	message   string
	summary   string
}

// recordInvalid writes the Warning Event on an invalid version of a
// source, where `kubectl describe` shows it to the policy's author.
//
// The Event's name is derived from the object's UID and the invalid
// version, and it is only created: AlreadyExists means an earlier or
// overlapping leader wrote it, so there is exactly one Event per invalid
// version with no watch of Events and no mark on the user's object.
func (r *Status) recordInvalid(ctx context.Context, src policy.Source, u *unstructured.Unstructured, se cache.SourceError) error {
	msg := fmt.Sprintf("Policy not in force: %s %s is invalid: %s (%s)", cache.VersionName(src.Kind), se.Version, cache.Problems(se.Err), se.StillInForce(src.Kind, r.w.cfg.PolicyNamespace))
	return r.recordWarning(ctx, src, u, eventKey{uid: u.GetUID(), version: se.Version}, ReasonInvalidPolicy, msg)
}

// recordInvalidCandidate writes the Warning Event on an invalid candidate,
// once per version of the object that carries it.
func (r *Status) recordInvalidCandidate(ctx context.Context, src policy.Source, u *unstructured.Unstructured, cs cache.CandidateState) error {
	version := u.GetResourceVersion()
	if src.Kind == policy.SourceAdmissionPolicy {
		version = strconv.FormatInt(u.GetGeneration(), 10)
	}
	msg := fmt.Sprintf("Candidate not judged: %s %s carries an invalid candidate: %s (%s; the policy in force is untouched)",
		cache.VersionName(src.Kind), version, cache.Problems(cs.Err), candidateStillJudged(cs))
	return r.recordWarning(ctx, src, u, eventKey{uid: u.GetUID(), version: version, candidate: true}, ReasonInvalidCandidate, msg)
}

// candidateStillJudged says which candidate is judged instead of an invalid one.
func candidateStillJudged(cs cache.CandidateState) string {
	if cs.Candidate == nil {
		return "no candidate is judged"
	}
	return "its last good candidate (" + cs.Candidate.Hash + ") is still judged"
}

// recordWarning writes a Warning Event on a policy source, once per key.
func (r *Status) recordWarning(ctx context.Context, src policy.Source, u *unstructured.Unstructured, key eventKey, reason, message string) error {
	return r.recordEvent(ctx, src, u, key, corev1.EventTypeWarning, reason, message)
}

// recordEvent writes an Event on a policy source, once per key.
func (r *Status) recordEvent(ctx context.Context, src policy.Source, u *unstructured.Unstructured, key eventKey, eventType, reason, message string) error {
	cfg := r.w.cfg
	se := cache.SourceError{Version: key.version}
	if r.emitted[key] {
		return nil
	}
	ref := corev1.ObjectReference{
		Namespace:       u.GetNamespace(),
		Name:            u.GetName(),
		UID:             u.GetUID(),
		ResourceVersion: u.GetResourceVersion(),
	}
	switch src.Kind {
	case policy.SourceConfigMap:
		ref.APIVersion, ref.Kind = "v1", "ConfigMap"
	case policy.SourceAdmissionPolicy:
		ref.APIVersion, ref.Kind = v1alpha1.GroupVersion.String(), "AdmissionPolicy"
	}
	msg := policy.Truncate(message, eventMessageLimit)
	// Events on a cluster-scoped object go to the default namespace, as
	// client-go's recorder puts them.
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := metav1.NewTime(cfg.Clock.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: invalidEventName(ref.Name, ref.UID, eventVersion(key)), Namespace: ns},
		InvolvedObject: ref,
		Reason:         reason,
		Message:        msg,
		Type:           eventType,
		Source:         corev1.EventSource{Component: eventComponent, Host: cfg.Replica},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	_, err := cfg.Kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		r.w.log.V(1).Info("Event already written by an earlier leader", "source", src.String(), "reason", reason, "version", se.Version)
	case err != nil:
		return fmt.Errorf("writing the Warning Event on %s version %s: %w", src, se.Version, err)
	default:
		r.w.log.V(1).Info("Event written", "source", src.String(), "reason", reason, "version", se.Version, "event", ev.Name)
	}
	r.emitted[key] = true
	return nil
}

// eventVersion is what, beside the UID, names an Event: the version, or
// for a candidate's, the version marked as the candidate's.
func eventVersion(k eventKey) string {
	if k.candidate {
		return "candidate/" + k.version
	}
	return k.version
}

// invalidEventName is the object's name, for people listing Events, then a
// hash of its UID and the version, so that a recreated object or a later
// invalid version gets an Event of its own.
func invalidEventName(name string, uid types.UID, version string) string {
	sum := sha256.Sum256([]byte(string(uid) + "/" + version))
	suffix := hex.EncodeToString(sum[:8])
	// A DNS subdomain: at most 253 characters, each dot-separated label
	// beginning and ending alphanumeric.
	const maxPrefix = 253 - 1 - 16
	if len(name) > maxPrefix {
		name = strings.TrimRight(name[:maxPrefix], "-.")
	}
	return name + "." + suffix
}

// conditionMessageLimit is the API's limit on a condition message.
const conditionMessageLimit = 32768

// readyCondition is the Ready condition for a policy whose generation gen
// is the newest the cache has seen.
func readyCondition(inForce bool, se cache.SourceError, gen int64, policyNamespace string) metav1.Condition {
	c := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonInForce,
		Message: fmt.Sprintf("generation %d is in force", gen), ObservedGeneration: gen}
	if !inForce {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalidPolicy
		c.Message = policy.Truncate(fmt.Sprintf("generation %d is invalid: %s (%s)", gen, cache.Problems(se.Err), se.StillInForce(policy.SourceAdmissionPolicy, policyNamespace)), conditionMessageLimit)
	}
	return c
}
