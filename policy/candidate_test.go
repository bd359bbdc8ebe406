package policy

import (
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

func TestCandidateOutcomes(t *testing.T) {
	const registries = "pods:\n  allowedRegistries: [registry.example.com/]\n"
	const registriesNoLatest = "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n"
	const warnLatest = "enforcement: Warn\npods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n"
	const apples = "myApples:\n  allowedColors: [red]\n"
	latest := compliantPod()
	latest.Spec.Containers[0].Image = "registry.example.com/team-a/web:latest"
	foreign := compliantPod()
	foreign.Spec.Containers[0].Image = "docker.io/library/nginx:1.27"
	tests := []struct {
		name            string
		spec, candidate string
		req             *Request
		want            string // "" when the candidate is not judged
		wantRule        string
	}{
		{"same: both admit", registries, registriesNoLatest, podRequest(compliantPod()), v1alpha1.OutcomeSame, ""},
		{"would deny: the candidate forbids latest", registries, registriesNoLatest, podRequest(latest), v1alpha1.OutcomeWouldDeny, "pods.disallowedTags"},
		{"same: both deny", registries, registriesNoLatest, podRequest(foreign), v1alpha1.OutcomeSame, ""},
		{"would allow: the candidate drops the rule", registriesNoLatest, "pods:\n  requiredLabels: [app]\n", podRequest(latest), v1alpha1.OutcomeWouldAllow, "pods.disallowedTags"},
		{"would warn: the candidate warns instead of admitting silently", registries, warnLatest, podRequest(latest), v1alpha1.OutcomeWouldWarn, "pods.disallowedTags"},
		{"would allow: Warn instead of Deny", registriesNoLatest, warnLatest, podRequest(latest), v1alpha1.OutcomeWouldAllow, "pods.disallowedTags"},
		{"would allow: the candidate no longer judges Pods", registriesNoLatest, apples, podRequest(latest), v1alpha1.OutcomeWouldAllow, "pods.disallowedTags"},
		{"would deny: only the candidate judges Pods", apples, registriesNoLatest, podRequest(latest), v1alpha1.OutcomeWouldDeny, "pods.disallowedTags"},
		{"not judged: neither matches", apples, apples, podRequest(latest), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := admissionPolicy(t, "baseline", tt.spec)
			cand := admissionPolicy(t, "baseline", tt.candidate)
			cand.Version = "7"
			withCand := NewSet([]*Policy{spec}, WithCandidates([]*Policy{cand}))
			alone := NewSet([]*Policy{spec})
			d := withCand.Evaluate(tt.req, testCluster())
			ref := alone.Evaluate(tt.req, testCluster())
			// Never a change of verdict, violations or warnings.
			if d.Allowed != ref.Allowed || len(d.Violations) != len(ref.Violations) || len(d.Applied) != len(ref.Applied) {
				t.Fatalf("the candidate changed the decision: %+v, alone %+v", d, ref)
			}
			if tt.want == "" {
				if len(d.Candidates) != 0 {
					t.Fatalf("candidates %+v, want none judged", d.Candidates)
				}
				return
			}
			if len(d.Candidates) != 1 {
				t.Fatalf("candidates %+v, want one", d.Candidates)
			}
			r := d.Candidates[0]
			if r.Outcome != tt.want || r.Candidate != cand {
				t.Errorf("outcome %q of %v, want %q", r.Outcome, r.Candidate, tt.want)
			}
			switch {
			case tt.wantRule == "" && r.Violation != nil:
				t.Errorf("violation %v, want none", r.Violation)
			case tt.wantRule != "" && (r.Violation == nil || r.Violation.Rule != tt.wantRule):
				t.Errorf("violation %v, want rule %s", r.Violation, tt.wantRule)
			}
		})
	}
}

// A ConfigMap's candidate judges its own namespace only, as its policy does.
func TestCandidateScopes(t *testing.T) {
	spec := configMapPolicy(t, "team-a", "tags", "pods:\n  requiredLabels: [app]\n")
	cand := configMapPolicy(t, "team-a", "tags", latestPolicy)
	set := NewSet([]*Policy{spec}, WithCandidates([]*Policy{cand}))
	for _, tt := range []struct {
		namespace string
		want      int
	}{{"team-a", 1}, {"team-b", 0}} {
		d := set.Evaluate(podRequest(latestPod(tt.namespace)), testCluster())
		if len(d.Candidates) != tt.want || !d.Allowed {
			t.Errorf("%s: candidates %+v allowed %t, want %d judged and allowed", tt.namespace, d.Candidates, d.Allowed, tt.want)
		}
	}
}

// An exception in force lifts what it covers from the candidate's judgement
// too, as it will once the candidate is promoted: a rule it lifts is no
// would_deny while it lasts, and is one again once it expires.
func TestCandidateWithExceptions(t *testing.T) {
	spec := admissionPolicy(t, "baseline", "pods:\n  allowedRegistries: [registry.example.com/]\n")
	cand := admissionPolicy(t, "baseline", "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n")
	x := compileException(t, "team-a", "latest-ok", `reason: the nightly job pins latest until it moves (TICKET-9)
expiresAt: "2027-01-31T00:00:00Z"
exceptions:
- policy: {kind: AdmissionPolicy, name: baseline}
  rules: [pods.disallowedTags]
`)
	set := NewSet([]*Policy{spec}, WithCandidates([]*Policy{cand}), WithExceptions(NewExceptionSet([]*Exception{x})))
	latest := compliantPod()
	latest.Spec.Containers[0].Image = "registry.example.com/team-a/web:latest"
	for _, tt := range []struct {
		name string
		now  time.Time
		want string
	}{
		{"while the exception lasts", exceptionNow, v1alpha1.OutcomeSame},
		{"once it has expired", x.ExpiresAt, v1alpha1.OutcomeWouldDeny},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := podRequest(latest)
			req.Now = tt.now
			d := set.Evaluate(req, testCluster())
			if !d.Allowed || len(d.Candidates) != 1 || d.Candidates[0].Outcome != tt.want {
				t.Fatalf("allowed %v, candidates %+v, want allowed and %s", d.Allowed, d.Candidates, tt.want)
			}
		})
	}
}
