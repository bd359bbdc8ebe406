package reports

import (
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
	// MaxResultsPerReport keeps a namespace's PolicyReport within etcd's
	// object size: results past it are counted in the summary, not listed.
	MaxResultsPerReport = 1000
	// MaxStatusViolations is how many violations an AdmissionPolicy's
	// status.audit lists; totalViolations counts them all.
	MaxStatusViolations = 20
)

// ReportSource is the source a PolicyReport result names: the engine.
const ReportSource = "policy-webhook"

// Properties of a report result that carry what the schema has no field for.
const (
	PropertyField       = "field"
	PropertyEnforcement = "enforcement"
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

// namespaceFindings are the results of one namespace, as its report holds them.
type namespaceFindings struct {
	summary report.PolicyReportSummary
	results []report.PolicyReportResult
	omitted int
}

// policyFindings are one policy source's violations, as its status holds them.
type policyFindings struct {
	total      int64
	violations []v1alpha1.AuditViolation
}

// findings are what one sweep found.
type findings struct {
	namespaces map[string]*namespaceFindings
	policies   map[string]*policyFindings // by policy.Source.String()
	counts     map[metricKey]int
	firstSeen  map[resultKey]metav1.Timestamp
	now        metav1.Timestamp
}

func newFindings(now metav1.Timestamp) *findings {
	return &findings{
		namespaces: map[string]*namespaceFindings{},
		policies:   map[string]*policyFindings{},
		counts:     map[metricKey]int{},
		firstSeen:  map[resultKey]metav1.Timestamp{},
		now:        now,
	}
}

// add records one object's decision; seen holds the first-seen time of
// each violation the previous sweep found.
func (f *findings) add(o *audit.Object, d *policy.Decision, seen map[resultKey]metav1.Timestamp) {
	ns := f.namespaces[o.Namespace]
	if len(d.Violations) == 0 {
		if ns != nil {
			ns.summary.Pass++
		} else {
			// Counted once the namespace has a report, see passes.
			f.namespaces[o.Namespace] = &namespaceFindings{summary: report.PolicyReportSummary{Pass: 1}}
		}
		return
	}
	if ns == nil {
		ns = &namespaceFindings{}
		f.namespaces[o.Namespace] = ns
	}
	ref := objectReference(o)
	for i := range d.Violations {
		v := &d.Violations[i]
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
		if len(ns.results) >= MaxResultsPerReport {
			ns.omitted++
			continue
		}
		ns.results = append(ns.results, report.PolicyReportResult{
			Source:     ReportSource,
			Policy:     v.Source,
			Rule:       v.Rule,
			Category:   "Admission policy",
			Severity:   severity,
			Timestamp:  ts,
			Result:     r,
			Scored:     true,
			Resources:  []corev1.ObjectReference{ref},
			Message:    v.Field + ": " + v.Message,
			Properties: map[string]string{PropertyField: v.Field, PropertyEnforcement: string(v.Enforcement)},
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

// withViolations are the namespaces whose report has results: a namespace
// whose objects all pass gets no report (and loses the one it had).
func (f *findings) withViolations() map[string]*namespaceFindings {
	out := make(map[string]*namespaceFindings, len(f.namespaces))
	for ns, nf := range f.namespaces {
		if nf.summary.Fail+nf.summary.Warn > 0 {
			out[ns] = nf
		}
	}
	return out
}
