package webhook

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/policy-webhook/policy-webhook/policy"
)

func existingPod(t *testing.T, ns, name, image string) runtime.Object {
	t.Helper()
	p := goodPod()
	p.Namespace, p.Name = ns, name
	withImage(p, image)
	return p
}

// Applying a policy warns what it would do to the objects that exist.
func TestImpactWarnings(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	objs := []runtime.Object{existingPod(t, "team-a", "ok", "registry.example.com/a:1")}
	for _, name := range []string{"bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6"} {
		objs = append(objs, existingPod(t, "team-a", name, "evil.io/x:1"))
	}
	objs = append(objs, existingPod(t, "team-b", "other", "evil.io/x:1"))
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		{Group: policy.GroupMyApple, Version: "v1", Resource: "myapples"}: "MyAppleList",
	}, objs...)
	im := &impact{dynamic: dyn, budget: time.Minute}

	check := func(t *testing.T, ns, yaml string, want ...string) {
		t.Helper()
		srv := newTestServer(t, &setJudge{}, false)
		h := srv.handlers[PathPolicies].(*reviewHandler).handler.(*policyHandler)
		h.impact = im
		cm := labelledConfigMap(ns, "p", true, map[string]string{"policy.yaml": yaml})
		resp := srv.review(t, PathPolicies, configMapRequest(t, admissionv1.Create, cm))
		if !resp.Allowed || len(resp.Warnings) != len(want) {
			t.Fatalf("allowed %v, warnings %q, want %q", resp.Allowed, resp.Warnings, want)
		}
		for i := range want {
			if resp.Warnings[i] != want[i] {
				t.Errorf("warning\n%s\nwant\n%s", resp.Warnings[i], want[i])
			}
		}
	}
	t.Run("namespace policy", func(t *testing.T) {
		check(t, "team-a", "pods:\n  allowedRegistries: [registry.example.com/]\n",
			"this policy would deny 6 existing objects: Pod team-a/bad-1 (pods.allowedRegistries), Pod team-a/bad-2 (pods.allowedRegistries), "+
				"Pod team-a/bad-3 (pods.allowedRegistries), Pod team-a/bad-4 (pods.allowedRegistries), Pod team-a/bad-5 (pods.allowedRegistries) and 1 more")
	})
	t.Run("cluster-wide warn policy", func(t *testing.T) {
		check(t, testPolicyNamespace, "enforcement: Warn\nmatch:\n  excludedNamespaces: [team-a]\npods:\n  allowedRegistries: [registry.example.com/]\n",
			"this policy would warn on 1 existing object: Pod team-b/other (pods.allowedRegistries)")
	})
	t.Run("audit policy that breaks nothing", func(t *testing.T) {
		check(t, testPolicyNamespace, "enforcement: Audit\nmyApples:\n  allowedColors: [red]\n")
	})
	t.Run("out of time", func(t *testing.T) {
		im := &impact{dynamic: dyn, budget: 0}
		got := im.warnings(context.Background(), compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "p", "pods:\n  forbidPrivileged: true\n"}).Policies()[0])
		if len(got) != 1 || !strings.Contains(got[0], "checked only 0 existing objects against this policy: ") {
			t.Errorf("warnings %q", got)
		}
	})
}
