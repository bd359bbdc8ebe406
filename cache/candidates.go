package cache

import (
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// MaxCandidateViolationBytes bounds the violation a recent denial quotes.
const MaxCandidateViolationBytes = 1024

// CandidateTally counts, on this replica, how the candidates fared on the
// admissions it answered: the request path records, the replica's status
// writer reads. It holds one entry per source with a candidate, each with
// at most v1alpha1.MaxCandidateDenials recent denials.
type CandidateTally struct {
	snapshot func() *Snapshot

	mu sync.Mutex
	m  map[policy.Source]*candidateEntry
}

type candidateEntry struct {
	hash    string
	since   time.Time
	counts  v1alpha1.CandidateCounts
	denials []v1alpha1.CandidateDenial // oldest first
}

// NewCandidateTally is a tally whose candidates are those of the snapshot
// that snapshot returns: the cache keeps one for its own snapshots.
func NewCandidateTally(snapshot func() *Snapshot) *CandidateTally {
	return &CandidateTally{snapshot: snapshot, m: map[policy.Source]*candidateEntry{}}
}

// CandidateTally is this replica's tally of candidate outcomes.
func (c *Cache) CandidateTally() *CandidateTally { return c.candidates }

// RecordCandidates has the tally count the candidate outcomes of one
// admission (webhook.CandidateRecorder).
func (c *Cache) RecordCandidates(a policy.Admission, results []policy.CandidateResult) {
	c.candidates.Record(a, results)
}

// Record counts the candidate outcomes of one admission. It never blocks
// for long and makes no API call.
func (t *CandidateTally) Record(a policy.Admission, results []policy.CandidateResult) {
	if len(results) == 0 {
		return
	}
	snap := t.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range results {
		r := &results[i]
		src := r.Candidate.Source
		cs, ok := snap.Candidates[src]
		if !ok || cs.Candidate == nil || cs.Candidate.Policy != r.Candidate {
			// Judged by a snapshot since replaced: the candidate it judged
			// may be gone, so its outcome is not counted against another.
			continue
		}
		e := t.m[src]
		if e == nil || e.hash != cs.Candidate.Hash {
			e = &candidateEntry{hash: cs.Candidate.Hash, since: a.Time.Truncate(time.Second)}
			t.m[src] = e
		}
		e.counts.Judged++
		switch r.Outcome {
		case v1alpha1.OutcomeSame:
			e.counts.Same++
		case v1alpha1.OutcomeWouldDeny:
			e.counts.WouldDeny++
			d := v1alpha1.CandidateDenial{Kind: a.Kind, Namespace: a.Namespace, Name: a.Name, Operation: a.Operation,
				Time: metav1.NewTime(a.Time.Truncate(time.Second))}
			if r.Violation != nil {
				d.Violation = policy.Truncate(r.Violation.Rule+" "+r.Violation.Field+": "+r.Violation.Message, MaxCandidateViolationBytes)
			}
			if len(e.denials) == v1alpha1.MaxCandidateDenials {
				e.denials = slices.Delete(e.denials, 0, 1)
			}
			e.denials = append(e.denials, d)
		case v1alpha1.OutcomeWouldAllow:
			e.counts.WouldAllow++
		case v1alpha1.OutcomeWouldWarn:
			e.counts.WouldWarn++
		}
	}
}

// Read is what this replica saw of src's current candidate, newest
// denials first; ok is false when src has no candidate judged. A candidate
// not judged yet reads as zero counts since built.
func (t *CandidateTally) Read(src policy.Source) (v1alpha1.ReplicaCandidate, bool) {
	snap := t.snapshot()
	cs, ok := snap.Candidates[src]
	if !ok || cs.Candidate == nil {
		t.mu.Lock()
		delete(t.m, src)
		t.mu.Unlock()
		return v1alpha1.ReplicaCandidate{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[src]
	if e == nil || e.hash != cs.Candidate.Hash {
		e = &candidateEntry{hash: cs.Candidate.Hash, since: snap.Built.Truncate(time.Second)}
		t.m[src] = e
	}
	out := v1alpha1.ReplicaCandidate{Hash: e.hash, Since: metav1.NewTime(e.since), CandidateCounts: e.counts}
	for i := len(e.denials) - 1; i >= 0; i-- {
		out.Denials = append(out.Denials, e.denials[i])
	}
	return out, true
}
