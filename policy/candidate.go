package policy

import (
	"time"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// A candidate is the next version of a policy, judged beside the version in
// force on every request either matches, never changing the verdict: its
// outcome says how its verdict would differ.

// CandidateResult is how one policy's candidate would have decided a
// request, compared with the policy in force.
type CandidateResult struct {
	// Candidate is the candidate policy (its Source is the policy's).
	Candidate *Policy
	// Outcome is v1alpha1.OutcomeSame, OutcomeWouldDeny, OutcomeWouldAllow
	// or OutcomeWouldWarn.
	Outcome string
	// Violation is what the outcome rests on: the candidate's first Deny
	// violation (would_deny), the policy's first (would_allow), the first
	// warning that differs (would_warn); nil for same.
	Violation *Violation
}

// Admission names the object of one admission, for the record of what a
// candidate would have denied.
type Admission struct {
	Kind, Namespace, Name, Operation string
	Time                             time.Time
}

// WithCandidates has the set judge each of candidates beside the policy of
// the same source, recording the outcomes in Decision.Candidates. A
// candidate is compiled like any policy, with its carrier's source.
func WithCandidates(candidates []*Policy) SetOption {
	return func(s *Set) { s.candidates = append([]*Policy(nil), candidates...) }
}

// Candidates returns the candidates the set judges.
func (s *Set) Candidates() []*Policy { return s.candidates }

// Candidate returns the candidate of a source the set judges, or nil.
func (s *Set) Candidate(src Source) *Policy {
	for _, c := range s.candidates {
		if c.Source == src {
			return c
		}
	}
	return nil
}

// indexCandidates indexes the candidates by kind, and the policies in
// force whose source has one, by source.
func (s *Set) indexCandidates() {
	if len(s.candidates) == 0 {
		return
	}
	s.inForce = make(map[Source]*Policy, len(s.candidates))
	for _, c := range s.candidates {
		if c.pods {
			s.candPods.add(c)
		}
		if c.apples {
			s.candApples.add(c)
		}
		s.inForce[c.Source] = nil
	}
	for _, p := range s.all {
		if _, ok := s.inForce[p.Source]; ok {
			s.inForce[p.Source] = p
		}
	}
}

func (s *Set) candidatesFor(kind Kind) *index {
	switch kind {
	case KindPod:
		return &s.candPods
	case KindMyApple:
		return &s.candApples
	}
	return nil
}

// judgeCandidates judges every candidate that may apply to the request, and
// those of the policies in force that judged it, recording the outcomes.
func (e *evaluation) judgeCandidates(s *Set, d *Decision) {
	if len(s.candidates) == 0 {
		return
	}
	seen := 0
	if ix := s.candidatesFor(e.req.Kind); ix != nil {
		for _, c := range ix.cluster {
			e.candidate(s, s.inForce[c.Source], c, d)
			seen++
		}
		for _, c := range ix.byNamespace[e.req.Namespace] {
			e.candidate(s, s.inForce[c.Source], c, d)
			seen++
		}
	}
	if seen == len(s.candidates) {
		return
	}
	// A policy in force that judged the request while its candidate does
	// not judge this kind at all: the candidate would admit it.
	for _, p := range d.Applied {
		c := s.Candidate(p.Source)
		if c == nil || c.Judges(e.req.Kind) && (c.Scope == "" || c.Scope == e.req.Namespace) {
			continue
		}
		e.compare(p, c, &Decision{Allowed: true}, false, d)
	}
}

// candidate judges one candidate on its own (its own CEL budget: running
// out refuses nothing but is a would_deny), with the exceptions in force
// lifting what they would lift once it is promoted, and records the outcome.
func (e *evaluation) candidate(s *Set, spec, c *Policy, d *Decision) {
	ce := *e
	ce.budget, ce.exhaustedBy = nil, nil
	cd := Decision{Allowed: true}
	judged := ce.applies(c)
	if judged {
		ce.policy(c, &cd)
		judged = len(cd.Applied) > 0 || len(cd.Violations) > 0
	}
	if ce.budget != nil {
		ce.budget.Stop()
		ce.outOfBudget(&cd)
	}
	ce.exceptIn(s, &cd)
	e.compare(spec, c, &cd, judged, d)
}

// compare records how the candidate's decision cd differs from what the
// policy in force decided within d.
func (e *evaluation) compare(spec, c *Policy, cd *Decision, candJudged bool, d *Decision) {
	specJudged := false
	if spec != nil {
		for _, p := range d.Applied {
			if p == spec {
				specJudged = true
				break
			}
		}
	}
	var specDeny *Violation
	for i := range d.Violations {
		if v := &d.Violations[i]; v.Source == c.sourceName && v.Enforcement == v1alpha1.Deny && v.ExceptedBy == "" {
			specDeny, specJudged = v, true
			break
		}
	}
	if !specJudged && !candJudged {
		return
	}
	var candDeny *Violation
	for i := range cd.Violations {
		if v := &cd.Violations[i]; v.Enforcement == v1alpha1.Deny && v.ExceptedBy == "" {
			candDeny = v
			break
		}
	}
	r := CandidateResult{Candidate: c, Outcome: v1alpha1.OutcomeSame}
	switch {
	case candDeny != nil && specDeny == nil:
		r.Outcome, r.Violation = v1alpha1.OutcomeWouldDeny, candDeny
	case candDeny == nil && specDeny != nil:
		r.Outcome, r.Violation = v1alpha1.OutcomeWouldAllow, specDeny
	default:
		if v := differentWarning(d.Violations, c.sourceName, cd.Violations); v != nil {
			r.Outcome, r.Violation = v1alpha1.OutcomeWouldWarn, v
		}
	}
	if r.Violation != nil {
		v := *r.Violation
		r.Violation = &v
	}
	d.Candidates = append(d.Candidates, r)
}

// differentWarning is the first warning of one side that the other lacks:
// the policy's (of source) against the candidate's, or nil when they match.
func differentWarning(specVs []Violation, source string, candVs []Violation) *Violation {
	has := func(vs []Violation, src string, w *Violation) bool {
		for i := range vs {
			v := &vs[i]
			if v.Source == src && v.Enforcement == v1alpha1.Warn && v.Rule == w.Rule && v.Field == w.Field && v.Message == w.Message {
				return true
			}
		}
		return false
	}
	for i := range candVs {
		if w := &candVs[i]; w.Enforcement == v1alpha1.Warn && !has(specVs, source, w) {
			return w
		}
	}
	for i := range specVs {
		if w := &specVs[i]; w.Source == source && w.Enforcement == v1alpha1.Warn && !has(candVs, source, w) {
			return w
		}
	}
	return nil
}
