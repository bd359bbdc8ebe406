package reports

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// An excepted violation is a skip result naming the exception, counted in
// the summary's skip and in the exception's coverage, not in the
// violations gauge nor the policy's status.audit; a namespace whose only
// results are skips still gets a report.
func TestFindingsSkipExcepted(t *testing.T) {
	until := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	x, errs := policy.CompileException("ns", "legacy", "1", &v1alpha1.PolicyExceptionSpec{
		Reason: "r", ExpiresAt: metav1.NewTime(until),
		Exceptions: []v1alpha1.ExceptionEntry{{Policy: v1alpha1.PolicyReference{Kind: "AdmissionPolicy", Name: "p"}, Rules: []string{"pods.requiredLabels"}}},
	}, "policy-system")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	excepted := violation(v1alpha1.Deny)
	excepted.ExceptedBy, excepted.ExceptedUntil = "ns/legacy", until
	f := newFindings(metav1.Timestamp{Seconds: 100}, DefaultMaxResults, false)
	o := &audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "a", UID: "u1"}
	f.add(o, &policy.Decision{Allowed: true, Violations: []policy.Violation{excepted}, Exceptions: []*policy.Exception{x}}, map[resultKey]metav1.Timestamp{})

	nf := f.reported()["ns"]
	if nf == nil {
		t.Fatal("no report for a namespace with a skip result")
	}
	if s := nf.summary; s.Skip != 1 || s.Fail != 0 || s.Pass != 0 {
		t.Errorf("summary %+v, want 1 skip", s)
	}
	r := nf.results[0]
	if r.Result != report.ResultSkip || r.Properties[PropertyException] != "ns/legacy" || r.Properties[PropertyExpiresAt] != "2027-01-31T00:00:00Z" ||
		r.Message != "excepted by PolicyException ns/legacy until 2027-01-31: metadata.labels: missing app" {
		t.Errorf("result %+v", r)
	}
	if len(f.counts) != 0 || len(f.policies) != 0 {
		t.Errorf("counts %v, policies %v: an excepted violation is not enforced", f.counts, f.policies)
	}
	if f.excepted["ns/legacy"] != 1 {
		t.Errorf("coverage %v, want ns/legacy 1", f.excepted)
	}
}
