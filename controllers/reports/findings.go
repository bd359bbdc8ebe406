package reports

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Bounds of what a sweep writes, however many objects break a rule.
const (
	// DefaultMaxResults is how many results a namespace's report lists by
	// default: those past it are counted in the summary, not listed.
	DefaultMaxResults = 1000
	// MaxReportBytes bounds a report object as the API server stores it,
	// well under etcd's 1.5 MiB request limit: results are dropped from the
	// end of the list until the encoding fits, whatever the input.
	MaxReportBytes = 1 << 20
	// reportHeadroom is left under MaxReportBytes for what the API server
	// adds to what the audit sends (uid, resourceVersion, creation time,
	// managedFields: under 1 KiB, the results list being atomic).
	reportHeadroom = 16 << 10
	// MaxMessageBytes bounds a result's message and each of its
	// properties, so that no one result takes much of a report.
	MaxMessageBytes = 1024
	// MaxStatusViolations is how many violations an AdmissionPolicy's
	// status.audit lists; totalViolations counts them all.
	MaxStatusViolations = 20
)

// ReportSource is the source a report and its results name: the engine.
const ReportSource = "policy-webhook"

// Category of every result the audit writes.
const Category = "Admission policy"

// Properties of a report result that carry what the schema has no field for.
const (
	PropertyField       = "field"
	PropertyEnforcement = "enforcement"
	// PropertyException names the PolicyException (namespace/name) that
	// lifts a skip result's violation, PropertyExpiresAt until when.
	PropertyException = "exception"
	PropertyExpiresAt = "exceptionExpiresAt"
)

// metricKey is one series of the violations gauge.
type metricKey struct {
	source, rule string
	enforcement  v1alpha1.Enforcement
}

// resultKey identifies one violation across sweeps, so that its report
// result keeps the timestamp of the sweep that first found it, and an
// unchanged report is not written again.
type resultKey struct {
	uid                 types.UID
	source, rule, field string
}

// namespaceFindings are the results of one namespace, as its report holds
// them: violations first, then passes (when listed), so that passes never
// crowd a violation out of the report.
type namespaceFindings struct {
	summary report.PolicyReportSummary
	results []report.PolicyReportResult
	passes  []report.PolicyReportResult
}

// listed are the results a report lists, at most max of them.
func (nf *namespaceFindings) listed(maxResults int) []report.PolicyReportResult {
	out := nf.results[:min(len(nf.results), maxResults)]
	if room := maxResults - len(out); room > 0 && len(nf.passes) > 0 {
		out = append(out[:len(out):len(out)], nf.passes[:min(len(nf.passes), room)]...)
	}
	return out
}

// policyFindings are one policy source's violations, as its status holds them.
type policyFindings struct {
	total      int64
	violations []v1alpha1.AuditViolation
}

// findings are what one sweep found.
type findings struct {
	// maxResults is how many results of a namespace are kept to list;
	// passes whether objects' passes are listed too.
	maxResults int
	passes     bool
	namespaces map[string]*namespaceFindings
	policies   map[string]*policyFindings // by policy.Source.String()
	// candidates are the existing objects each candidate would deny that
	// its policy admits, by policy.Source.String().
	candidates map[string]*policyFindings
	counts     map[metricKey]int
	// excepted counts the objects each exception (namespace/name) covered.
	excepted  map[string]int64
	firstSeen map[resultKey]metav1.Timestamp
	now       metav1.Timestamp
}

func newFindings(now metav1.Timestamp, maxResults int, passes bool) *findings {
	return &findings{
		maxResults: maxResults,
		passes:     passes,
		namespaces: map[string]*namespaceFindings{},
		policies:   map[string]*policyFindings{},
		candidates: map[string]*policyFindings{},
		counts:     map[metricKey]int{},
		excepted:   map[string]int64{},
		firstSeen:  map[resultKey]metav1.Timestamp{},
		now:        now,
	}
}

// add records one object's decision; seen holds the first-seen time of
// each violation the previous sweep found.
func (f *findings) add(o *audit.Object, d *policy.Decision, seen map[resultKey]metav1.Timestamp) {
	ns := f.namespaces[o.Namespace]
	if ns == nil {
		ns = &namespaceFindings{}
		f.namespaces[o.Namespace] = ns
	}
	f.addCandidates(o, d)
	ref := objectReference(o)
	for _, x := range d.Exceptions {
		f.excepted[x.Ref()]++
	}
	if f.passes {
		f.addPasses(ns, o, d, ref, seen)
	}
	if len(d.Violations) == 0 {
		// Counted whether or not the namespace gets a report: see reported.
		ns.summary.Pass++
		return
	}
	for i := range d.Violations {
		v := &d.Violations[i]
		if v.ExceptedBy != "" {
			f.addSkip(ns, o, v, ref, seen)
			continue
		}
		f.counts[metricKey{v.Source, v.Rule, v.Enforcement}]++

		p := f.policies[v.Source]
		if p == nil {
			p = &policyFindings{}
			f.policies[v.Source] = p
		}
		p.total++
		if len(p.violations) < MaxStatusViolations {
			p.violations = append(p.violations, v1alpha1.AuditViolation{
				Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Rule: v.Rule, Field: v.Field, Message: v.Message,
			})
		}

		r, severity := resultOf(v.Enforcement)
		switch r {
		case report.ResultFail:
			ns.summary.Fail++
		default:
			ns.summary.Warn++
		}
		key := resultKey{o.UID, v.Source, v.Rule, v.Field}
		ts, ok := seen[key]
		if !ok {
			ts = f.now
		}
		f.firstSeen[key] = ts
		if len(ns.results) >= f.maxResults {
			continue // counted in the summary only
		}
		ns.results = append(ns.results, report.PolicyReportResult{
			Source:     ReportSource,
			Policy:     v.Source,
			Rule:       v.Rule,
			Category:   Category,
			Severity:   severity,
			Timestamp:  ts,
			Result:     r,
			Scored:     true,
			Resources:  []corev1.ObjectReference{ref},
			Message:    policy.Truncate(v.Field+": "+v.Message, MaxMessageBytes),
			Properties: map[string]string{PropertyField: policy.Truncate(v.Field, MaxMessageBytes), PropertyEnforcement: string(v.Enforcement)},
		})
	}
}

// addSkip lists a violation an exception lifts as a skip result naming the
// exception: not enforced, and neither counted in the violations gauge nor
// in the policy's status.audit. When the exception expires, the next sweep
// finds it a failure (or warning) again.
func (f *findings) addSkip(ns *namespaceFindings, o *audit.Object, v *policy.Violation, ref corev1.ObjectReference, seen map[resultKey]metav1.Timestamp) {
	ns.summary.Skip++
	key := resultKey{o.UID, v.Source, v.Rule, v.Field}
	ts, ok := seen[key]
	if !ok {
		ts = f.now
	}
	f.firstSeen[key] = ts
	if len(ns.results) >= f.maxResults {
		return
	}
	_, severity := resultOf(v.Enforcement)
	expiry := policy.FormatExpiry(v.ExceptedUntil)
	ns.results = append(ns.results, report.PolicyReportResult{
		Source:    ReportSource,
		Policy:    v.Source,
		Rule:      v.Rule,
		Category:  Category,
		Severity:  severity,
		Timestamp: ts,
		Result:    report.ResultSkip,
		Scored:    true,
		Resources: []corev1.ObjectReference{ref},
		Message:   policy.Truncate("excepted by "+policy.SourcePolicyException+" "+v.ExceptedBy+" until "+expiry+": "+v.Field+": "+v.Message, MaxMessageBytes),
		Properties: map[string]string{
			PropertyField: policy.Truncate(v.Field, MaxMessageBytes), PropertyEnforcement: string(v.Enforcement),
			PropertyException: v.ExceptedBy, PropertyExpiresAt: v.ExceptedUntil.UTC().Format(time.RFC3339),
		},
	})
}

// addPasses lists a pass result for each policy that judged o and found
// nothing, keeping the time it was first found so that an unchanged
// report is not written again. The summary counts objects, not these.
func (f *findings) addPasses(ns *namespaceFindings, o *audit.Object, d *policy.Decision, ref corev1.ObjectReference, seen map[resultKey]metav1.Timestamp) {
	for _, p := range d.Applied {
		if len(ns.passes) >= f.maxResults {
			return
		}
		source := p.Source.String()
		if slices.ContainsFunc(d.Violations, func(v policy.Violation) bool { return v.Source == source }) {
			continue
		}
		key := resultKey{uid: o.UID, source: source}
		ts, ok := seen[key]
		if !ok {
			ts = f.now
		}
		f.firstSeen[key] = ts
		ns.passes = append(ns.passes, report.PolicyReportResult{
			Source:    ReportSource,
			Policy:    source,
			Category:  Category,
			Timestamp: ts,
			Result:    report.ResultPass,
			Scored:    true,
			Resources: []corev1.ObjectReference{ref},
		})
	}
}

// resultOf maps an enforcement to a report result: Deny is a failure, as
// the object would be refused today; Warn a warning, as kubectl shows one;
// Audit a warning too (the schema has no "informational" result), told
// apart by severity info and the enforcement property.
func resultOf(e v1alpha1.Enforcement) (report.Result, report.Severity) {
	switch e {
	case v1alpha1.Deny:
		return report.ResultFail, report.SeverityHigh
	case v1alpha1.Warn:
		return report.ResultWarn, report.SeverityMedium
	}
	return report.ResultWarn, report.SeverityInfo
}

func objectReference(o *audit.Object) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: audit.APIVersion(o.Kind), Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, UID: o.UID}
}

// reported are the namespaces that get a report: those with violations,
// and with passes listed those with any result. A namespace whose objects
// all pass gets no report otherwise (and loses the one it had).
func (f *findings) reported() map[string]*namespaceFindings {
	out := make(map[string]*namespaceFindings, len(f.namespaces))
	for ns, nf := range f.namespaces {
		if nf.summary.Fail+nf.summary.Warn+nf.summary.Skip > 0 || len(nf.passes) > 0 {
			out[ns] = nf
		}
	}
	return out
}

// addCandidates records the objects a candidate would deny that its policy
// admits: at most MaxStatusViolations listed each, all counted.
func (f *findings) addCandidates(o *audit.Object, d *policy.Decision) {
	for i := range d.Candidates {
		r := &d.Candidates[i]
		if r.Outcome != v1alpha1.OutcomeWouldDeny {
			continue
		}
		src := r.Candidate.SourceName()
		p := f.candidates[src]
		if p == nil {
			p = &policyFindings{}
			f.candidates[src] = p
		}
		p.total++
		if len(p.violations) < v1alpha1.MaxCandidateExisting && r.Violation != nil {
			v := r.Violation
			p.violations = append(p.violations, v1alpha1.AuditViolation{
				Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Rule: v.Rule, Field: v.Field, Message: policy.Truncate(v.Message, MaxMessageBytes),
			})
		}
	}
}
