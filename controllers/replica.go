package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// ReplicaStatus writes, on every replica, what is this replica's alone: its
// status.replicas entry on every AdmissionPolicy and its heartbeat Lease.
type ReplicaStatus struct {
	w     *writer
	queue workqueue.TypedRateLimitingInterface[string]
	// Only the worker goroutine touches these.
	effects map[string]replicaEffect
	written written
	// published is, per AdmissionPolicy, what this replica last decided to
	// report of its candidate: refreshed from the tally at most every
	// CandidateInterval, so that counts are written at most that often.
	published map[string]v1alpha1.ReplicaCandidate
}

// candidatesTick is the queue key that has the worker refresh published.
const candidatesTick = "<candidates>"

// replicaEffect is what this replica enforces of an AdmissionPolicy, and
// since when.
type replicaEffect struct {
	uid     types.UID
	gen     int64
	inForce bool
	since   time.Time
}

func newReplicaStatus(w *writer) *ReplicaStatus {
	return &ReplicaStatus{
		w: w,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "replica-status"}),
		effects:   map[string]replicaEffect{},
		written:   written{},
		published: map[string]v1alpha1.ReplicaCandidate{},
	}
}

func (r *ReplicaStatus) enqueue(name string) { r.queue.Add(name) }

// NeedLeaderElection makes controller-runtime's manager run it on every
// replica.
func (r *ReplicaStatus) NeedLeaderElection() bool { return false }

// Start renews the heartbeat Lease and, once the cache has synced, writes
// this replica's entries off the request path, retrying with backoff, until
// ctx is done.
func (r *ReplicaStatus) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.heartbeat(ctx) })
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	if !r.w.cfg.Cache.WaitForSync(ctx) {
		return nil
	}
	wg.Go(func() {
		wait.UntilWithContext(ctx, func(context.Context) { r.queue.Add(candidatesTick) }, r.w.cfg.CandidateInterval)
	})
	for {
		name, shutdown := r.queue.Get()
		if shutdown || ctx.Err() != nil {
			return nil
		}
		var err error
		if name == candidatesTick {
			r.refreshCandidates()
		} else {
			err = r.sync(ctx, name)
		}
		switch {
		case err == nil:
			r.queue.Forget(name)
		case ctx.Err() != nil:
		default:
			r.w.metrics.statusUpdates.WithLabelValues(statusResultFailed).Inc()
			r.w.log.Error(err, "Writing this replica's AdmissionPolicy status, will retry", "name", name)
			r.queue.AddRateLimited(name)
		}
		r.queue.Done(name)
	}
}

// sync applies this replica's status.replicas entry of an AdmissionPolicy
// if it differs from the one on the object.
func (r *ReplicaStatus) sync(ctx context.Context, name string) error {
	cfg := r.w.cfg
	u, ok := cfg.Cache.AdmissionPolicy(name)
	if !ok {
		delete(r.effects, name)
		delete(r.written, name)
		return nil
	}
	gen := u.GetGeneration()
	snap := cfg.Cache.Snapshot()
	inForce, se, ok := snap.AdmissionPolicyState(name, gen)
	if !ok {
		return nil
	}
	e, seen := r.effects[name]
	if !seen || e.uid != u.GetUID() || e.gen != gen || e.inForce != inForce {
		// The snapshot that enforces this was built by snap.Built.
		e = replicaEffect{uid: u.GetUID(), gen: gen, inForce: inForce, since: snap.Built}
		r.effects[name] = e
	}
	want := v1alpha1.ReplicaStatus{
		Name:               cfg.Replica,
		ObservedGeneration: gen,
		InForce:            inForce,
		LastTransitionTime: metav1.NewTime(e.since.Truncate(time.Second)),
	}
	if !inForce {
		want.Message = fmt.Sprintf("generation %d is invalid (%s)", gen, se.StillInForce(policy.SourceAdmissionPolicy, cfg.PolicyNamespace))
	}
	want.Candidate = r.candidate(name)
	for _, have := range statusOf(u).Replicas {
		if have.Name == want.Name && have.ObservedGeneration == want.ObservedGeneration && have.InForce == want.InForce && have.Message == want.Message &&
			equality.Semantic.DeepEqual(have.Candidate, want.Candidate) {
			return nil
		}
	}
	content := replicaContent{gen: gen, inForce: inForce, message: want.Message, candidate: candidateFingerprint(want.Candidate)}
	if r.written.pending(u, content) {
		return nil
	}
	if err := r.w.applyStatus(ctx, name, ReplicaFieldManager(cfg.Replica), &v1alpha1.AdmissionPolicyStatus{Replicas: []v1alpha1.ReplicaStatus{want}}); err != nil {
		return err
	}
	r.written.record(u, content)
	r.w.log.V(1).Info("This replica's AdmissionPolicy status applied", "name", name, "generation", gen, "inForce", inForce)
	return nil
}

// replicaContent is what a replica entry says, for written.
type replicaContent struct {
	gen       int64
	inForce   bool
	message   string
	candidate string
}

// candidate is what this replica's entry says of the candidate of an
// AdmissionPolicy: what was published, or, for a candidate new since,
// the tally now. nil without a candidate judged.
func (r *ReplicaStatus) candidate(name string) *v1alpha1.ReplicaCandidate {
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}
	cs, ok := r.w.cfg.Cache.Snapshot().Candidates[src]
	if !ok || cs.Candidate == nil {
		delete(r.published, name)
		return nil
	}
	pub, ok := r.published[name]
	if !ok || pub.Hash != cs.Candidate.Hash {
		if pub, ok = r.w.cfg.Cache.CandidateTally().Read(src); !ok {
			return nil
		}
		r.published[name] = pub
	}
	return &pub
}

// refreshCandidates publishes the tally of every candidate whose counts
// changed since last published, and has its entry written.
func (r *ReplicaStatus) refreshCandidates() {
	snap := r.w.cfg.Cache.Snapshot()
	for src := range snap.Candidates {
		if src.Kind != policy.SourceAdmissionPolicy {
			continue
		}
		now, ok := r.w.cfg.Cache.CandidateTally().Read(src)
		if !ok {
			continue
		}
		if pub, seen := r.published[src.Name]; seen && equality.Semantic.DeepEqual(pub, now) {
			continue
		}
		r.published[src.Name] = now
		r.queue.Add(src.Name)
	}
}

// candidateFingerprint summarises a replica's candidate report, for written.
func candidateFingerprint(c *v1alpha1.ReplicaCandidate) string {
	if c == nil {
		return ""
	}
	last := ""
	if len(c.Denials) > 0 {
		last = c.Denials[0].Time.UTC().String() + c.Denials[0].Name
	}
	return fmt.Sprintf("%s %v %d %s", c.Hash, c.CandidateCounts, len(c.Denials), last)
}
