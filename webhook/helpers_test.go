package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// setJudge is a Judge over a real compiled policy.Set, standing in for the
// informer cache in handler unit tests.
type setJudge struct {
	set     *policy.Set
	synced  bool
	cluster policy.Cluster
}

func (j *setJudge) HasSynced() bool                            { return j.synced }
func (j *setJudge) Evaluate(r *policy.Request) policy.Decision { return j.set.Evaluate(r, j.cluster) }

// testPolicy is one policy ConfigMap: where it lives and its policy.yaml.
type testPolicy struct {
	namespace, name, yaml string
}

func compileSet(t testing.TB, policyNamespace string, ps ...testPolicy) *policy.Set {
	t.Helper()
	var compiled []*policy.Policy
	compiler := carrier.New()
	for _, p := range ps {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind(policy.SourceConfigMap)
		u.SetNamespace(p.namespace)
		u.SetName(p.name)
		u.SetResourceVersion(strconv.Itoa(100 + len(compiled)))
		u.SetLabels(map[string]string{policy.PolicyLabel: "true"})
		if err := unstructured.SetNestedField(u.Object, p.yaml, "data", policy.ConfigMapDataKey); err != nil {
			t.Fatal(err)
		}
		c, err := compiler.Compile(u, policyNamespace)
		if err != nil {
			t.Fatalf("policy %s/%s: %v", p.namespace, p.name, err)
		}
		compiled = append(compiled, c)
	}
	return policy.NewSet(compiled, policy.WithImageCache(policy.NewImageCache(128)))
}

// logSink collects log lines for assertions.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (s *logSink) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

type testServer struct {
	handlers map[string]http.Handler
	metrics  *Metrics
	reg      *prometheus.Registry
	logs     *logSink
}

func newTestServer(t testing.TB, judge Judge, failOpen bool) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	return &testServer{handlers: Handlers(judge, judge, nil, nil, carrier.New(), testPolicyNamespace, failOpen, m, logs.logger()), metrics: m, reg: reg, logs: logs}
}

// post sends body to path and returns the recorded response.
func (s *testServer) post(t testing.TB, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.handlers[path].ServeHTTP(rec, req)
	return rec
}

// review sends an AdmissionRequest to path and decodes the response,
// checking the envelope every answer must have.
func (s *testServer) review(t testing.TB, path string, r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := s.post(t, path, reviewBody(t, r))
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decoding response %s: %v", rec.Body, err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Fatalf("response envelope %s/%s", out.APIVersion, out.Kind)
	}
	if out.Response == nil {
		t.Fatalf("no response in %s", rec.Body)
	}
	if out.Response.UID != r.UID {
		t.Fatalf("response uid %q, want %q", out.Response.UID, r.UID)
	}
	return out.Response
}

func reviewBody(t testing.TB, r *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  r,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func raw(t testing.TB, obj any) runtime.RawExtension {
	t.Helper()
	if obj == nil {
		return runtime.RawExtension{}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: b}
}

var uidSeq struct {
	sync.Mutex
	n int
}

func nextUID() types.UID {
	uidSeq.Lock()
	defer uidSeq.Unlock()
	uidSeq.n++
	return types.UID(fmt.Sprintf("0b5a1c2e-0000-4000-8000-%012d", uidSeq.n))
}

var (
	podsGVR     = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	podGVK      = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	myApplesGVR = metav1.GroupVersionResource{Group: "stable.example.com", Version: "v1", Resource: "myapples"}
	myAppleGVK  = metav1.GroupVersionKind{Group: "stable.example.com", Version: "v1", Kind: "MyApple"}
	cmGVR       = metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	cmGVK       = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	apGVR       = metav1.GroupVersionResource{Group: "policy.example.com", Version: "v1alpha1", Resource: "admissionpolicies"}
	apGVK       = metav1.GroupVersionKind{Group: "policy.example.com", Version: "v1alpha1", Kind: "AdmissionPolicy"}
)

func podRequest(t testing.TB, op admissionv1.Operation, subResource string, pod, old *corev1.Pod) *admissionv1.AdmissionRequest {
	t.Helper()
	r := &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: podGVK, Resource: podsGVR, SubResource: subResource,
		Name: pod.Name, Namespace: pod.Namespace, Operation: op,
		UserInfo: authUser("alice"),
		Object:   raw(t, pod),
	}
	if old != nil {
		r.OldObject = raw(t, old)
	}
	return r
}

// deploymentRequest is the admission of a Deployment named web whose
// template is pod (old's on UPDATE).
func deploymentRequest(t testing.TB, op admissionv1.Operation, pod, old *corev1.Pod) *admissionv1.AdmissionRequest {
	t.Helper()
	deployment := func(p *corev1.Pod) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: p.Namespace},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: p.Labels}, Spec: p.Spec,
			}},
		}
	}
	r := &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource: metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		Name:     "web", Namespace: pod.Namespace, Operation: op,
		UserInfo: authUser("alice"),
		Object:   raw(t, deployment(pod)),
	}
	if old != nil {
		r.OldObject = raw(t, deployment(old))
	}
	return r
}

func appleRequest(t testing.TB, op admissionv1.Operation, apple, old *policy.MyApple) *admissionv1.AdmissionRequest {
	t.Helper()
	r := &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: myAppleGVK, Resource: myApplesGVR,
		Name: apple.Name, Namespace: apple.Namespace, Operation: op,
		UserInfo: authUser("bob"),
		Object:   raw(t, apple),
	}
	if old != nil {
		r.OldObject = raw(t, old)
	}
	return r
}

func authUser(name string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: name, Groups: []string{"system:authenticated"}}
}
