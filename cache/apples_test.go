package cache

import (
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

func TestMyAppleQuota(t *testing.T) {
	a := fakecluster.MyApple("team-a", "a", 4)
	f := newFixture(t,
		fakecluster.AdmissionPolicy("apple-quota", 1, map[string]any{"myApples": map[string]any{"maxTotalQuantityPerNamespace": int64(10)}}),
		a,
		fakecluster.MyApple("team-a", "b", 5),
		fakecluster.MyApple("team-b", "c", 100),
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
	if got, want := c.MyApples("team-a").Apples(), []cel.Apple{{Name: "a", Color: "red", Size: "small", Quantity: 4}, {Name: "b", Color: "red", Size: "small", Quantity: 5}}; !reflect.DeepEqual(got, want) {
		t.Errorf("MyApples(team-a) = %+v, want %+v", got, want)
	}
	if got := c.MyApples("empty"); got.Len() != 0 {
		t.Errorf("MyApples(empty) = %+v", got)
	}

	// CREATE: 4 + 5 in other MyApples + 2 here is over 10.
	d := fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Create, "team-a", "d", 2, 0), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != "myApples.maxTotalQuantityPerNamespace" {
		t.Errorf("violations = %v", d.Violations)
	}
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Create, "team-a", "d", 1, 0), true)
	// team-b is far over, but its MyApples are not team-a's.
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Create, "team-b", "d", 1, 0), false)
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Create, "team-c", "d", 10, 0), true)

	// UPDATE leaves the object's own cached quantity out: b from 5 to 6
	// makes 4 + 6 = 10, within the limit; to 7 it does not.
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Update, "team-a", "b", 6, 5), true)
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Update, "team-a", "b", 7, 5), false)

	// The totals follow the cluster: a shrinks to 1, then is deleted.
	a = a.DeepCopy()
	a.Object["spec"].(map[string]any)["quantity"] = int64(1)
	a.Object["spec"].(map[string]any)["color"] = "green"
	f.Update(a)
	fakecluster.Eventually(t, "team-a holds 6", func() bool { return c.MyAppleQuantity("team-a", "") == 6 })
	if got, want := c.MyApples("team-a").Apples()[0], (cel.Apple{Name: "a", Color: "green", Size: "small", Quantity: 1}); got != want {
		t.Errorf("after the update, MyApples(team-a)[0] = %+v, want %+v", got, want)
	}
	fakecluster.Allowed(t, c, fakecluster.AppleRequest(policy.Create, "team-a", "d", 4, 0), true)
	f.Delete(a)
	fakecluster.Eventually(t, "team-a holds 5", func() bool { return c.MyAppleQuantity("team-a", "") == 5 })
	f.Create(fakecluster.MyApple("team-a", "e", 2))
	fakecluster.Eventually(t, "team-a holds 7", func() bool { return c.MyAppleQuantity("team-a", "") == 7 })
	consistentWithIndex(t, c, "team-a", "team-b")
	if v := promtest.One(t, f.reg, MetricCachedMyApples, nil); v != 3 {
		t.Errorf("%s = %v, want 3", MetricCachedMyApples, v)
	}
}

// consistentWithIndex checks the running totals against a sum over the
// informer's own namespace index, the slow way.
func consistentWithIndex(t *testing.T, c *Cache, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		objs, err := c.appleInformer.GetIndexer().ByIndex(toolscache.NamespaceIndex, ns)
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
	ix.set(&apple{namespace: "ns", name: "c", color: "red", size: "large", quantity: 1})
	l := ix.list("ns").Apples()
	want := []cel.Apple{{Name: "b", Quantity: 4}, {Name: "c", Color: "red", Size: "large", Quantity: 1}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("list = %+v, want %+v", l, want)
	}
	if again := ix.list("ns").Apples(); &again[0] != &l[0] {
		t.Error("an unchanged namespace's list was built again")
	}
	ix.set(&apple{namespace: "small", name: "x", quantity: 1})
	if got := ix.largest(); got != 2 {
		t.Errorf("largest = %d, want 2 (ns)", got)
	}
	ix.remove("small", "x")
	if got, want := ix.tally("ns", cel.ByColor, "red", ""), (cel.Tally{Count: 1, Quantity: 1}); got != want {
		t.Errorf("red tally = %+v, want %+v", got, want)
	}
	ix.set(&apple{namespace: "ns", name: "c", color: "blue", size: "large", quantity: 1})
	if got := ix.list("ns").Apples()[1].Color; got != "blue" || l[1].Color != "red" {
		t.Errorf("after a change: color %q, and the list handed out before reads %q", got, l[1].Color)
	}
	if got := ix.tally("ns", cel.ByColor, "red", ""); got != (cel.Tally{}) {
		t.Errorf("red tally after c turned blue = %+v, want none", got)
	}
	if got, want := ix.groups("ns", cel.ByColor), []string{"", "blue"}; !reflect.DeepEqual(got, want) {
		t.Errorf("colors = %q, want %q", got, want)
	}
	ix.remove("ns", "c")
	ix.remove("ns", "b")
	if l := ix.list("ns"); l.Len() != 0 {
		t.Errorf("list of an emptied namespace = %+v", l.Apples())
	}
	if len(ix.byNS) != 0 || ix.count() != 0 {
		t.Errorf("empty namespaces kept: %v", ix.byNS)
	}
}

// TestAppleSeen: what quota reservations are settled by, a MyApple by UID
// at its resourceVersion, and deletions remembered for DeletedRetention.
func TestAppleSeen(t *testing.T) {
	ix := newAppleIndex()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC))
	ix.clock = clk
	ix.set(&apple{namespace: "ns", name: "a", uid: "u1", resourceVersion: "1", quantity: 3})
	ix.set(&apple{namespace: "ns", name: "a", uid: "u1", resourceVersion: "2", quantity: 5})
	if got, want := ix.seen("ns", "u1"), (Seen{Present: true, ResourceVersion: "2", Quantity: 5}); got != want {
		t.Errorf("seen u1 = %+v, want %+v", got, want)
	}
	if got := ix.seen("ns", "never"); got != (Seen{}) {
		t.Errorf("seen of a UID never seen = %+v", got)
	}
	// Deleted and created again under the same name, the deletion missed
	// (a relist): the first one is gone.
	ix.set(&apple{namespace: "ns", name: "a", uid: "u2", resourceVersion: "9", quantity: 1})
	if got := ix.seen("ns", "u1"); got != (Seen{Deleted: true}) {
		t.Errorf("seen of a replaced UID = %+v, want deleted", got)
	}
	ix.remove("ns", "a")
	if got := ix.seen("ns", "u2"); got != (Seen{Deleted: true}) {
		t.Errorf("seen of a deleted UID = %+v, want deleted", got)
	}
	if got := ix.sum("ns", ""); got != 0 {
		t.Errorf("sum = %d after the delete", got)
	}
	// Remembered for DeletedRetention, then forgotten as more deletions come.
	clk.Step(DeletedRetention + time.Minute)
	ix.set(&apple{namespace: "ns", name: "b", uid: "u3", resourceVersion: "10"})
	ix.remove("ns", "b")
	if got := ix.seen("ns", "u2"); got != (Seen{}) {
		t.Errorf("seen of a UID deleted long ago = %+v, want forgotten", got)
	}
	if got := ix.seen("ns", "u3"); got != (Seen{Deleted: true}) {
		t.Errorf("seen of u3 = %+v, want deleted", got)
	}
}

func TestTransformMyApple(t *testing.T) {
	u := fakecluster.MyApple("ns", "a", 3)
	u.SetResourceVersion("7")
	u.SetUID("u-a")
	got, err := transformMyApple(u)
	if err != nil {
		t.Fatal(err)
	}
	want := &apple{namespace: "ns", name: "a", uid: "u-a", resourceVersion: "7", color: "red", size: "small", quantity: 3}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// Whatever the spec holds, the watch goes on.
	bad := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "b"}, "spec": map[string]any{"color": 5}}}
	got, err = transformMyApple(bad)
	if err != nil || got.(*apple).color != "" || got.(*apple).quantity != 0 {
		t.Errorf("malformed spec: got %+v, %v", got, err)
	}
	// Idempotent, as client-go asks.
	if again, _ := transformMyApple(got); again != got {
		t.Error("a transformed object was transformed again")
	}
}
