package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// TestCheckCluster judges what exists on a real API server: namespace
// labels and MyApple quantities come from the cluster, lists are paged.
func TestCheckCluster(t *testing.T) {
	ctx := context.Background()
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: testr.New(t)})
	for ns, labels := range map[string]map[string]string{"prod": {"env": "prod"}, "dev": {"env": "dev"}} {
		if err := cp.EnsureNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ ns, name, image string }{
		{"prod", "bad", "docker.io/nginx:1"},
		{"prod", "good", "registry.example.com/app:1"},
		{"dev", "elsewhere", "docker.io/nginx:1"}, // not selected by the namespaceSelector
	} {
		if _, err := cp.Client.CoreV1().Pods(p.ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: p.image}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	// Two MyApples of 6 each: each alone is within the quota of 10, the
	// namespace's total is not.
	for _, name := range []string{"a", "b"} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "stable.example.com/v1", "kind": "MyApple",
			"metadata": map[string]any{"name": name, "namespace": "dev"},
			"spec":     map[string]any{"color": "red", "size": "small", "quantity": int64(6)},
		}}
		if _, err := dyn.Resource(cache.MyAppleResource()).Namespace("dev").Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	writeFile(t, dir, "policies/p.yaml", `apiVersion: policy.example.com/v1alpha1
kind: AdmissionPolicy
metadata: {name: prod-registries}
spec:
  match: {namespaceSelector: {matchLabels: {env: prod}}}
  pods: {allowedRegistries: [registry.example.com/]}
---
apiVersion: policy.example.com/v1alpha1
kind: AdmissionPolicy
metadata: {name: quota}
spec:
  enforcement: Warn
  myApples: {maxTotalQuantityPerNamespace: 10}
`)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeConfig(kubeconfig); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"check", "-p", filepath.Join(dir, "policies"), "-o", "json", "--cluster", "--kubeconfig", kubeconfig},
		strings.NewReader(""), &stdout, &stderr)
	if code != exitDenied {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitDenied, stderr.String())
	}
	var out struct{ Results []check.Result }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v in %s", err, stdout.String())
	}
	got := map[string]string{}
	for _, r := range out.Results {
		got[r.Kind+" "+r.Namespace+"/"+r.Name] = r.Verdict()
	}
	want := map[string]string{"Pod prod/bad": "DENY", "MyApple dev/a": "WARN", "MyApple dev/b": "WARN"}
	if len(got) != len(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if !strings.Contains(stderr.String(), "judged 3 Pods and 2 MyApples") {
		t.Errorf("stderr %q does not count what was judged", stderr.String())
	}

	// Without the Deny policy every object is admitted: exit 0.
	writeFile(t, dir, "quota-only/p.yaml", "apiVersion: policy.example.com/v1alpha1\nkind: AdmissionPolicy\nmetadata: {name: quota}\nspec:\n  enforcement: Warn\n  myApples: {maxTotalQuantityPerNamespace: 10}\n")
	stdout.Reset()
	stderr.Reset()
	if code := run(ctx, []string{"check", "-p", filepath.Join(dir, "quota-only"), "--cluster", "--kubeconfig", kubeconfig},
		strings.NewReader(""), &stdout, &stderr); code != exitAdmitted {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "WARN MyApple dev/a") {
		t.Errorf("text output %q", stdout.String())
	}

	// Usage: files with --cluster, a kubeconfig that does not exist.
	if code := run(ctx, []string{"check", "-p", dir, "--cluster", "x.yaml"}, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Errorf("--cluster with a FILE: exit %d, want 2", code)
	}
	if code := run(ctx, []string{"check", "-p", filepath.Join(dir, "quota-only"), "--cluster", "--kubeconfig", filepath.Join(dir, "none")},
		strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Errorf("a missing kubeconfig: exit %d, want 2", code)
	}
}
