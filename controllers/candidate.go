package controllers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// ReasonInvalidCandidate is the reason of the Warning Event on a policy
// whose candidate is invalid: the policy in force is untouched.
const ReasonInvalidCandidate = "InvalidCandidate"

// ReasonCandidateOutcomes is the reason of the Normal Event that
// summarises a ConfigMap candidate's outcomes: ConfigMaps have no status.
const ReasonCandidateOutcomes = "CandidateOutcomes"

// candidateEventsTick is the queue key that has the worker summarise the
// outcomes of ConfigMap candidates in Events.
const candidateEventsTick = "<candidate-events>"

// candidateEvents writes, for each policy ConfigMap whose candidate's
// outcomes changed since its last Event, an Event summarising them, as
// this replica (the leader) saw them (the metric has every replica's), with
// the existing objects the last audit sweep found it would deny.
// It runs every CandidateEventInterval, so a ConfigMap gets at most one
// such Event per interval, and none while nothing changes.
func (r *Status) candidateEvents(ctx context.Context) error {
	cfg := r.w.cfg
	snap := cfg.Cache.Snapshot()
	for src := range r.summarised {
		if cs, ok := snap.Candidates[src]; !ok || cs.Candidate == nil {
			delete(r.summarised, src)
		}
	}
	for src, cs := range snap.Candidates {
		if src.Kind != policy.SourceConfigMap || cs.Candidate == nil {
			continue
		}
		now, ok := cfg.Cache.CandidateTally().Read(src)
		if !ok {
			continue
		}
		existing := int64(-1)
		if ca, ok := cfg.Audit.(CandidateAudit); ok {
			if a, ok := ca.CandidateExisting(src); ok {
				existing = a.TotalViolations
			}
		}
		if now.Judged == 0 && existing <= 0 {
			continue // nothing to say yet
		}
		if last, seen := r.summarised[src]; seen && last.hash == now.Hash && last.counts == now.CandidateCounts && last.existing == existing {
			continue
		}
		u, ok := cfg.Cache.ConfigMap(src.Namespace, src.Name)
		if !ok {
			continue
		}
		msg := fmt.Sprintf("Candidate %s (resourceVersion %s), judged by replica %s since %s: %d admissions, %d same, %d would deny, %d would allow, %d would warn",
			now.Hash, cs.Candidate.Policy.Version, cfg.Replica, now.Since.UTC().Format(time.RFC3339), now.Judged, now.Same, now.WouldDeny, now.WouldAllow, now.WouldWarn)
		if len(now.Denials) > 0 {
			d := now.Denials[0]
			msg += fmt.Sprintf("; last it would deny: %s %s/%s (%s): %s", d.Kind, d.Namespace, d.Name, d.Operation, d.Violation)
		}
		if existing >= 0 {
			msg += fmt.Sprintf("; the last audit found %d existing objects it would deny that the policy admits", existing)
		}
		key := eventKey{uid: u.GetUID(), version: fmt.Sprintf("outcomes/%s/%d", now.Hash, cfg.Clock.Now().UnixNano())}
		if err := r.recordEvent(ctx, src, u, key, corev1.EventTypeNormal, ReasonCandidateOutcomes, msg); err != nil {
			return err
		}
		r.summarised[src] = summarised{hash: now.Hash, counts: now.CandidateCounts, existing: existing}
	}
	return nil
}

// summarised is what a ConfigMap's last outcomes Event said.
type summarised struct {
	hash     string
	counts   v1alpha1.CandidateCounts
	existing int64 // -1: no sweep known
}

// CandidateAudit is what an Audit that also judges candidates offers: the
// existing objects each policy's candidate would deny.
type CandidateAudit interface {
	CandidateAuditStatus(name string) (*v1alpha1.AuditStatus, bool)
	CandidateExisting(src policy.Source) (*v1alpha1.AuditStatus, bool)
}

// candidateExisting is what the last sweep found the candidate of an
// AdmissionPolicy would deny, nil before any sweep.
func (r *Status) candidateExisting(name string) *v1alpha1.AuditStatus {
	if ca, ok := r.w.cfg.Audit.(CandidateAudit); ok {
		if a, ok := ca.CandidateAuditStatus(name); ok {
			return a
		}
	}
	return nil
}

// sumCandidate is status.candidate: the counts of the replicas' entries
// that judged the current candidate (by hash) summed, their recent denials
// merged newest first, and what the audit found among existing objects.
func sumCandidate(cs cache.CandidateState, replicas []v1alpha1.ReplicaStatus, existing *v1alpha1.AuditStatus, policyNamespace string) *v1alpha1.CandidateStatus {
	out := &v1alpha1.CandidateStatus{Valid: cs.Err == nil, Existing: existing}
	if cs.Err != nil {
		out.Message = policy.Truncate("the newest candidate is invalid: "+cache.Problems(cs.Err)+" ("+candidateStillJudged(cs)+")", conditionMessageLimit)
	}
	if cs.Candidate == nil {
		out.Summary = "invalid"
		return out
	}
	out.Hash = cs.Candidate.Hash
	out.Generation, _ = strconv.ParseInt(cs.Candidate.Policy.Version, 10, 64)
	var denials []v1alpha1.CandidateDenial
	for i := range replicas {
		c := replicas[i].Candidate
		if c == nil || c.Hash != out.Hash {
			continue
		}
		if out.Since == nil || c.Since.Before(out.Since) {
			since := c.Since
			out.Since = &since
		}
		out.Judged += c.Judged
		out.Same += c.Same
		out.WouldDeny += c.WouldDeny
		out.WouldAllow += c.WouldAllow
		out.WouldWarn += c.WouldWarn
		denials = append(denials, c.Denials...)
	}
	slices.SortStableFunc(denials, func(a, b v1alpha1.CandidateDenial) int {
		return b.Time.Compare(a.Time.Time)
	})
	if len(denials) > 0 {
		out.RecentDenials = denials[:min(len(denials), v1alpha1.MaxCandidateDenials)]
	}
	out.Summary = fmt.Sprintf("+%d deny / -%d", out.WouldDeny, out.WouldAllow)
	return out
}

// candidateSummary summarises status.candidate, for written.
func candidateSummary(c *v1alpha1.CandidateStatus) string {
	if c == nil {
		return ""
	}
	last, existing := metav1.Time{}, int64(-1)
	if len(c.RecentDenials) > 0 {
		last = c.RecentDenials[0].Time
	}
	if c.Existing != nil {
		existing = c.Existing.TotalViolations
	}
	return fmt.Sprintf("%s %t %q %v %s %d %d %s", c.Hash, c.Valid, c.Message, c.CandidateCounts, last.UTC(), len(c.RecentDenials), existing, c.Summary)
}
