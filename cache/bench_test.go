package cache

import (
	"fmt"
	"testing"

	"github.com/policy-webhook/policy-webhook/policy/cel"

	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

// The request path: both reads must stay cheap whatever the cluster holds.

func BenchmarkMyAppleQuantity(b *testing.B) {
	ix := newAppleIndex()
	for i := range 10_000 {
		ix.set(&apple{namespace: fmt.Sprintf("team-%d", i%20), name: fmt.Sprintf("apple-%d", i), quantity: 3})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ix.tally("team-7", cel.ByNamespace, "", "apple-7").Quantity == 0 {
				b.Fatal("empty namespace")
			}
		}
	})
}

// BenchmarkMyApples is cluster.myApples on an unchanged namespace of 500
// MyApples: the shared list, no allocation.
func BenchmarkMyApples(b *testing.B) {
	ix := newAppleIndex()
	for i := range 10_000 {
		ix.set(&apple{namespace: fmt.Sprintf("team-%d", i%20), name: fmt.Sprintf("apple-%d", i), color: "red", size: "small", quantity: 3})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ix.list("team-7").Len() != 500 {
				b.Fatal("wrong list")
			}
		}
	})
}

func BenchmarkCacheEvaluatePod(b *testing.B) {
	f := newFixture(b, fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy), fakecluster.PolicyConfigMap(fakecluster.PolicyNamespace, "global", fakecluster.RegistryPolicy))
	f.start()
	req := fakecluster.PodRequest("team-a", "registry.example.com/app:1.0")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d := f.cache.Evaluate(req); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
}
