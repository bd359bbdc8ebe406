package cel

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// testCompiler is built once for the package's tests: building the
// environments is what NewCompiler costs, and every test reads it only.
var testCompiler = sync.OnceValues(NewCompiler)

func compiler(tb testing.TB) *Compiler {
	tb.Helper()
	c, err := testCompiler()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func mustCompile(tb testing.TB, kind string, spec *v1alpha1.PolicySpec, params any) *Program {
	tb.Helper()
	p, errs := compiler(tb).Compile(kind, spec, params)
	if len(errs) > 0 {
		tb.Fatalf("compile: %v", errs.ToAggregate())
	}
	if p == nil {
		tb.Fatal("compile: no program")
	}
	return p
}

func validations(exprs ...string) *v1alpha1.PolicySpec {
	spec := &v1alpha1.PolicySpec{}
	for _, e := range exprs {
		spec.Validations = append(spec.Validations, v1alpha1.Validation{Expression: e})
	}
	return spec
}

// testPod is a Deployment's Pod of the usual shape, about 3.7 KB as JSON
// with n containers of which the first has a readinessProbe.
func testPod(n int) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "web-7d4b9c8f6d-x2x9q",
			Namespace: "shop",
			Labels:    map[string]string{"app": "web", "team": "payments", "pod-template-hash": "7d4b9c8f6d"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-01T10:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c8f6d", UID: "6f1c2b2e-1111-4a4a-9c9c-000000000001"}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}},
			}}},
		},
	}
	for i := range n {
		c := corev1.Container{
			Name:  fmt.Sprintf("app-%d", i),
			Image: "registry.example.com/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Args:  []string{"--listen=:8080", "--log-level=info"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "production"}},
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
			VolumeMounts:    []corev1.VolumeMount{{Name: "config", MountPath: "/etc/web"}},
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true)},
		}
		if i == 0 {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}}
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	return pod
}

func ptr[T any](v T) *T { return &v }

// unstructured is obj as the API server's JSON decoding gives it to
// expressions (int64 integers, quantities as strings).
func unstructured(tb testing.TB, obj any) map[string]any {
	tb.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func podObject(tb testing.TB, containers int) map[string]any {
	return unstructured(tb, testPod(containers))
}

func appleObject(name, color, size string, quantity int64) map[string]any {
	return map[string]any{
		"apiVersion": "stable.example.com/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"name": name, "namespace": "orchard", "labels": map[string]any{"team": "fruit"}},
		"spec":       map[string]any{"color": color, "size": size, "quantity": quantity},
	}
}

// fakeCluster answers MyApples from a fixed list and counts the calls.
type fakeCluster struct {
	apples map[string][]Apple
	calls  int
}

func (f *fakeCluster) MyApples(namespace string) []Apple {
	f.calls++
	return f.apples[namespace]
}

// evaluate judges in as the only policy of an admission.
func (p *Program) evaluate(in *Input) Result {
	b := NewBudget(context.Background(), p.Limits())
	defer b.Stop()
	return p.Evaluate(b, in)
}
