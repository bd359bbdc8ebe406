package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportVAPCommand converts a corpus policy and has check judge with the
// result, and names what it cannot carry.
func TestImportVAPCommand(t *testing.T) {
	corpus := filepath.Join("..", "..", "test", "vap", "corpus")
	dir := t.TempDir()
	unlabelled := writeFile(t, dir, "unlabelled.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: team-a}\nspec:\n  containers: [{name: a, image: registry.example.com/app:1}]\n")
	labelled := writeFile(t, dir, "labelled.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: named, namespace: team-a, labels: {app.kubernetes.io/name: web}}\nspec:\n  containers: [{name: a, image: registry.example.com/app:1}]\n")
	envoy := writeFile(t, dir, "envoy.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: envoy, namespace: team-a}\nspec:\n  containers: [{name: a, image: registry.example.com/app:1}]\n  initContainers: [{name: b, image: docker.io/library/envoy:v1.31.0}]\n")
	latest := writeFile(t, dir, "latest.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: latest, namespace: team-a}\nspec:\n  containers: [{name: a, image: registry.example.com/app:1}]\n  initContainers: [{name: b, image: ghcr.io/acme/setup:latest}]\n")
	withAudit := writeFile(t, dir, "audit.yaml", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: audited}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: ["", apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods, deployments]}
  validations:
  - expression: "true"
  auditAnnotations:
  - {key: seen, valueExpression: "'yes'"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: audited}
spec: {policyName: audited, validationActions: [Deny]}
`)
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    []string
		stderr    []string
		thenCheck string // a Pod file check judges with stdout as policy
		checkCode int
		checkSays string
	}{{
		name:      "AdmissionPolicy, and check denies with the VAP's message",
		args:      []string{filepath.Join(corpus, "25-require-labels.yaml")},
		stdout:    []string{"kind: AdmissionPolicy", "name: require-labels", "policy.example.com/imported-from: ValidatingAdmissionPolicy require-labels"},
		thenCheck: unlabelled, checkCode: exitDenied, checkSays: "The label `app.kubernetes.io/name` is required.",
	}, {
		name:      "check admits what the VAP admits",
		args:      []string{filepath.Join(corpus, "25-require-labels.yaml")},
		stdout:    []string{"kind: AdmissionPolicy"},
		thenCheck: labelled, checkCode: exitAdmitted,
	}, {
		// Issue 22's rule, params from a ConfigMap.
		name:      "allowed registries: check denies an image from elsewhere with the VAP's message",
		args:      []string{filepath.Join(corpus, "18-allowed-registries.yaml")},
		stdout:    []string{"kind: AdmissionPolicy", "allowed: registry.example.com/,ghcr.io/acme/"},
		thenCheck: envoy, checkCode: exitDenied, checkSays: "denied: images not from an allowed registry: docker.io/library/envoy:v1.31.0",
	}, {
		name:      "allowed registries: check admits the allowed registries",
		args:      []string{filepath.Join(corpus, "18-allowed-registries.yaml")},
		stdout:    []string{"kind: AdmissionPolicy"},
		thenCheck: labelled, checkCode: exitAdmitted,
	}, {
		// Typed dyn, as VAP types it: containers + init containers.
		name:      "containers + initContainers: check denies an init container's latest tag",
		args:      []string{filepath.Join(corpus, "21-disallow-latest-tag.yaml")},
		stdout:    []string{"kind: AdmissionPolicy"},
		thenCheck: latest, checkCode: exitDenied, checkSays: "Using a mutable image tag e.g. latest is not allowed: ghcr.io/acme/setup:latest",
	}, {
		name:      "containers + initContainers: check admits tagged images",
		args:      []string{filepath.Join(corpus, "21-disallow-latest-tag.yaml")},
		stdout:    []string{"kind: AdmissionPolicy"},
		thenCheck: envoy, checkCode: exitAdmitted,
	}, {
		name:      "a policy ConfigMap of team-a",
		args:      []string{"--configmap", "team-a", filepath.Join(corpus, "19-docs-max-containers.yaml")},
		stdout:    []string{"kind: ConfigMap", "namespace: team-a", "policy.example.com/policy: \"true\"", "policy.yaml: |", "maxContainers: \"2\""},
		thenCheck: labelled, checkCode: exitAdmitted,
	}, {
		name:   "what is not carried is named, exit 2",
		args:   []string{withAudit},
		code:   exitNotCarried,
		stdout: []string{"name: audited"},
		stderr: []string{`not carried: ` + withAudit + `: document 1: ValidatingAdmissionPolicy audited (binding audited): spec.matchConstraints.resourceRules[0] matches deployments in API group ""`, "auditAnnotations are not carried", "things not carried"},
	}, {
		name:   "no FILE",
		args:   nil,
		code:   exitUsage,
		stderr: []string{"at least one FILE"},
	}, {
		name:   "no VAP in the input",
		args:   []string{unlabelled},
		code:   exitNotCarried,
		stderr: []string{"no ValidatingAdmissionPolicy with a binding"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"import-vap"}, tc.args...), nil, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &stdout, &stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, &stderr)
				}
			}
			if tc.thenCheck == "" {
				return
			}
			policy := writeFile(t, t.TempDir(), "imported.yaml", stdout.String())
			var out, errOut bytes.Buffer
			if code := run(context.Background(), []string{"check", "-p", policy, tc.thenCheck}, nil, &out, &errOut); code != tc.checkCode {
				t.Fatalf("check: exit %d, want %d\n%s%s", code, tc.checkCode, &out, &errOut)
			}
			if !strings.Contains(out.String(), tc.checkSays) {
				t.Errorf("check says %q, want %q", &out, tc.checkSays)
			}
		})
	}
}
