package policy

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// benchPolicies compiles n policies in the shape platform teams write:
// half cluster-wide, half scoped to the request's namespace, each with the
// registry, tag and pod-security rules, and a namespace selector on some.
func benchPolicies(b *testing.B, n int, opts ...SetOption) *Set {
	b.Helper()
	ps := make([]*Policy, 0, n)
	for i := 0; i < n; i++ {
		spec := &v1alpha1.PolicySpec{
			Pods: &v1alpha1.PodRules{
				AllowedRegistries:     []string{"registry.example.com/", "ghcr.io/acme/"},
				DisallowedTags:        []string{"latest"},
				RequiredLabels:        []string{"app"},
				ForbidPrivileged:      true,
				ForbidHostNamespaces:  true,
				ForbidHostPath:        true,
				RequireRunAsNonRoot:   true,
				RequireResourceLimits: []string{"cpu", "memory"},
			},
		}
		if i%3 == 0 {
			spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}
		scope, ns := "", "policy-system"
		if i%2 == 1 {
			scope, ns = "team-a", "team-a"
		}
		p, err := Compile(Source{Kind: SourceConfigMap, Namespace: ns, Name: fmt.Sprintf("p%d", i)}, scope, spec)
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	return NewSet(ps, opts...)
}

func benchPod() *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{
				{Name: "web", Image: "registry.example.com/team-a/web:1.4.2", Resources: corev1.ResourceRequirements{Limits: limits}},
				{Name: "proxy", Image: "ghcr.io/acme/proxy@sha256:" + "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4", Resources: corev1.ResourceRequirements{Limits: limits}},
			},
		},
	}
}

type benchCluster struct{}

func (benchCluster) NamespaceLabels(string) (map[string]string, bool) {
	return map[string]string{"env": "prod", "kubernetes.io/metadata.name": "team-a"}, true
}
func (benchCluster) MyAppleQuantity(string, string) int64          { return 0 }
func (benchCluster) NamespaceAnnotations(string) map[string]string { return nil }

// BenchmarkEvaluatePod is one admission of an already decoded 2-container
// Pod: policies are compiled before the timer starts, and images come from
// the shared cache, as in the webhook once it has seen an image.
func BenchmarkEvaluatePod(b *testing.B) {
	benchmarkEvaluatePod(b, WithImageCache(NewImageCache(1024)))
}

// BenchmarkEvaluatePodUncachedImages parses both images on every request:
// the cost of the first Pod with images the webhook has not seen.
func BenchmarkEvaluatePodUncachedImages(b *testing.B) {
	benchmarkEvaluatePod(b)
}

func benchmarkEvaluatePod(b *testing.B, opts ...SetOption) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			set := benchPolicies(b, n, opts...)
			req := &Request{Kind: KindPod, Operation: Create, Namespace: "team-a", Pod: leanPod(benchPod())}
			var c benchCluster
			if d := set.Evaluate(req, c); !d.Allowed {
				b.Fatalf("bench pod denied: %s", d.Message())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d := set.Evaluate(req, c)
				if !d.Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}
