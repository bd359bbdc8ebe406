package controllers

import (
	"fmt"
	"slices"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
)

// ReasonInvalidCandidate is the reason of the Warning Event on a policy
// whose candidate is invalid: the policy in force is untouched.
const ReasonInvalidCandidate = "InvalidCandidate"

// CandidateAudit is what an Audit that also judges candidates offers: the
// existing objects each AdmissionPolicy's candidate would deny.
type CandidateAudit interface {
	CandidateAuditStatus(name string) (*v1alpha1.AuditStatus, bool)
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
		out.Message = truncate("the newest candidate is invalid: "+cache.Problems(cs.Err)+" ("+candidateStillJudged(cs)+")", conditionMessageLimit)
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
