package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restfake "k8s.io/client-go/rest/fake"

	"github.com/policy-webhook/policy-webhook/audit"
)

func existingPod(t *testing.T, ns, name, image string) corev1.Pod {
	t.Helper()
	p := goodPod()
	p.Namespace, p.Name = ns, name
	withImage(p, image)
	return *p
}

// listClient answers the list requests of an audit.Lister from pods and
// deployments, in the cluster and by namespace, as the API server does;
// other kinds are not served.
func listClient(t *testing.T, pods []corev1.Pod, deployments []appsv1.Deployment) rest.Interface {
	t.Helper()
	return &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client: restfake.CreateHTTPClient(func(req *http.Request) (*http.Response, error) {
			var list any
			for _, l := range []struct {
				prefix, resource string
				list             func(ns string) any
			}{
				{"/api/v1/", "pods", func(ns string) any {
					list := corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
					for _, p := range pods {
						if ns == "" || p.Namespace == ns {
							list.Items = append(list.Items, p)
						}
					}
					return list
				}},
				{"/apis/apps/v1/", "deployments", func(ns string) any {
					list := appsv1.DeploymentList{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DeploymentList"}}
					for _, d := range deployments {
						if ns == "" || d.Namespace == ns {
							list.Items = append(list.Items, d)
						}
					}
					return list
				}},
			} {
				rest, ok := strings.CutPrefix(req.URL.Path, l.prefix)
				if !ok {
					continue
				}
				if rest == l.resource {
					list = l.list("")
				} else if rest, ok = strings.CutPrefix(rest, "namespaces/"); ok {
					if ns, ok := strings.CutSuffix(rest, "/"+l.resource); ok && !strings.Contains(ns, "/") {
						list = l.list(ns)
					}
				}
			}
			if list == nil {
				return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
			}
			body, err := json.Marshal(list)
			if err != nil {
				return nil, err
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(body))}, nil
		}),
	}
}

// Applying a policy warns what it would do to the objects that exist.
func TestImpactWarnings(t *testing.T) {
	pods := []corev1.Pod{existingPod(t, "team-a", "ok", "registry.example.com/a:1")}
	for _, name := range []string{"bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6"} {
		pods = append(pods, existingPod(t, "team-a", name, "evil.io/x:1"))
	}
	pods = append(pods, existingPod(t, "team-b", "other", "evil.io/x:1"))
	bad := withImage(goodPod(), "evil.io/x:1")
	deployments := []appsv1.Deployment{{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a"},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: bad.Labels}, Spec: bad.Spec}},
	}}
	lister := &audit.Lister{Client: listClient(t, pods, deployments)}
	im := &Impact{lister: lister, budget: time.Minute}

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
			"this policy would deny 1 Deployment and 6 Pods among existing objects: Pod team-a/bad-1 (pods.allowedRegistries), Pod team-a/bad-2 (pods.allowedRegistries), "+
				"Pod team-a/bad-3 (pods.allowedRegistries), Pod team-a/bad-4 (pods.allowedRegistries), Pod team-a/bad-5 (pods.allowedRegistries) and 2 more")
	})
	t.Run("bare Pods only", func(t *testing.T) {
		check(t, "team-a", "match:\n  podControllers: []\npods:\n  allowedRegistries: [registry.example.com/]\n",
			"this policy would deny 6 Pods among existing objects: Pod team-a/bad-1 (pods.allowedRegistries), Pod team-a/bad-2 (pods.allowedRegistries), "+
				"Pod team-a/bad-3 (pods.allowedRegistries), Pod team-a/bad-4 (pods.allowedRegistries), Pod team-a/bad-5 (pods.allowedRegistries) and 1 more")
	})
	t.Run("cluster-wide warn policy", func(t *testing.T) {
		check(t, testPolicyNamespace, "enforcement: Warn\nmatch:\n  excludedNamespaces: [team-a]\npods:\n  allowedRegistries: [registry.example.com/]\n",
			"this policy would warn on 1 Pod among existing objects: Pod team-b/other (pods.allowedRegistries)")
	})
	t.Run("audit policy that breaks nothing", func(t *testing.T) {
		check(t, testPolicyNamespace, "enforcement: Audit\nmyApples:\n  allowedColors: [red]\n")
	})
	t.Run("out of time", func(t *testing.T) {
		im := &Impact{lister: lister, budget: 0}
		got := im.warnings(context.Background(), compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "p", "pods:\n  forbidPrivileged: true\n"}).Policies()[0])
		if len(got) != 1 || !strings.Contains(got[0], "checked only 0 existing objects against this policy: ") {
			t.Errorf("warnings %q", got)
		}
	})
}
