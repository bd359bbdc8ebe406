package check

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The cases of the end-to-end exception test (test/e2e/exceptions_test.go),
// through check with a fixed clock: the same verdicts.
const exceptionPolicies = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: baseline
  namespace: team-a
  labels: {policy.example.com/policy: "true"}
data:
  policy.yaml: |
    pods:
      requireRunAsNonRoot: true
---
apiVersion: policy.example.com/v1alpha1
kind: PolicyException
metadata: {name: legacy-root, namespace: team-a}
spec:
  reason: vendor image runs as root (TICKET-123)
  expiresAt: "2027-01-31T00:00:00Z"
  exceptions:
  - policy: {kind: ConfigMap, namespace: team-a, name: baseline}
    rules: [pods.requireRunAsNonRoot]
  match:
    names: ["legacy-*"]
---
apiVersion: policy.example.com/v1alpha1
kind: PolicyException
metadata: {name: legacy-root, namespace: team-b}
spec:
  reason: theirs
  expiresAt: "2027-01-31T00:00:00Z"
  exceptions:
  - policy: {kind: ConfigMap, namespace: team-a, name: baseline}
    rules: [pods.requireRunAsNonRoot]
---
apiVersion: policy.example.com/v1alpha1
kind: PolicyException
metadata: {name: soon, namespace: team-a}
spec:
  reason: a short one
  expiresAt: "2026-12-07T00:00:20Z"
  exceptions:
  - policy: {kind: ConfigMap, namespace: team-a, name: baseline}
    rules: [pods.requireRunAsNonRoot]
  match:
    names: ["soon-*"]
`

func rootPodDoc(ns, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  containers: [{name: c0, image: registry.example.com/vendor/db:1.0}]
`, name, ns)
}

func exceptionDoc(name, reason, expiresAt, rule string) string {
	r := ""
	if reason != "-" {
		r = fmt.Sprintf("  reason: %q\n", reason)
	}
	return fmt.Sprintf(`apiVersion: policy.example.com/v1alpha1
kind: PolicyException
metadata: {name: %s, namespace: team-a}
spec:
%s  expiresAt: %q
  exceptions:
  - policy: {kind: ConfigMap, namespace: team-a, name: baseline}
    rules: [%s]
`, name, r, expiresAt, rule)
}

func exceptionChecker(t *testing.T, now time.Time) *Checker {
	t.Helper()
	docs, err := ReadDocuments("policies.yaml", strings.NewReader(exceptionPolicies))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(docs, Options{PolicyNamespace: "policy-system", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExceptionVerdicts(t *testing.T) {
	start := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	expiry := start.Add(20 * time.Second)
	tests := []struct {
		name    string
		now     time.Time
		input   string
		verdict string
		want    string // a part of the first violation line, as check writes it
	}{
		{"refused without an exception", start, rootPodDoc("team-a", "web"), "DENY", "ConfigMap team-a/baseline pods.requireRunAsNonRoot"},
		{"admitted with the warning", start, rootPodDoc("team-a", "legacy-1"), "WARN", "excepted by PolicyException team-a/legacy-root until 2027-01-31: ConfigMap team-a/baseline pods.requireRunAsNonRoot"},
		{"another team's exception does not help", start, rootPodDoc("team-a", "other"), "DENY", "pods.requireRunAsNonRoot"},
		{"before the expiry", expiry.Add(-time.Second), rootPodDoc("team-a", "soon-1"), "WARN", "excepted by PolicyException team-a/soon until 2026-12-07T00:00:20Z"},
		{"at the expiry", expiry, rootPodDoc("team-a", "soon-1"), "DENY", "pods.requireRunAsNonRoot"},
		{"past expiry refused", start, exceptionDoc("past", "r", "2026-12-06T00:00:00Z", "pods.requireRunAsNonRoot"), "DENY", "spec.expiresAt"},
		{"no reason refused", start, exceptionDoc("no-reason", "-", "2027-01-01T00:00:00Z", "pods.requireRunAsNonRoot"), "DENY", "spec.reason"},
		{"a year ahead refused", start, exceptionDoc("year", "r", "2027-12-07T00:00:00Z", "pods.requireRunAsNonRoot"), "DENY", "spec.expiresAt"},
		{"unknown rule refused", start, exceptionDoc("unknown", "r", "2027-01-01T00:00:00Z", "pods.forbidPrivileged"), "DENY", "spec.exceptions[0].rules[0]"},
		{"quota rule refused", start, exceptionDoc("quota", "r", "2027-01-01T00:00:00Z", "myApples.maxTotalQuantityPerNamespace"), "DENY", "spec.exceptions[0].rules[0]"},
		{"a valid one admitted", start, exceptionDoc("ok", "r", "2027-01-01T00:00:00Z", "pods.requireRunAsNonRoot"), "ALLOW", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := judgeAll(t, exceptionChecker(t, tt.now), tt.input)
			if len(results) != 1 {
				t.Fatalf("%d results, want 1", len(results))
			}
			var out strings.Builder
			if err := WriteText(&out, results); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if v := results[0].Verdict(); v != tt.verdict {
				t.Fatalf("verdict %s, want %s:\n%s", v, tt.verdict, out.String())
			}
			if tt.want != "" && (len(lines) < 2 || !strings.Contains(lines[1], tt.want)) {
				t.Errorf("output:\n%s\nwant a line with %q", out.String(), tt.want)
			}
		})
	}
}

// Exceptions read from the policy paths are as stored: an expired one is
// inactive, not an error; an invalid one, or one naming a rule its policy
// lacks, is an invalid policy input.
func TestExceptionsInPolicyPaths(t *testing.T) {
	var notes strings.Builder
	docs, err := ReadDocuments("policies.yaml", strings.NewReader(exceptionPolicies))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(docs, Options{PolicyNamespace: "policy-system", Now: time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC), Notes: &notes}); err != nil {
		t.Fatalf("expired exceptions: %v", err)
	}
	if !strings.Contains(notes.String(), "PolicyException team-a/soon expired at 2026-12-07T00:00:20Z") {
		t.Errorf("notes %q, want the expiry noted", notes.String())
	}
	for name, doc := range map[string]string{
		"spec.reason":                 exceptionDoc("x", "-", "2027-01-01T00:00:00Z", "pods.requireRunAsNonRoot"),
		"spec.exceptions[0].rules[0]": exceptionDoc("x", "r", "2027-01-01T00:00:00Z", "pods.forbidPrivileged"),
	} {
		docs, err := ReadDocuments("policies.yaml", strings.NewReader(exceptionPolicies+"---\n"+doc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(docs, Options{PolicyNamespace: "policy-system"})
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "policies.yaml: document 5") {
			t.Errorf("error %v, want one naming the document and %s", err, name)
		}
	}
}
