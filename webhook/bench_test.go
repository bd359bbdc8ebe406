package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/policy"
)

// benchCluster gives the namespace the labels the policies select on,
// from a map built once, as the informer cache holds them.
type benchCluster struct{}

var benchNamespaceLabels = map[string]string{"env": "prod", "kubernetes.io/metadata.name": "team-a"}

func (benchCluster) NamespaceLabels(string) (map[string]string, bool) {
	return benchNamespaceLabels, true
}
func (benchCluster) MyAppleQuantity(string, string) int64 { return 0 }

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

// benchPod is a Pod as a Deployment creates it, with the managed fields,
// probes, env and volumes of a real workload: its AdmissionReview is about
// 3.7 KB, the size the load targets are set for.
func benchPod() *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
	container := func(name, image string, port int32) corev1.Container {
		return corev1.Container{
			Name: name, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			},
			Resources:     corev1.ResourceRequirements{Limits: limits, Requests: requests},
			VolumeMounts:  []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app", ReadOnly: true}, {Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			LivenessProbe: probe,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7c9d8f6b5-", Namespace: "team-a",
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b5"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-12T10:04:05Z"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b5", UID: "4f0c3c1e-9a7b-4d3e-8f51-2b6a0d9c7e11",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
				FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},` +
					`"f:ownerReferences":{".":{},"k:{\"uid\":\"4f0c3c1e-9a7b-4d3e-8f51-2b6a0d9c7e11\"}":{}}},"f:spec":{"f:containers":{` +
					`"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{".":{},"f:limits":{}}}}}}`)},
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				container("web", "registry.example.com/team-a/web:1.4.2", 8080),
				container("proxy", "ghcr.io/acme/proxy@sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4", 9090),
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
			},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst,
			TerminationGracePeriodSeconds: ptr.To[int64](30), ServiceAccountName: "web",
			SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](10001), FSGroup: ptr.To[int64](10001)},
			SchedulerName:      corev1.DefaultSchedulerName,
			EnableServiceLinks: ptr.To(true), PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority),
		},
	}
}

func benchReview(b testing.TB) []byte {
	b.Helper()
	pod := benchPod()
	r := podRequest(b, admissionv1.Create, "", pod, nil)
	r.RequestKind, r.RequestResource = &podGVK, &podsGVR
	r.UserInfo.Username = "system:serviceaccount:kube-system:replicaset-controller"
	r.UserInfo.UID = "9b3f5a6e-2c1d-4e8f-a7b6-1d2c3e4f5a6b"
	r.DryRun = ptr.To(false)
	r.Options = raw(b, metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}})
	return reviewBody(b, r)
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
			h := srv.handlers[PathPods]

			rd := bytes.NewReader(body)
			req, err := http.NewRequest(http.MethodPost, PathPods, io.NopCloser(rd))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.ContentLength = int64(len(body))
			w := &benchWriter{h: http.Header{}}
			serve := func() {
				rd.Reset(body)
				w.code, w.n = 0, 0
				h.ServeHTTP(w, req)
			}

			serve()
			if w.code != 0 && w.code != http.StatusOK {
				b.Fatalf("HTTP %d", w.code)
			}
			var out admissionv1.AdmissionReview
			rec := srv.post(b, PathPods, body)
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Response.Allowed {
				b.Fatalf("bench pod not allowed: %s", rec.Body)
			}

			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				serve()
			}
		})
	}
}

// BenchmarkEvaluateOnly is the policy part alone for the same Pod, so the
// cost of the HTTP and JSON work is the difference to BenchmarkHandlePod.
func BenchmarkEvaluateOnly(b *testing.B) {
	pod := benchPod()
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
