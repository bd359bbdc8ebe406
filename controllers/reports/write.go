package reports

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// ReportName is the name of the PolicyReport the audit keeps in each
// namespace that has violations.
const ReportName = "policy-webhook"

// Labels on every report the audit writes, which is how it finds the ones
// it must delete.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "policy-webhook"
)

// FieldManager owns the reports the audit writes.
const FieldManager = "policy-webhook-audit"

// buildReport is a namespace's PolicyReport, as applied.
func buildReport(namespace string, nf *namespaceFindings) *report.PolicyReport {
	return &report.PolicyReport{
		TypeMeta: metav1.TypeMeta{APIVersion: report.GroupVersion.String(), Kind: report.KindPolicyReport},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ReportName,
			Namespace: namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy},
		},
		Summary: nf.summary,
		Results: nf.results,
	}
}

// contentHash identifies a report's content, to skip writing it again.
func contentHash(r *report.PolicyReport) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encoding PolicyReport %s/%s: %w", r.Namespace, r.Name, err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b)), nil
}

// reportsServed reports whether the PolicyReport CRDs are installed.
func (a *Auditor) reportsServed() (bool, error) {
	_, err := a.cfg.Discovery.ServerResourcesForGroupVersion(report.GroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("asking the API server whether it serves %s: %w", report.GroupVersion, err)
	}
	return true, nil
}

// writeReports applies the report of each namespace with violations whose
// content changed since it was last written, and deletes the reports of
// namespaces that have none left.
func (a *Auditor) writeReports(ctx context.Context, byNamespace map[string]*namespaceFindings) error {
	served, err := a.reportsServed()
	if err != nil {
		return err
	}
	if !served {
		if !a.reportsMissingLogged {
			a.log.Info("PolicyReport CRDs are not installed: the audit writes no reports (install manifests/components/policyreports)")
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
	reports := a.cfg.Dynamic.Resource(report.PolicyReportResource)
	var errs []error
	for ns, nf := range byNamespace {
		r := buildReport(ns, nf)
		h, err := contentHash(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a.written[ns] == h {
			continue
		}
		if nf.omitted > 0 {
			a.log.Info("PolicyReport holds the first results only", "namespace", ns, "listed", len(nf.results), "omitted", nf.omitted)
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("converting to unstructured: %w", err))
			continue
		}
		if _, err := reports.Namespace(ns).Apply(ctx, ReportName, &unstructured.Unstructured{Object: u}, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the namespace is being deleted
			}
			errs = append(errs, fmt.Errorf("applying PolicyReport %s/%s: %w", ns, ReportName, err))
			continue
		}
		a.written[ns] = h
		a.metrics.reportWrites.Inc()
	}
	for ns := range a.written {
		if _, ok := byNamespace[ns]; ok {
			continue
		}
		err := reports.Namespace(ns).Delete(ctx, ReportName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting PolicyReport %s/%s: %w", ns, ReportName, err))
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
		list, err := a.cfg.Dynamic.Resource(report.PolicyReportResource).List(ctx, opts)
		if err != nil {
			a.written = nil
			return fmt.Errorf("listing the PolicyReports written before: %w", err)
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
