package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
	"github.com/policy-webhook/policy-webhook/review"
)

// benchCluster gives the namespace the labels the policies select on,
// from a map built once, as the informer cache holds them.
type benchCluster struct{}

var benchNamespaceLabels = map[string]string{"env": "prod", "kubernetes.io/metadata.name": "team-a"}

func (benchCluster) NamespaceLabels(string) (map[string]string, bool) {
	return benchNamespaceLabels, true
}
func (benchCluster) MyAppleQuantity(string, string) int64                       { return 0 }
func (benchCluster) NamespaceAnnotations(string) map[string]string              { return nil }
func (benchCluster) MyApples(string) cel.AppleList                              { return cel.AppleList{} }
func (benchCluster) MyAppleTally(string, cel.GroupBy, string, string) cel.Tally { return cel.Tally{} }
func (benchCluster) MyAppleGroups(string, cel.GroupBy) []string                 { return nil }

// benchPolicyYAML is the policy platform teams write; every third one
// also selects namespaces by label.
func benchPolicyYAML(i int) string {
	y := `
pods:
  allowedRegistries: [registry.example.com/, ghcr.io/acme/]
  disallowedTags: [latest]
  requiredLabels: [app]
  forbidPrivileged: true
  forbidHostNamespaces: true
  forbidHostPath: true
  requireRunAsNonRoot: true
  requireResourceLimits: [cpu, memory]
`
	if i%3 == 0 {
		y += "match:\n  namespaceSelector:\n    matchLabels: {env: prod}\n"
	}
	return y
}

// benchPolicies are n policy ConfigMaps, half cluster-wide and half in the
// Pod's namespace.
func benchPolicies(n int) []testPolicy {
	ps := make([]testPolicy, n)
	for i := range ps {
		ns := testPolicyNamespace
		if i%2 == 1 {
			ns = "team-a"
		}
		ps[i] = testPolicy{ns, fmt.Sprintf("policy-%d", i), benchPolicyYAML(i)}
	}
	return ps
}

// benchReview is the AdmissionReview of a Pod as a Deployment creates it,
// about 3.7 KB: the one the load harness sends too, so the in-process and
// load figures measure the same review.
func benchReview(b testing.TB) []byte {
	b.Helper()
	body, err := workload.CreateReview(workload.DeploymentPod(false, 2), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchWriter is a ResponseWriter that keeps nothing but the status, so
// the benchmark measures the handler rather than a recorder.
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkHandlePod is one Pod admission through the whole handler, in
// process: read and decode the review, judge it against n policies,
// encode the answer. Images are in the cache after the first request, as
// in a running webhook.
func BenchmarkHandlePod(b *testing.B) {
	body := benchReview(b)
	b.Logf("AdmissionReview: %d bytes", len(body))
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			judge := &setJudge{set: compileSet(b, testPolicyNamespace, benchPolicies(n)...), synced: true, cluster: benchCluster{}}
			srv := newTestServer(b, judge, false)
			serve := benchServe(b, srv.handlers[PathPods], body)
			if code := serve(); code != 0 && code != http.StatusOK {
				b.Fatalf("HTTP %d", code)
			}
			var out admissionv1.AdmissionReview
			rec := srv.post(b, PathPods, body)
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed {
				b.Fatalf("bench pod not allowed: %s", rec.Body)
			}

			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// benchServe returns a function that serves body to h once, reusing one
// request and one writer that keeps nothing, so that a benchmark measures
// the handler rather than a recorder; it returns the status written.
func benchServe(b *testing.B, h http.Handler, body []byte) func() int {
	b.Helper()
	rd := bytes.NewReader(body)
	req, err := http.NewRequest(http.MethodPost, PathPods, io.NopCloser(rd))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	w := &benchWriter{h: http.Header{}}
	return func() int {
		rd.Reset(body)
		w.code, w.n = 0, 0
		h.ServeHTTP(w, req)
		return w.code
	}
}

// BenchmarkHandlePodCEL is BenchmarkHandlePod with 10 built-in policies,
// without and with a policy of 5 CEL validations: what CEL adds to an
// admission (decoding the object for CEL, evaluating).
func BenchmarkHandlePodCEL(b *testing.B) {
	body := benchReview(b)
	for _, withCEL := range []bool{false, true} {
		name, ps := "builtin=10,cel=0", benchPolicies(10)
		if withCEL {
			name, ps = "builtin=10,cel=5", append(ps, testPolicy{testPolicyNamespace, "cel", workload.CELPolicy})
		}
		b.Run(name, func(b *testing.B) {
			srv := newTestServer(b, &setJudge{set: compileSet(b, testPolicyNamespace, ps...), synced: true, cluster: benchCluster{}}, false)
			var out admissionv1.AdmissionReview
			rec := srv.post(b, PathPods, body)
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed {
				b.Fatalf("bench pod not allowed: %s", rec.Body)
			}
			if withCEL && !strings.Contains(out.Response.AuditAnnotations["policies"], "ConfigMap "+testPolicyNamespace+"/cel") {
				b.Fatalf("the CEL policy did not judge the Pod: %q", out.Response.AuditAnnotations)
			}
			serve := benchServe(b, srv.handlers[PathPods], body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// BenchmarkHandlePodController is a Deployment admission against 10
// policies beside a Pod admission of the same template: what judging the
// controller by its template adds (the Deployment's own fields to decode).
func BenchmarkHandlePodController(b *testing.B) {
	pod := workload.DeploymentPod(false, 2)
	podBody := benchReview(b)
	deployBody, err := workload.CreateDeploymentReview(workload.Deployment("web", pod, 3), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{{"Pod", PathPods, podBody}, {"Deployment", PathPodControllers, deployBody}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := newTestServer(b, &setJudge{set: compileSet(b, testPolicyNamespace, benchPolicies(10)...), synced: true, cluster: benchCluster{}}, false)
			var out admissionv1.AdmissionReview
			rec := srv.post(b, tc.path, tc.body)
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed || !strings.Contains(out.Response.AuditAnnotations["policies"], "policy-9") {
				b.Fatalf("bench %s not allowed, or not judged: %s", tc.name, rec.Body)
			}
			serve := benchServe(b, srv.handlers[tc.path], tc.body)
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// BenchmarkEvaluateOnly is the policy part alone for the same Pod, so the
// cost of the HTTP and JSON work is the difference to BenchmarkHandlePod.
func BenchmarkEvaluateOnly(b *testing.B) {
	raw, err := json.Marshal(workload.DeploymentPod(false, 2))
	if err != nil {
		b.Fatal(err)
	}
	pod, _, err := review.DecodeObject(policy.KindPod, raw)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			set := compileSet(b, testPolicyNamespace, benchPolicies(n)...)
			req := &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "team-a", Pod: pod}
			if d := set.Evaluate(req, benchCluster{}); !d.Allowed {
				b.Fatalf("denied: %s", d.Message())
			}
			b.ReportAllocs()
			for b.Loop() {
				set.Evaluate(req, benchCluster{})
			}
		})
	}
}

// BenchmarkHandlePodExceptions is BenchmarkHandlePod's admission against 10
// policies, without and with 10 PolicyExceptions in force (5 in the Pod's
// namespace, 5 in the policy namespace), each naming two rules of one of
// the policies and narrowed by kind, name and labels: what exceptions cost
// an admission. With denied, the Pod breaks allowedRegistries and every
// policy's violation is lifted: what lifting costs.
func BenchmarkHandlePodExceptions(b *testing.B) {
	expires := time.Now().Add(24 * time.Hour)
	exceptions := make([]*policy.Exception, 10)
	for i := range exceptions {
		ns := testPolicyNamespace
		if i%2 == 1 {
			ns = workload.Namespace
		}
		policyNS := testPolicyNamespace
		if i%2 == 1 {
			policyNS = "team-a"
		}
		spec := &v1alpha1.PolicyExceptionSpec{
			Reason:    "bench",
			ExpiresAt: metav1.NewTime(expires),
			Exceptions: []v1alpha1.ExceptionEntry{{
				Policy: v1alpha1.PolicyReference{Kind: v1alpha1.PolicyKindConfigMap, Namespace: policyNS, Name: fmt.Sprintf("policy-%d", i)},
				Rules:  []string{"pods.allowedRegistries", "pods.requireRunAsNonRoot"},
			}},
			Match: &v1alpha1.ExceptionMatch{Kinds: []string{"Pod", "Deployment"}, Names: []string{"web-*"},
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		}
		x, errs := policy.CompileException(ns, fmt.Sprintf("exception-%d", i), "1", spec, testPolicyNamespace)
		if len(errs) > 0 {
			b.Fatal(errs.ToAggregate())
		}
		exceptions[i] = x
	}
	for _, denied := range []bool{false, true} {
		body, err := workload.CreateReview(workload.DeploymentPod(denied, 2), "bench")
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{0, 10} {
			if denied && n == 0 {
				continue // refused: another path
			}
			b.Run(fmt.Sprintf("lifting=%v/exceptions=%d", denied, n), func(b *testing.B) {
				set := compileSet(b, testPolicyNamespace, benchPolicies(10)...)
				if n > 0 {
					set = set.Excepting(policy.NewExceptionSet(exceptions[:n]))
				}
				srv := newTestServer(b, &setJudge{set: set, synced: true, cluster: benchCluster{}}, false)
				var out admissionv1.AdmissionReview
				rec := srv.post(b, PathPods, body)
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed {
					b.Fatalf("bench pod not allowed: %s", rec.Body)
				}
				if denied && !strings.Contains(out.Response.AuditAnnotations["exceptions"], "exception-") {
					b.Fatalf("no exception lifted the violations: %q", out.Response.AuditAnnotations)
				}
				serve := benchServe(b, srv.handlers[PathPods], body)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					serve()
				}
			})
		}
	}
}
