package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// candidatePolicy is the end-to-end test's AdmissionPolicy (test/candidate):
// registry.example.com/ in force, its candidate also forbidding latest.
const candidatePolicy = `apiVersion: policy.example.com/v1alpha1
kind: AdmissionPolicy
metadata: {name: baseline, generation: 1}
spec:
  match: {namespaceSelector: {matchLabels: {candidate-e2e: "true"}}}
  pods: {allowedRegistries: [registry.example.com/]}
  candidate:
    match: {namespaceSelector: {matchLabels: {candidate-e2e: "true"}}}
    pods: {allowedRegistries: [registry.example.com/], disallowedTags: [latest]}
`

// relaxingConfigMap's candidate drops the registry rule: it would admit
// what the policy denies, never deny more.
const relaxingConfigMap = `apiVersion: v1
kind: ConfigMap
metadata: {name: registries, namespace: candidate-e2e, labels: {policy.example.com/policy: "true"}}
data:
  policy.yaml: |
    pods: {allowedRegistries: [registry.example.com/]}
  candidate.yaml: |
    pods: {requiredLabels: [app]}
`

func TestCheckCandidate(t *testing.T) {
	dir := t.TempDir()
	var pods strings.Builder
	pods.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: candidate-e2e, labels: {candidate-e2e: \"true\"}}\n")
	var latest []string
	for i := range 20 {
		name, image := fmt.Sprintf("pod-%02d", i), "registry.example.com/app:1.0"
		if i%4 == 0 {
			image = "registry.example.com/app:latest"
			latest = append(latest, name)
		}
		fmt.Fprintf(&pods, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: candidate-e2e, labels: {app: a}}\nspec:\n  containers: [{name: app, image: %q}]\n", name, image)
	}
	podsFile := writeFile(t, dir, "pods.yaml", pods.String())
	foreign := writeFile(t, dir, "foreign.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: foreign, namespace: candidate-e2e, labels: {app: a}}\nspec:\n  containers: [{name: app, image: docker.io/library/nginx:1.27}]\n")
	ap := writeFile(t, dir, "policies/ap.yaml", candidatePolicy)
	cm := writeFile(t, dir, "cm/cm.yaml", relaxingConfigMap)
	invalid := writeFile(t, dir, "invalid/ap.yaml", strings.Replace(candidatePolicy, "disallowedTags", "disallowedTag", 1))

	var wouldDeny []string
	for _, name := range latest {
		wouldDeny = append(wouldDeny, fmt.Sprintf("ALLOW Pod candidate-e2e/%s\n  candidate AdmissionPolicy baseline@1 would deny: pods.disallowedTags spec.containers[0].image: ", name))
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantLines  int // lines of stdout
		wantStderr []string
	}{
		{"the candidate would deny 5 of 20", []string{"--candidate", "-p", ap, podsFile}, 1, wouldDeny, 10,
			[]string{"note: candidates: 5 would deny, 0 would allow, 0 would warn"}},
		{"without --candidate, all admitted", []string{"-p", ap, podsFile}, 0, nil, 20, nil},
		{"a candidate that only relaxes", []string{"--candidate", "-p", cm, foreign}, 0,
			[]string{"DENY Pod candidate-e2e/foreign\n  candidate ConfigMap candidate-e2e/registries would allow: pods.allowedRegistries spec.containers[0].image: "}, 2, nil},
		{"json", []string{"--candidate", "-o", "json", "-p", ap, podsFile}, 1,
			[]string{`"candidate": [`, `"outcome": "would_deny"`, `"rule": "pods.disallowedTags"`}, -1, nil},
		{"an invalid candidate", []string{"--candidate", "-p", invalid, podsFile}, 2, nil, 0,
			[]string{"spec.candidate.pods.disallowedTag: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"check"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if n := strings.Count(stdout.String(), "\n"); tt.wantLines >= 0 && n != tt.wantLines {
				t.Errorf("%d lines of output, want %d:\n%s", n, tt.wantLines, stdout.String())
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
