package reports

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

func violation(e v1alpha1.Enforcement) policy.Violation {
	return policy.Violation{Source: "AdmissionPolicy p", Rule: "pods.requiredLabels", Enforcement: e, Field: "metadata.labels", Message: "missing app"}
}

func TestFindingsByEnforcement(t *testing.T) {
	f := newFindings(metav1.Timestamp{Seconds: 100}, DefaultMaxResults, false)
	seen := map[resultKey]metav1.Timestamp{}
	o := &audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "a", UID: "u1"}
	f.add(o, &policy.Decision{Violations: []policy.Violation{violation(v1alpha1.Deny), violation(v1alpha1.Warn), violation(v1alpha1.Audit)}}, seen)
	f.add(&audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "b"}, &policy.Decision{Allowed: true}, seen)
	f.add(&audit.Object{Kind: policy.KindPod, Namespace: "clean", Name: "c"}, &policy.Decision{Allowed: true}, seen)

	nf := f.reported()
	if len(nf) != 1 || nf["ns"] == nil {
		t.Fatalf("namespaces with violations %v, want ns only", nf)
	}
	if s := nf["ns"].summary; s.Fail != 1 || s.Warn != 2 || s.Pass != 1 {
		t.Errorf("summary %+v, want 1 fail, 2 warn, 1 pass", s)
	}
	want := []struct {
		r report.Result
		s report.Severity
		e string
	}{{report.ResultFail, report.SeverityHigh, "Deny"}, {report.ResultWarn, report.SeverityMedium, "Warn"}, {report.ResultWarn, report.SeverityInfo, "Audit"}}
	for i, r := range nf["ns"].results {
		if r.Result != want[i].r || r.Severity != want[i].s || r.Properties[PropertyEnforcement] != want[i].e ||
			r.Properties[PropertyField] != "metadata.labels" || r.Message != "metadata.labels: missing app" ||
			r.Resources[0].APIVersion != "v1" || r.Resources[0].UID != "u1" || r.Timestamp.Seconds != 100 {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if p := f.policies["AdmissionPolicy p"]; p == nil || p.total != 3 || len(p.violations) != 3 {
		t.Errorf("policy findings %+v", p)
	}
	if f.counts[metricKey{"AdmissionPolicy p", "pods.requiredLabels", v1alpha1.Warn}] != 1 {
		t.Errorf("counts %v", f.counts)
	}
}

// A violation keeps the time it was first found, so an unchanged report
// stays byte for byte the same and is not written again.
func TestFindingsKeepFirstSeen(t *testing.T) {
	o := &audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "a", UID: "u1"}
	d := &policy.Decision{Violations: []policy.Violation{violation(v1alpha1.Deny)}}
	for _, format := range Formats() {
		for _, passes := range []bool{false, true} {
			first := newFindings(metav1.Timestamp{Seconds: 100}, DefaultMaxResults, passes)
			first.add(o, d, nil)
			second := newFindings(metav1.Timestamp{Seconds: 200}, DefaultMaxResults, passes)
			second.add(o, d, first.firstSeen)
			r1, err := encodeReport(format, "ns", first.namespaces["ns"], DefaultMaxResults, passes, MaxReportBytes)
			if err != nil {
				t.Fatal(err)
			}
			r2, _ := encodeReport(format, "ns", second.namespaces["ns"], DefaultMaxResults, passes, MaxReportBytes)
			if r1.hash != r2.hash || second.namespaces["ns"].results[0].Timestamp.Seconds != 100 {
				t.Errorf("%s, passes %v: the second sweep's report differs: timestamp %v", format, passes, second.namespaces["ns"].results[0].Timestamp)
			}
		}
	}
}

func TestFindingsBounded(t *testing.T) {
	f := newFindings(metav1.Timestamp{Seconds: 1}, DefaultMaxResults, false)
	n := DefaultMaxResults + 5
	for i := range n {
		o := &audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: fmt.Sprint(i), UID: types.UID(fmt.Sprint(i))}
		f.add(o, &policy.Decision{Violations: []policy.Violation{violation(v1alpha1.Deny)}}, nil)
	}
	nf := f.namespaces["ns"]
	if len(nf.results) != DefaultMaxResults || nf.summary.Fail != n {
		t.Errorf("%d results, %d fail; want %d, %d", len(nf.results), nf.summary.Fail, DefaultMaxResults, n)
	}
	p := f.policies["AdmissionPolicy p"]
	if p.total != int64(n) || len(p.violations) != MaxStatusViolations {
		t.Errorf("status: total %d, %d listed", p.total, len(p.violations))
	}
}
