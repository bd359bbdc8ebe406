package webhook

import (
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

func TestCandidateAnnotation(t *testing.T) {
	cand := func(name, version string) *policy.Policy {
		p := policy.StandIn(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}, "", version, policy.Coverage{}, "")
		return p
	}
	deny := &policy.Violation{Rule: "pods.disallowedTags", Field: "spec.containers[0].image", Message: "no latest"}
	many := make([]policy.CandidateResult, 200)
	for i := range many {
		many[i] = policy.CandidateResult{Candidate: cand(strings.Repeat("p", 50), "7"), Outcome: v1alpha1.OutcomeWouldDeny, Violation: deny}
	}
	tests := []struct {
		name    string
		results []policy.CandidateResult
		want    string
	}{
		{"would deny, as issue 20 shows it", []policy.CandidateResult{{Candidate: cand("baseline", "7"), Outcome: v1alpha1.OutcomeWouldDeny, Violation: deny}},
			"AdmissionPolicy baseline@7 would deny: pods.disallowedTags spec.containers[0].image"},
		{"same", []policy.CandidateResult{{Candidate: cand("baseline", "7"), Outcome: v1alpha1.OutcomeSame}}, "AdmissionPolicy baseline@7 same"},
		{"two candidates, one without a field", []policy.CandidateResult{
			{Candidate: cand("a", "1"), Outcome: v1alpha1.OutcomeWouldAllow, Violation: &policy.Violation{Rule: "validations.x"}},
			{Candidate: cand("b", ""), Outcome: v1alpha1.OutcomeWouldWarn, Violation: deny}},
			"AdmissionPolicy a@1 would allow: validations.x; AdmissionPolicy b would warn: pods.disallowedTags spec.containers[0].image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := candidateAnnotation(tt.results); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	// However many candidates, the annotation stays bounded.
	got := candidateAnnotation(many)
	if len(got) > maxCandidateAnnotation+32 || !strings.HasSuffix(got, " more") {
		t.Errorf("%d bytes ending %q, want at most about %d ending with the count of the rest", len(got), got[max(0, len(got)-20):], maxCandidateAnnotation)
	}
	d := policy.Decision{Candidates: tests[0].results}
	if a := auditAnnotations(&d); a[annotationCandidate] != tests[0].want || len(a) != 1 {
		t.Errorf("annotations of a decision only a candidate judged: %v", a)
	}
}
