package reports

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// ReportName is the name of the report the audit keeps in each namespace
// that has violations.
const ReportName = "policy-webhook"

// Labels on every report the audit writes, which is how it finds the ones
// it must delete.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "policy-webhook"
)

// FieldManager owns the reports the audit writes.
const FieldManager = "policy-webhook-audit"

// Format is the API the audit writes its reports in.
type Format string

// The formats: OpenReports, which Policy Reporter, Kyverno and Kubewarden
// are moving to, and the wgpolicyk8s.io PolicyReports they read today.
const (
	FormatOpenReports Format = "openreports"
	FormatWGPolicy    Format = "wgpolicyk8s"
)

// Formats are the formats the audit writes, the default first.
func Formats() []Format { return []Format{FormatOpenReports, FormatWGPolicy} }

// Set checks and sets a format named on the command line.
func (f *Format) Set(s string) error {
	if !slices.Contains(Formats(), Format(s)) {
		return fmt.Errorf("report format %q: want one of %v", s, Formats())
	}
	*f = Format(s)
	return nil
}

func (f Format) String() string { return string(f) }

// resource is where reports of the format live.
func (f Format) resource() schema.GroupVersionResource {
	if f == FormatWGPolicy {
		return report.PolicyReportResource
	}
	return OpenReportsResource
}

// component is the kustomize component that installs the format's CRDs.
func (f Format) component() string {
	if f == FormatWGPolicy {
		return "manifests/components/policyreports"
	}
	return "manifests/components/openreports"
}

// OpenReportsResource is the resource of OpenReports Reports.
var OpenReportsResource = schema.GroupVersionResource{Group: openreports.GroupVersion.Group, Version: openreports.GroupVersion.Version, Resource: "reports"}

// buildReport is a namespace's report in format f, listing results.
func buildReport(f Format, namespace string, nf *namespaceFindings, results []report.PolicyReportResult, maxResults int, passes bool) any {
	meta := metav1.ObjectMeta{
		Name:      ReportName,
		Namespace: namespace,
		Labels:    map[string]string{LabelManagedBy: ManagedBy},
	}
	if f == FormatWGPolicy {
		return &report.PolicyReport{
			TypeMeta:   metav1.TypeMeta{APIVersion: report.GroupVersion.String(), Kind: report.KindPolicyReport},
			ObjectMeta: meta,
			Summary:    nf.summary,
			Results:    results,
		}
	}
	r := &openreports.Report{
		TypeMeta:   metav1.TypeMeta{APIVersion: openreports.GroupVersion.String(), Kind: "Report"},
		ObjectMeta: meta,
		Source:     ReportSource,
		// Tells consumers that the list is bounded and which results it
		// leaves out, the summary counting them all.
		Configuration: &openreports.ReportConfiguration{Limits: openreports.Limits{MaxResults: maxResults}},
		Summary: openreports.ReportSummary{
			Pass: nf.summary.Pass, Fail: nf.summary.Fail, Warn: nf.summary.Warn, Error: nf.summary.Error, Skip: nf.summary.Skip,
		},
		Results: make([]openreports.ReportResult, len(results)),
	}
	if !passes {
		r.Configuration.Limits.StatusFilter = []openreports.StatusFilter{"fail", "warn", "error", "skip"}
	}
	for i := range results {
		x := &results[i]
		r.Results[i] = openreports.ReportResult{
			Source: x.Source, Policy: x.Policy, Rule: x.Rule, Category: x.Category,
			Severity: openreports.ResultSeverity(x.Severity), Timestamp: x.Timestamp, Result: openreports.Result(x.Result),
			Scored: x.Scored, Subjects: x.Resources, Description: x.Message, Properties: x.Properties,
		}
	}
	return r
}

// encodedReport is a report as the audit applies it.
type encodedReport struct {
	body   []byte
	hash   string // identifies the content, to skip writing it again
	listed int    // results listed; the summary counts them all
}

// encodeReport encodes a namespace's report with as many of its results as
// the bounds allow: at most maxResults, and fewer until the encoding fits
// maxBytes, whatever the results hold.
func encodeReport(f Format, namespace string, nf *namespaceFindings, maxResults int, passes bool, maxBytes int) (encodedReport, error) {
	results := nf.listed(maxResults)
	n := len(results)
	for {
		b, err := json.Marshal(buildReport(f, namespace, nf, results[:n], maxResults, passes))
		if err != nil {
			return encodedReport{}, fmt.Errorf("encoding the report of namespace %s: %w", namespace, err)
		}
		if len(b) <= maxBytes {
			return encodedReport{body: b, hash: fmt.Sprintf("%x", sha256.Sum256(b)), listed: n}, nil
		}
		if n == 0 {
			return encodedReport{}, fmt.Errorf("the report of namespace %s takes %d bytes with no results, over %d", namespace, len(b), maxBytes)
		}
		// Results are of like size (messages are capped): cut in
		// proportion, a little more, so that one more encoding fits.
		n = min(n-1, int(int64(n)*int64(maxBytes)/int64(len(b))*95/100))
	}
}

// reportsServed reports whether the CRDs of the audit's format are installed.
func (a *Auditor) reportsServed() (bool, error) {
	gv := a.cfg.Format.resource().GroupVersion().String()
	_, err := a.cfg.Discovery.ServerResourcesForGroupVersion(gv)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("asking the API server whether it serves %s: %w", gv, err)
	}
	return true, nil
}

// writeReports applies the report of each namespace with results whose
// content changed since it was last written, and deletes the reports of
// namespaces that have none left.
func (a *Auditor) writeReports(ctx context.Context, byNamespace map[string]*namespaceFindings) error {
	served, err := a.reportsServed()
	if err != nil {
		return err
	}
	if !served {
		if !a.reportsMissingLogged {
			a.log.Info("Report CRDs are not installed: the audit writes no reports", "format", a.cfg.Format, "install", a.cfg.Format.component())
			a.reportsMissingLogged = true
		}
		a.written = nil
		return nil
	}
	a.reportsMissingLogged = false
	if a.written == nil {
		// First sweep since the CRDs appeared or this replica was elected:
		// the reports already there are the ones to keep up to date or delete.
		if err := a.loadWritten(ctx); err != nil {
			return err
		}
	}
	reports := a.cfg.Dynamic.Resource(a.cfg.Format.resource())
	var errs []error
	for ns, nf := range byNamespace {
		r, err := encodeReport(a.cfg.Format, ns, nf, a.cfg.MaxResults, a.cfg.Passes, MaxReportBytes-reportHeadroom)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a.written[ns] == r.hash {
			continue
		}
		if total := nf.summary.Fail + nf.summary.Warn; r.listed < total {
			a.log.Info("The report lists the first results only", "namespace", ns, "listed", r.listed, "violations", total)
		}
		if _, err := reports.Namespace(ns).Patch(ctx, ReportName, types.ApplyPatchType, r.body, metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the namespace is being deleted
			}
			errs = append(errs, fmt.Errorf("applying report %s/%s (%s): %w", ns, ReportName, a.cfg.Format, err))
			continue
		}
		a.written[ns] = r.hash
		a.metrics.reportWrites.Inc()
	}
	for ns := range a.written {
		if _, ok := byNamespace[ns]; ok {
			continue
		}
		err := reports.Namespace(ns).Delete(ctx, ReportName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting report %s/%s (%s): %w", ns, ReportName, a.cfg.Format, err))
			continue
		}
		delete(a.written, ns)
	}
	return errors.Join(errs...)
}

// loadWritten lists the reports the audit wrote before (by its label), in
// pages, so that stale ones are deleted. Their hash is unknown, so each is
// written once more.
func (a *Auditor) loadWritten(ctx context.Context) error {
	a.written = map[string]string{}
	opts := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy, Limit: audit.DefaultPageSize}
	for {
		list, err := a.cfg.Dynamic.Resource(a.cfg.Format.resource()).List(ctx, opts)
		if err != nil {
			a.written = nil
			return fmt.Errorf("listing the reports written before (%s): %w", a.cfg.Format, err)
		}
		for i := range list.Items {
			if list.Items[i].GetName() == ReportName {
				a.written[list.Items[i].GetNamespace()] = ""
			}
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

// publishCandidates makes what a sweep found each candidate would deny
// its AdmissionPolicy's status.candidate.existing (a ConfigMap's outcomes
// Event counts them); publish tells the writer.
func (a *Auditor) publishCandidates(candidates []*policy.Policy, found map[string]*policyFindings, at metav1.Time) {
	results := map[policy.Source]*v1alpha1.AuditStatus{}
	for _, c := range candidates {
		st := &v1alpha1.AuditStatus{LastAuditTime: at}
		if f := found[c.Source.String()]; f != nil {
			st.TotalViolations = f.total
			st.Violations = f.violations
		}
		results[c.Source] = st
	}
	a.candidates.Store(&results)
}

// publish makes what a sweep found of each AdmissionPolicy in force its
// status.audit, and tells whoever writes it.
func (a *Auditor) publish(policies []*policy.Policy, found map[string]*policyFindings, at metav1.Time) {
	results := map[string]*v1alpha1.AuditStatus{}
	for _, p := range policies {
		if p.Source.Kind != policy.SourceAdmissionPolicy {
			continue
		}
		st := &v1alpha1.AuditStatus{LastAuditTime: at}
		if f := found[p.Source.String()]; f != nil {
			st.TotalViolations = f.total
			st.Violations = f.violations
		}
		results[p.Source.Name] = st
	}
	a.results.Store(&results)
	if a.cfg.Swept != nil {
		a.cfg.Swept()
	}
}
