package policy

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// The webhook's own namespace in these tests: ConfigMaps there apply
// cluster-wide.
const testPolicyNamespace = "policy-system"

// Digests for images pinned by digest.
const (
	digestA = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	digestB = "sha256:4bcdffd70da292293d059d2435c7056711fab2655f8b74f48ad0abe042b63687"
)

// mapCluster is cluster state held in maps, the way `check` feeds it from
// files: namespace labels, and MyApple quantities by namespace and name.
type mapCluster struct {
	namespaces map[string]map[string]string
	apples     map[string]map[string]int64
}

func (c mapCluster) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := c.namespaces[name]
	return l, ok
}

func (c mapCluster) NamespaceAnnotations(string) map[string]string { return nil }

func (c mapCluster) MyAppleQuantity(namespace, except string) int64 {
	var sum int64
	for name, q := range c.apples[namespace] {
		if name != except {
			sum += q
		}
	}
	return sum
}

// testCluster has team-a (prod), team-b (dev) and kube-system, each with
// the label the API server sets on every namespace.
func testCluster() mapCluster {
	return mapCluster{namespaces: map[string]map[string]string{
		"team-a":        {"kubernetes.io/metadata.name": "team-a", "env": "prod"},
		"team-b":        {"kubernetes.io/metadata.name": "team-b", "env": "dev"},
		"kube-system":   {"kubernetes.io/metadata.name": "kube-system"},
		"policy-system": {"kubernetes.io/metadata.name": "policy-system"},
	}}
}

// configMapPolicy parses and compiles a ConfigMap policy as the live cache
// does: data key policy.yaml, scope from the ConfigMap's namespace.
func configMapPolicy(t testing.TB, namespace, name, yaml string) *Policy {
	t.Helper()
	spec, err := specOf(yaml)
	if err != nil {
		t.Fatalf("parsing ConfigMap %s/%s: %v", namespace, name, err)
	}
	p, errs := Compile(Source{Kind: SourceConfigMap, Namespace: namespace, Name: name}, ConfigMapScope(namespace, testPolicyNamespace), spec)
	if len(errs) > 0 {
		t.Fatalf("compiling ConfigMap %s/%s: %v", namespace, name, ErrorText(errs))
	}
	return p
}

// admissionPolicy parses and compiles an AdmissionPolicy's spec.
func admissionPolicy(t testing.TB, name, yaml string) *Policy {
	t.Helper()
	spec, err := specOf(yaml)
	if err != nil {
		t.Fatalf("parsing AdmissionPolicy %s: %v", name, err)
	}
	p, errs := Compile(Source{Kind: SourceAdmissionPolicy, Name: name}, "", spec)
	if len(errs) > 0 {
		t.Fatalf("compiling AdmissionPolicy %s: %v", name, ErrorText(errs))
	}
	return p
}

// clusterPolicy is a cluster-wide ConfigMap policy named "p".
func clusterPolicy(t testing.TB, yaml string) *Set {
	t.Helper()
	return NewSet([]*Policy{configMapPolicy(t, testPolicyNamespace, "p", yaml)})
}

func limits() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Limits: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("500m"),
		corev1.ResourceMemory: resource.MustParse("256Mi"),
	}}
}

// compliantPod breaks no rule of any test policy: tests change one thing
// in it and expect exactly the violations that change causes.
func compliantPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Labels: map[string]string{"app": "web", "team": "a"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			InitContainers: []corev1.Container{
				{Name: "migrate", Image: "registry.example.com/team-a/migrate:2.0@" + digestA, Resources: limits()},
			},
			Containers: []corev1.Container{
				{Name: "web", Image: "registry.example.com/team-a/web:1.4.2@" + digestB, Resources: limits()},
			},
		},
	}
}

func podRequest(pod *corev1.Pod) *Request {
	return &Request{Kind: KindPod, Operation: Create, Namespace: pod.Namespace, Pod: leanPod(pod)}
}

func podUpdate(old, pod *corev1.Pod) *Request {
	return &Request{Kind: KindPod, Operation: Update, Namespace: pod.Namespace, Pod: leanPod(pod), OldPod: leanPod(old)}
}

// leanPod is the part of a Pod rules read, as a decoder fills it from the
// Pod's JSON: tests write whole corev1 Pods, the engine reads lean ones.
func leanPod(pod *corev1.Pod) *Pod {
	if pod == nil {
		return nil
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		panic(err)
	}
	var lean Pod
	if err := json.Unmarshal(raw, &lean); err != nil {
		panic(err)
	}
	return &lean
}

// specOf reads a policy spec for a test. Parsing proper, strict and with
// field paths, is package carrier's; these tests are about what a spec
// means once read.
func specOf(yaml string) (*v1alpha1.PolicySpec, error) {
	var spec v1alpha1.PolicySpec
	if err := sigsyaml.UnmarshalStrict([]byte(yaml), &spec); err != nil {
		return nil, err
	}
	return &spec, nil
}

func apple(namespace, name, color, size string, quantity int64) *MyApple {
	a := &MyApple{Spec: MyAppleSpec{Color: color, Size: size, Quantity: quantity}}
	a.Namespace, a.Name = namespace, name
	return a
}

func appleRequest(a *MyApple) *Request {
	return &Request{Kind: KindMyApple, Operation: Create, Namespace: a.Namespace, MyApple: a}
}

func appleUpdate(old, a *MyApple) *Request {
	return &Request{Kind: KindMyApple, Operation: Update, Namespace: a.Namespace, MyApple: a, OldMyApple: old}
}

// want is an expected violation: rule and field exactly, message by a part
// of it that says what matters.
type want struct {
	rule, field, msg string
}

// checkViolations asserts the violations, in order.
func checkViolations(t *testing.T, got []Violation, wants ...want) {
	t.Helper()
	ok := len(got) == len(wants)
	for i := 0; ok && i < len(wants); i++ {
		ok = got[i].Rule == wants[i].rule && got[i].Field == wants[i].field && strings.Contains(got[i].Message, wants[i].msg)
	}
	if !ok {
		var b strings.Builder
		for i := range got {
			b.WriteString("\n  " + got[i].String())
		}
		var w strings.Builder
		for _, x := range wants {
			w.WriteString("\n  " + x.rule + " " + x.field + ": ..." + x.msg + "...")
		}
		t.Errorf("violations:%s\nwant:%s", b.String(), w.String())
	}
}
