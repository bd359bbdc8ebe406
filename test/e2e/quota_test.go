package e2e

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNamespaceQuota checks maxTotalQuantityPerNamespace against the
// MyApples that exist, as the webhook's cache sees them, on CREATE and on
// UPDATE (where the object's old quantity does not count twice).
func TestNamespaceQuota(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "quota", "myApples:\n  maxTotalQuantityPerNamespace: 10\n")
	over := func(total, others, here int64) string {
		return appleDenial(fmt.Sprintf("policy violation: ConfigMap %s/quota myApples.maxTotalQuantityPerNamespace spec.quantity: "+
			"namespace %s would hold a total quantity of %d (%d in its other MyApples + %d here), above the limit 10", ns, ns, total, others, here))
	}
	probe := func(q int64) func() error {
		return func() error {
			return createApple(ctx, apple(ns, "probe", "red", "small", q), metav1.CreateOptions{DryRun: dryRun})
		}
	}
	eventuallyDenied(t, probe(11), over(11, 0, 11))

	// MyApples of other namespaces do not count. The cache sees MyApples in
	// the order the API server stored them (one watch), so once it shows a
	// below, it has seen this one too.
	other := newNamespace(t, nil)
	wantAdmitted(t, createApple(ctx, apple(other, "big", "red", "large", 100), metav1.CreateOptions{}))

	wantAdmitted(t, createApple(ctx, apple(ns, "a", "red", "small", 4), metav1.CreateOptions{}))
	eventuallyDenied(t, probe(7), over(11, 4, 7))
	wantAdmitted(t, createApple(ctx, apple(ns, "b", "red", "small", 4), metav1.CreateOptions{}))
	// Once the cache holds b, 3 more is too many, 2 fits exactly.
	eventuallyDenied(t, probe(3), over(11, 8, 3))
	wantAdmitted(t, createApple(ctx, apple(ns, "c", "red", "small", 2), metav1.CreateOptions{}))
	eventuallyDenied(t, probe(1), over(11, 10, 1))

	t.Run("update counts the new quantity, not the old one too", func(t *testing.T) {
		// a holds 4: 6 in b and c, so a may grow to 4 but not to 5.
		wantDenied(t, updateApple(ctx, ns, "a", setQuantity(5), metav1.UpdateOptions{DryRun: dryRun}), over(11, 6, 5))
		wantAdmitted(t, updateApple(ctx, ns, "a", setQuantity(4), metav1.UpdateOptions{DryRun: dryRun}))
		wantAdmitted(t, updateApple(ctx, ns, "a", setQuantity(3), metav1.UpdateOptions{}))
		// The cache follows the update: 3+4+2 = 9 leaves room for 1.
		eventuallyAdmitted(t, probe(1))
		wantDenied(t, probe(2)(), over(11, 9, 2))
	})
	t.Run("deleted MyApples stop counting", func(t *testing.T) {
		if err := env.dyn.Resource(myApples).Namespace(ns).Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventuallyAdmitted(t, probe(5))
		wantDenied(t, probe(6)(), over(11, 5, 6))
	})
}
