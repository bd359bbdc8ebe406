package live

import (
	"testing"

	"k8s.io/client-go/tools/cache"

	"github.com/policy-webhook/policy-webhook/policy"
)

func TestMyAppleQuota(t *testing.T) {
	a := myApple("team-a", "a", 4)
	f := newFixture(t,
		admissionPolicy("apple-quota", 1, map[string]any{"myApples": map[string]any{"maxTotalQuantityPerNamespace": int64(10)}}),
		a,
		myApple("team-a", "b", 5),
		myApple("team-b", "c", 100),
	)
	f.start()
	c := f.cache

	for _, q := range []struct {
		ns, except string
		want       int64
	}{
		{"team-a", "", 9},
		{"team-a", "b", 4},
		{"team-a", "nope", 9},
		{"team-b", "", 100},
		{"team-b", "c", 0},
		{"empty", "", 0},
	} {
		if got := c.MyAppleQuantity(q.ns, q.except); got != q.want {
			t.Errorf("MyAppleQuantity(%q, %q) = %d, want %d", q.ns, q.except, got, q.want)
		}
	}
	consistentWithIndex(t, c, "team-a", "team-b")

	// CREATE: 4 + 5 in other MyApples + 2 here is over 10.
	d := allowed(t, c, appleRequest(policy.Create, "team-a", "d", 2, 0), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != "myApples.maxTotalQuantityPerNamespace" {
		t.Errorf("violations = %v", d.Violations)
	}
	allowed(t, c, appleRequest(policy.Create, "team-a", "d", 1, 0), true)
	// team-b is far over, but its MyApples are not team-a's.
	allowed(t, c, appleRequest(policy.Create, "team-b", "d", 1, 0), false)
	allowed(t, c, appleRequest(policy.Create, "team-c", "d", 10, 0), true)

	// UPDATE leaves the object's own cached quantity out: b from 5 to 6
	// makes 4 + 6 = 10, within the limit; to 7 it does not.
	allowed(t, c, appleRequest(policy.Update, "team-a", "b", 6, 5), true)
	allowed(t, c, appleRequest(policy.Update, "team-a", "b", 7, 5), false)

	// The totals follow the cluster: a shrinks to 1, then is deleted.
	a = a.DeepCopy()
	a.Object["spec"].(map[string]any)["quantity"] = int64(1)
	f.update(a)
	eventually(t, "team-a holds 6", func() bool { return c.MyAppleQuantity("team-a", "") == 6 })
	allowed(t, c, appleRequest(policy.Create, "team-a", "d", 4, 0), true)
	f.delete(a)
	eventually(t, "team-a holds 5", func() bool { return c.MyAppleQuantity("team-a", "") == 5 })
	f.create(myApple("team-a", "e", 2))
	eventually(t, "team-a holds 7", func() bool { return c.MyAppleQuantity("team-a", "") == 7 })
	consistentWithIndex(t, c, "team-a", "team-b")
	if v := gaugeValue(t, f.reg, MetricCachedMyApples, nil); v != 3 {
		t.Errorf("%s = %v, want 3", MetricCachedMyApples, v)
	}
}

// consistentWithIndex checks the running totals against a sum over the
// informer's own namespace index, the slow way.
func consistentWithIndex(t *testing.T, c *Cache, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		objs, err := c.appleInformer.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
		if err != nil {
			t.Fatalf("namespace index: %v", err)
		}
		var sum int64
		for _, o := range objs {
			sum += o.(*apple).quantity
		}
		if got := c.MyAppleQuantity(ns, ""); got != sum {
			t.Errorf("running total of %s = %d, the index sums to %d", ns, got, sum)
		}
	}
}

func TestAppleIndex(t *testing.T) {
	ix := newAppleIndex()
	ix.set(&apple{namespace: "ns", name: "a", quantity: 3})
	ix.set(&apple{namespace: "ns", name: "b", quantity: 4})
	ix.set(&apple{namespace: "ns", name: "a", quantity: 5}) // update, not a third apple
	if got := ix.sum("ns", ""); got != 9 {
		t.Errorf("sum = %d, want 9", got)
	}
	if got := ix.sum("ns", "a"); got != 4 {
		t.Errorf("sum except a = %d, want 4", got)
	}
	ix.remove("ns", "a")
	ix.remove("ns", "a") // a second delete (a tombstone after a relist) changes nothing
	ix.remove("other", "x")
	if got := ix.sum("ns", ""); got != 4 {
		t.Errorf("sum after delete = %d, want 4", got)
	}
	ix.remove("ns", "b")
	if len(ix.byNS) != 0 || ix.count() != 0 {
		t.Errorf("empty namespaces kept: %v", ix.byNS)
	}
}
