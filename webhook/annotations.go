package webhook

import (
	"fmt"
	"strings"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Audit annotation keys, logged by the API server as <webhook name>/<key> so
// an incident can be traced to the policy versions that decided it.
const (
	// annotationPolicies lists the sources that judged, each with its version:
	// `ConfigMap policy-system/baseline@4711` or `AdmissionPolicy production@3`.
	annotationPolicies   = "policies"
	annotationViolations = "violations" // rules violated, with enforcement and source
	// annotationCandidate says how each candidate judged beside its policy
	// would have decided: `AdmissionPolicy baseline@7 would deny:
	// pods.disallowedTags spec.containers[0].image`.
	annotationCandidate = "candidate"
	// annotationExceptions lists the PolicyExceptions that lifted a
	// violation, each with its generation and expiry:
	// `PolicyException team-a/legacy-root@1 until 2027-01-31`.
	annotationExceptions = "exceptions"
)

// maxCandidateAnnotation bounds the candidate annotation's value.
const maxCandidateAnnotation = 1024

// annotatedEntries bounds each annotation's list; the rest is counted.
const annotatedEntries = 20

// auditAnnotations says which policies decided a request and which of
// their rules it broke; nil when no policy applied.
func auditAnnotations(d *policy.Decision) map[string]string {
	if len(d.Applied) == 0 {
		if len(d.Candidates) == 0 {
			return nil
		}
		return map[string]string{annotationCandidate: candidateAnnotation(d.Candidates)}
	}
	var b strings.Builder
	for i, p := range d.Applied[:min(len(d.Applied), annotatedEntries)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.SourceName())
		if p.Version != "" {
			b.WriteByte('@')
			b.WriteString(p.Version)
		}
	}
	more(&b, len(d.Applied))
	out := map[string]string{annotationPolicies: b.String()}
	if len(d.Candidates) > 0 {
		out[annotationCandidate] = candidateAnnotation(d.Candidates)
	}
	if len(d.Violations) == 0 {
		return out
	}
	b.Reset()
	listed := 0
	for i := range d.Violations {
		v := &d.Violations[i]
		if repeated(d.Violations[:i], v) {
			continue // the same rule of the same source, at another field
		}
		if listed++; listed > annotatedEntries {
			continue
		}
		if listed > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s by %s", v.Enforcement, v.Rule, v.Source)
		if v.ExceptedBy != "" {
			fmt.Fprintf(&b, " excepted by %s", v.ExceptedBy)
		}
	}
	more(&b, listed)
	out[annotationViolations] = b.String()
	if len(d.Exceptions) > 0 {
		b.Reset()
		for i, x := range d.Exceptions[:min(len(d.Exceptions), annotatedEntries)] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s@%s until %s", x, x.Version, x.Expiry())
		}
		more(&b, len(d.Exceptions))
		out[annotationExceptions] = b.String()
	}
	return out
}

func repeated(before []policy.Violation, v *policy.Violation) bool {
	for i := range before {
		if before[i].Rule == v.Rule && before[i].Source == v.Source && before[i].ExceptedBy == v.ExceptedBy {
			return true
		}
	}
	return false
}

func more(b *strings.Builder, n int) {
	if n > annotatedEntries {
		fmt.Fprintf(b, " and %d more", n-annotatedEntries)
	}
}

// candidateAnnotation is each candidate's outcome, "; " between them:
// `<source>@<version> same`, or `... would deny: <rule> <field>`, bounded.
func candidateAnnotation(results []policy.CandidateResult) string {
	var b strings.Builder
	for i := range results {
		r := &results[i]
		var one strings.Builder
		if i > 0 {
			one.WriteString("; ")
		}
		one.WriteString(r.Candidate.SourceName())
		if r.Candidate.Version != "" {
			one.WriteByte('@')
			one.WriteString(r.Candidate.Version)
		}
		one.WriteByte(' ')
		one.WriteString(strings.ReplaceAll(r.Outcome, "_", " "))
		if v := r.Violation; v != nil {
			one.WriteString(": ")
			one.WriteString(v.Rule)
			if v.Field != "" {
				one.WriteByte(' ')
				one.WriteString(v.Field)
			}
		}
		if b.Len()+one.Len() > maxCandidateAnnotation {
			fmt.Fprintf(&b, " and %d more", len(results)-i)
			break
		}
		b.WriteString(one.String())
	}
	return b.String()
}
