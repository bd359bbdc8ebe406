package cache

import (
	"fmt"
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	runtimeobj "k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/policy"
)

// fullMyApple is a MyApple as the API server sends it after `kubectl
// apply`: managedFields, the last-applied annotation and all.
func fullMyApple(namespace, name string, i int) map[string]any {
	lastApplied := fmt.Sprintf(`{"apiVersion":"stable.example.com/v1","kind":"MyApple","metadata":{"annotations":{},"labels":{"app":"orchard"},"name":%q,"namespace":%q},"spec":{"color":"red","quantity":%d,"size":"small"}}`, name, namespace, i%10+1)
	return map[string]any{
		"apiVersion": policy.GroupMyApple + "/v1",
		"kind":       "MyApple",
		"metadata": map[string]any{
			"name":              name,
			"namespace":         namespace,
			"uid":               fmt.Sprintf("6f1c2a4e-0b7d-4c1e-9a3f-%012d", i),
			"resourceVersion":   fmt.Sprintf("%d", 100000+i),
			"generation":        int64(1),
			"creationTimestamp": "2025-01-01T00:00:00Z",
			"labels":            map[string]any{"app": "orchard"},
			"annotations":       map[string]any{"kubectl.kubernetes.io/last-applied-configuration": lastApplied},
			"managedFields": []any{map[string]any{
				"apiVersion": policy.GroupMyApple + "/v1",
				"fieldsType": "FieldsV1",
				"manager":    "kubectl-client-side-apply",
				"operation":  "Update",
				"time":       "2025-01-01T00:00:00Z",
				"fieldsV1": map[string]any{
					"f:metadata": map[string]any{
						"f:annotations": map[string]any{".": map[string]any{}, "f:kubectl.kubernetes.io/last-applied-configuration": map[string]any{}},
						"f:labels":      map[string]any{".": map[string]any{}, "f:app": map[string]any{}},
					},
					"f:spec": map[string]any{".": map[string]any{}, "f:color": map[string]any{}, "f:quantity": map[string]any{}, "f:size": map[string]any{}},
				},
			}},
		},
		"spec": map[string]any{"color": "red", "size": "small", "quantity": int64(i%10 + 1)},
	}
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMyAppleHeapPerObject measures what a cached MyApple costs the live
// heap, everything included: the informer's store and namespace index,
// the quota index, and whatever the informer keeps after syncing. Issue #5
// wants at most 1 KiB. The MyApples are made by a list reactor, not kept
// in the fake API server's tracker, so only the cache's copies count.
func TestMyAppleHeapPerObject(t *testing.T) {
	const n = 10_000
	namespace := func(i int) string { return fmt.Sprintf("team-%d", i%20) }

	f := newFixture(t)
	f.Dyn.PrependReactor("list", "myapples", func(k8stesting.Action) (bool, runtimeobj.Object, error) {
		list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": policy.GroupMyApple + "/v1", "kind": "MyAppleList"}}
		list.SetResourceVersion("200000")
		for i := range n {
			list.Items = append(list.Items, unstructured.Unstructured{Object: fullMyApple(namespace(i), fmt.Sprintf("apple-%05d", i), i)})
		}
		return true, list, nil
	})

	before := heapAlloc()
	f.start()
	if got := len(f.cache.appleInformer.GetStore().ListKeys()); got != n {
		t.Fatalf("%d MyApples cached, want %d", got, n)
	}
	after := heapAlloc()
	perApple := float64(int64(after)-int64(before)) / n

	// For scale: the same MyApples kept whole, as an informer without the
	// transform would keep them.
	whole := make([]*unstructured.Unstructured, n)
	base := heapAlloc()
	for i := range whole {
		whole[i] = &unstructured.Unstructured{Object: fullMyApple(namespace(i), fmt.Sprintf("apple-%05d", i), i)}
	}
	perWhole := float64(int64(heapAlloc())-int64(base)) / n
	runtime.KeepAlive(whole)

	t.Logf("heap per cached MyApple: %.0f B (%d MyApples, everything the cache keeps); untransformed object alone: %.0f B", perApple, n, perWhole)
	if perApple > 1024 {
		t.Errorf("a cached MyApple costs %.0f B of heap, over the 1 KiB budget", perApple)
	}
	// Keep the cache reachable until after the measurement.
	if q := f.cache.MyAppleQuantity("team-0", ""); q == 0 {
		t.Error("team-0 holds no quantity")
	}
}
