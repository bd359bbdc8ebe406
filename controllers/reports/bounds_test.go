package reports

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// runAsRoot is the violation of a Pod whose container may run as root, as
// the pods.requireRunAsNonRoot rule words it.
func runAsRoot(container int) policy.Violation {
	return policy.Violation{
		Source: "AdmissionPolicy baseline", Rule: "pods.requireRunAsNonRoot", Enforcement: v1alpha1.Audit,
		Field:   fmt.Sprintf("spec.containers[%d].securityContext.runAsNonRoot", container),
		Message: fmt.Sprintf("container %q does not set runAsNonRoot: true, nor does the pod's securityContext", fmt.Sprint("app-", container)),
	}
}

// sweepOf is what a sweep finds of pods violating Pods in each of namespaces,
// each Pod with perPod violations.
func sweepOf(namespaces []string, pods, perPod, maxResults int, passes bool) *findings {
	f := newFindings(metav1.Timestamp{Seconds: 1796000000}, maxResults, passes)
	for _, ns := range namespaces {
		for i := range pods {
			name := fmt.Sprintf("web-7d9f8c6b5-%05d", i)
			d := &policy.Decision{}
			for c := range perPod {
				d.Violations = append(d.Violations, runAsRoot(c))
			}
			f.add(&audit.Object{Kind: policy.KindPod, Namespace: ns, Name: name, UID: types.UID(fmt.Sprintf("%s-%036d", ns, i))}, d, nil)
		}
	}
	return f
}

// The case: 5,000 violating Pods in one namespace make one report
// under 1 MiB whose summary counts all 5,000, in either format.
func TestReportBounded5000Pods(t *testing.T) {
	ns := strings.Repeat("n", 63)
	f := sweepOf([]string{ns}, 5000, 1, DefaultMaxResults, false)
	for _, format := range Formats() {
		r, err := encodeReport(format, ns, f.reported()[ns], DefaultMaxResults, false, MaxReportBytes-reportHeadroom)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Summary report.PolicyReportSummary `json:"summary"`
			Results []json.RawMessage          `json:"results"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes, %d results listed", format, len(r.body), len(got.Results))
		if len(r.body) >= MaxReportBytes || got.Summary.Warn != 5000 || len(got.Results) != DefaultMaxResults || r.listed != DefaultMaxResults {
			t.Errorf("%s: %d bytes, summary %+v, %d results; want under %d bytes, 5000 warn, %d results",
				format, len(r.body), got.Summary, len(got.Results), MaxReportBytes, DefaultMaxResults)
		}
	}
}

// Whatever the input, a report stays under its byte budget: here 20 Pods
// of 60 containers each in a namespace of 63 characters, with longest
// messages and the results cap raised far past what fits.
func TestReportBoundedBytes(t *testing.T) {
	ns := strings.Repeat("n", 63)
	f := newFindings(metav1.Timestamp{Seconds: 1}, 100000, false)
	for i := range 20 {
		d := &policy.Decision{}
		for c := range 60 {
			v := runAsRoot(c)
			v.Message = strings.Repeat("é", 4000) // over MaxMessageBytes, cut on a rune boundary
			v.Field += strings.Repeat("é", 4000)
			d.Violations = append(d.Violations, v)
		}
		f.add(&audit.Object{Kind: policy.KindPod, Namespace: ns, Name: strings.Repeat("p", 250) + fmt.Sprint(i), UID: types.UID(fmt.Sprint(i))}, d, nil)
	}
	nf := f.reported()[ns]
	for _, res := range nf.results {
		if len(res.Message) > MaxMessageBytes || len(res.Properties[PropertyField]) > MaxMessageBytes ||
			!utf8.ValidString(res.Message) || !strings.HasSuffix(res.Message, "...") {
			t.Fatalf("message of %d bytes, field of %d: want each at most %d, cut on a rune", len(res.Message), len(res.Properties[PropertyField]), MaxMessageBytes)
		}
	}
	budget := MaxReportBytes - reportHeadroom
	for _, format := range Formats() {
		r, err := encodeReport(format, ns, nf, 100000, false, budget)
		if err != nil {
			t.Fatal(err)
		}
		var got openreports.Report // the wgpolicyk8s fields decode alike
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes, %d of 1200 results listed", format, len(r.body), r.listed)
		if len(r.body) > budget || r.listed == 0 || r.listed >= 1200 || len(got.Results) != r.listed || got.Summary.Warn != 1200 {
			t.Errorf("%s: %d bytes, %d results listed, summary %+v: want at most %d bytes, some of the results, 1200 warn", format, len(r.body), r.listed, got.Summary, budget)
		}
		// Trimming keeps most of what fits, not a few.
		if len(r.body) < budget*8/10 {
			t.Errorf("%s: trimmed to %d bytes of %d", format, len(r.body), budget)
		}
	}
}

// Pass results are listed only when asked for, after every violation, one
// for each policy that judged an object and found nothing.
func TestReportPasses(t *testing.T) {
	baseline := &policy.Policy{Source: policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "baseline"}}
	other := &policy.Policy{Source: policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "other"}}
	add := func(f *findings) {
		f.add(&audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "ok", UID: "u1"}, &policy.Decision{Allowed: true, Applied: []*policy.Policy{baseline, other}}, nil)
		f.add(&audit.Object{Kind: policy.KindPod, Namespace: "ns", Name: "bad", UID: "u2"},
			&policy.Decision{Violations: []policy.Violation{runAsRoot(0)}, Applied: []*policy.Policy{baseline, other}}, nil)
		f.add(&audit.Object{Kind: policy.KindPod, Namespace: "clean", Name: "ok", UID: "u3"}, &policy.Decision{Allowed: true, Applied: []*policy.Policy{baseline}}, nil)
	}
	off := newFindings(metav1.Timestamp{Seconds: 1}, DefaultMaxResults, false)
	add(off)
	if got := off.reported(); len(got) != 1 || len(got["ns"].listed(DefaultMaxResults)) != 1 {
		t.Errorf("without passes: %d reports, want ns only with its violation", len(got))
	}
	on := newFindings(metav1.Timestamp{Seconds: 1}, DefaultMaxResults, true)
	add(on)
	got := on.reported()
	if len(got) != 2 {
		t.Fatalf("with passes: %d reports, want ns and clean", len(got))
	}
	var listed []string
	for _, r := range got["ns"].listed(DefaultMaxResults) {
		listed = append(listed, fmt.Sprintf("%s %s %s", r.Result, r.Resources[0].Name, r.Policy))
	}
	want := "warn bad AdmissionPolicy baseline,pass ok AdmissionPolicy baseline,pass ok AdmissionPolicy other,pass bad AdmissionPolicy other"
	if strings.Join(listed, ",") != want {
		t.Errorf("listed %q\nwant    %q", strings.Join(listed, ","), want)
	}
	if s := got["ns"].summary; s.Pass != 1 || s.Warn != 1 {
		t.Errorf("summary %+v, want 1 pass (objects), 1 warn", s)
	}
	// The cap holds violations first.
	if l := got["ns"].listed(2); len(l) != 2 || l[0].Result != report.ResultWarn || l[1].Result != report.ResultPass {
		t.Errorf("two listed: %+v", l)
	}
}

// TestReportVolume measures what 10,000 violating Pods across 100
// namespaces write: 100 reports, each 100 results, their bytes as sent
// (the API server adds under 1 KiB to each; etcd stores custom resources
// as JSON). docs/operating.md quotes it:
//
//	go test ./controllers/reports -run TestReportVolume -v
func TestReportVolume(t *testing.T) {
	namespaces := make([]string, 100)
	for i := range namespaces {
		namespaces[i] = fmt.Sprintf("team-%03d", i)
	}
	f := sweepOf(namespaces, 100, 1, DefaultMaxResults, false)
	for _, format := range Formats() {
		total, largest := 0, 0
		for ns, nf := range f.reported() {
			r, err := encodeReport(format, ns, nf, DefaultMaxResults, false, MaxReportBytes-reportHeadroom)
			if err != nil {
				t.Fatal(err)
			}
			if r.listed != 100 {
				t.Errorf("%s: %d results listed, want 100", ns, r.listed)
			}
			total += len(r.body)
			largest = max(largest, len(r.body))
		}
		t.Logf("%s: 10,000 violating Pods in 100 namespaces: 100 reports, %d bytes in all (%.2f MiB), the largest %d bytes",
			format, total, float64(total)/(1<<20), largest)
	}
}
