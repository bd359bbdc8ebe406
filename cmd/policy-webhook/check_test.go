package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/hack/workload"
)

const cliPolicy = `apiVersion: v1
kind: ConfigMap
metadata:
  name: registries
  namespace: team-a
  labels: {policy.example.com/policy: "true"}
data:
  policy.yaml: |
    pods:
      allowedRegistries: [registry.example.com]
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// podControllers: a Deployment, a CronJob and a List of StatefulSets, as
// `helm template` or `kustomize build` print them.
const podControllers = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: evil.io/nginx:latest}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          initContainers: [{name: fetch, image: docker.io/library/busybox:1}]
          containers: [{name: job, image: registry.example.com/job:1}]
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    selector: {matchLabels: {app: db}}
    serviceName: db
    template:
      metadata: {labels: {app: db}}
      spec:
        containers: [{name: db, image: registry.example.com/db:1}]
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: cache}
  spec:
    selector: {matchLabels: {app: cache}}
    serviceName: cache
    template:
      metadata: {labels: {app: cache}}
      spec:
        containers: [{name: cache, image: registry.example.com/cache:1}, {name: exporter, image: quay.io/exporter:1}]
`

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "policies/nested/registries.yaml", cliPolicy)
	writeFile(t, dir, "policies/readme.txt", "not read")
	good := writeFile(t, dir, "good.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  containers: [{name: a, image: registry.example.com/app:1}]\n")
	bad := writeFile(t, dir, "bad.json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":[{"name":"a","image":"registry.example.com.evil.io/app:1"}]}}`)
	typo := writeFile(t, dir, "typo.yaml", strings.Replace(cliPolicy, "allowedRegistries", "allowedRegistrie", 1))
	policies := filepath.Join(dir, "policies")
	controllers := writeFile(t, dir, "controllers.yaml", podControllers)

	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{"admitted", []string{"-p", policies, "-n", "team-a", good}, "", 0, []string{"ALLOW Pod team-a/ok\n"}, nil},
		{"denied", []string{"-p", policies, "-n", "team-a", good, bad}, "", 1,
			[]string{"ALLOW Pod team-a/ok\nDENY Pod team-a/bad\n  ConfigMap team-a/registries pods.allowedRegistries spec.containers[0].image: "}, nil},
		{"policy of another namespace does not apply", []string{"-p", policies, bad}, "", 0, []string{"ALLOW Pod default/bad"}, nil},
		{"stdin", []string{"-p", policies, "-n", "team-a", "-"}, "apiVersion: v1\nkind: Pod\nmetadata: {name: s}\nspec:\n  containers: [{name: a, image: nginx}]\n", 1,
			[]string{"DENY Pod team-a/s"}, nil},
		{"json", []string{"-p", policies, "-n", "team-a", "-o", "json", bad}, "", 1, []string{`"results": [`, `"rule": "pods.allowedRegistries"`, `"allowed": false`}, nil},
		{"invalid policy", []string{"-p", typo, good}, "", 2, nil,
			[]string{"typo.yaml: document 1: ConfigMap team-a/registries is not a valid policy: policy.yaml: pods.allowedRegistrie: unknown field"}},
		{"pod controllers", []string{"-p", policies, "-n", "team-a", controllers}, "", 1, []string{
			"DENY Deployment team-a/web\n  ConfigMap team-a/registries pods.allowedRegistries spec.template.spec.containers[0].image: ",
			"DENY CronJob team-a/nightly\n  ConfigMap team-a/registries pods.allowedRegistries spec.jobTemplate.spec.template.spec.initContainers[0].image: ",
			"ALLOW StatefulSet team-a/db\n",
			"DENY StatefulSet team-a/cache\n  ConfigMap team-a/registries pods.allowedRegistries spec.template.spec.containers[1].image: ",
		}, nil},
		{"missing -p", []string{good}, "", 2, nil, []string{"at least one -p PATH is required"}},
		{"missing files", []string{"-p", policies}, "", 2, nil, []string{"at least one FILE"}},
		{"bad format", []string{"-p", policies, "-o", "yaml", good}, "", 2, nil, []string{`-o "yaml": must be text or json`}},
		{"unreadable input", []string{"-p", policies, filepath.Join(dir, "nope.yaml")}, "", 2, nil, []string{"nope.yaml: no such file"}},
		{"broken input", []string{"-p", policies, "-"}, "kind: Pod\n  x: [", 2, nil, []string{"<stdin>: document 1: invalid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"check"}, tt.args...), strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// TestCheckVAPStyleCEL is issue 22's allowed-registries rule, written as
// VAP users write it, through check: accepted, and the VAP's verdicts.
func TestCheckVAPStyleCEL(t *testing.T) {
	dir := t.TempDir()
	policies := writeFile(t, dir, "registries.yaml", "apiVersion: policy.example.com/v1alpha1\nkind: AdmissionPolicy\nmetadata: {name: registries}\nspec:\n"+
		indent(workload.RegistriesCELPolicy, "  "))
	pods := writeFile(t, dir, "pods.yaml", `apiVersion: v1
kind: Pod
metadata: {name: envoy}
spec:
  containers: [{name: a, image: registry.example.com/app:1}]
  initContainers: [{name: b, image: docker.io/library/envoy:v1.31.0}]
---
apiVersion: v1
kind: Pod
metadata: {name: ours}
spec:
  containers: [{name: a, image: registry.example.com/app:1}, {name: b, image: ghcr.io/acme/proxy:2}]
`)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"check", "-p", policies, pods}, strings.NewReader(""), &stdout, &stderr)
	want := "DENY Pod default/envoy\n  AdmissionPolicy registries validations.registries: denied: images not from an allowed registry: docker.io/library/envoy:v1.31.0\nALLOW Pod default/ours\n"
	if code != 1 || stdout.String() != want {
		t.Errorf("exit code %d, stdout:\n%s\nwant 1 and:\n%s\nstderr: %s", code, stdout.String(), want, stderr.String())
	}

	// A namespace's own policy looping over 300 params in a loop over them
	// is refused, as the webhook refuses it.
	square := writeFile(t, dir, "square.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: square, namespace: team-b, labels: {policy.example.com/policy: "true"}}
data:
  policy.yaml: |
    match: {kinds: [Pod]}
    params: {l: [`+strings.TrimSuffix(strings.Repeat("same, ", 300), ", ")+`]}
    validations:
    - expression: "params.l.all(x, params.l.all(y, x == y))"
`)
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"check", "-p", square, pods}, strings.NewReader(""), &stdout, &stderr)
	if want := "estimated cost 541502, with these params and whatever the object, exceeds the limit of 100000"; code != 2 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit code %d, stderr %s; want 2 and %q", code, stderr.String(), want)
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+prefix) + "\n"
}
