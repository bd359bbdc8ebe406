package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/quota"
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

// TestQuotaBurst creates 20 MyApples of 10 at once, through the API server,
// against a quota of 60, ten times: exactly 6 are admitted each round, never
// more, and each admission the quota allows costs the webhook requests for
// the namespace's ledger only. Deleting them frees the quota for the next
// round; dry runs reserve nothing.
func TestQuotaBurst(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "quota", "myApples:\n  maxTotalQuantityPerNamespace: 60\n")
	const rounds, burst, quantity, limit = 10, 20, 10, 60
	eventuallyDenied(t, func() error {
		return createApple(ctx, apple(ns, "probe", "red", "small", limit+1), metav1.CreateOptions{DryRun: dryRun})
	}, appleDenial(fmt.Sprintf("policy violation: ConfigMap %s/quota myApples.maxTotalQuantityPerNamespace spec.quantity: "+
		"namespace %s would hold a total quantity of %d (0 in its other MyApples + %d here), above the limit %d", ns, ns, limit+1, limit+1, limit)))

	// Concurrent dry runs each fit alone, and reserve nothing.
	admitted, _ := createBurst(ctx, t, ns, "dry", burst, quantity, metav1.CreateOptions{DryRun: dryRun})
	if admitted != burst {
		t.Fatalf("%d of %d concurrent dry-run creates of %d admitted under a quota of %d, want all: a dry run reserves nothing", admitted, burst, quantity, limit)
	}

	apples := env.dyn.Resource(myApples).Namespace(ns)
	for round := range rounds {
		mark := env.requests.Len()
		admitted, refusals := createBurst(ctx, t, ns, fmt.Sprintf("r%d", round), burst, quantity, metav1.CreateOptions{})
		made := env.requests.Since(mark)
		list, err := apples.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, a := range list.Items {
			q, _, _ := unstructured.NestedInt64(a.Object, "spec", "quantity")
			stored += q
		}
		t.Logf("round %d: %d of %d admitted, %d stored in total; the webhook made %d requests", round, admitted, burst, stored, len(made))
		if stored > limit {
			t.Fatalf("round %d: the namespace holds %d, above its quota of %d", round, stored, limit)
		}
		if admitted != limit/quantity {
			t.Errorf("round %d: %d admitted, want exactly %d (refusals: %q)", round, admitted, limit/quantity, refusals)
		}
		for _, r := range made {
			configMaps := "/namespaces/" + env.wh.PolicyNamespace + "/configmaps"
			if !strings.Contains(r, configMaps+"/"+quota.LedgerPrefix+ns+"?") && !strings.HasSuffix(r, configMaps+"/"+quota.LedgerPrefix+ns) &&
				!(strings.HasPrefix(r, "POST ") && strings.Contains(r, configMaps+"?")) && !isRenewal(r) && !isBookkeeping(r) {
				t.Errorf("round %d: the webhook made a request other than to the namespace's ledger: %s", round, r)
			}
		}

		// Deleting frees the quota: once the cache has seen the deletions,
		// the whole limit fits again.
		if err := apples.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		eventuallyAdmitted(t, func() error {
			return createApple(ctx, apple(ns, "probe", "red", "small", limit), metav1.CreateOptions{DryRun: dryRun})
		})
	}
}

// createBurst creates n MyApples at once and counts those admitted; every
// refusal must be the quota's.
func createBurst(ctx context.Context, t *testing.T, ns, prefix string, n int, quantity int64, opts metav1.CreateOptions) (admitted int, refusals []string) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := createApple(ctx, apple(ns, fmt.Sprintf("%s-%02d", prefix, i), "red", "small", quantity), opts)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted++
			case strings.Contains(err.Error(), "myApples.maxTotalQuantityPerNamespace"):
				refusals = append(refusals, err.Error())
			default:
				t.Errorf("create %s-%02d: %v", prefix, i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return admitted, refusals
}
