package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// quotaResult is what the namespace quota costs a MyApple create through
// the API server: the same creates in a namespace without a quota policy
// and in one with an enforced quota (which every create fits), batches
// alternated so both see the same machine.
type quotaResult struct {
	Creates     int           `json:"creates"`
	Concurrency int           `json:"concurrency"`
	Without     quotaSide     `json:"withoutQuota"`
	With        quotaSide     `json:"withQuota"`
	Took        time.Duration `json:"took"`
}

type quotaSide struct {
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
	PerSecond float64       `json:"perSecond"`
	// APIRequestsPerCreate is the webhook's requests to the API server
	// per create: the ledger's, with a quota; none without.
	APIRequestsPerCreate float64 `json:"apiRequestsPerCreate"`
}

const (
	quotaNamespace   = "loadgen-quota"
	noQuotaNamespace = "loadgen-no-quota"
	quotaBatch       = 50
)

// measureQuota creates n MyApples in each namespace, concurrency at once,
// and times each create.
func measureQuota(ctx context.Context, c clients, s *server, n, concurrency int) (quotaResult, error) {
	res := quotaResult{Creates: n, Concurrency: concurrency}
	for _, ns := range []string{quotaNamespace, noQuotaNamespace} {
		if err := ignoreExists(c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})); err != nil {
			return res, fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	cm := devenv.PolicyConfigMap(quotaNamespace, "quota", "myApples:\n  maxTotalQuantityPerNamespace: 1000000000000\n")
	if err := ignoreExists(c.kube.CoreV1().ConfigMaps(quotaNamespace).Create(ctx, cm, metav1.CreateOptions{})); err != nil {
		return res, fmt.Errorf("creating the quota policy: %w", err)
	}
	// The quota is in force once a create too large for it is refused.
	tooLarge := myApple(quotaNamespace, "probe", 1000000000001)
	if err := pollUntil(ctx, 30*time.Second, func() bool {
		_, err := c.dyn.Resource(myApplesGVR).Namespace(quotaNamespace).Create(ctx, tooLarge, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil
	}); err != nil {
		return res, fmt.Errorf("waiting for the quota policy: %w", err)
	}

	sides := map[string]*struct {
		lat  []time.Duration
		busy time.Duration
		reqs float64
	}{quotaNamespace: {}, noQuotaNamespace: {}}
	begun := time.Now()
	for done := 0; done < n; done += quotaBatch {
		size := min(quotaBatch, n-done)
		for _, ns := range []string{noQuotaNamespace, quotaNamespace} {
			side := sides[ns]
			before, err := s.apiRequests(ctx)
			if err != nil {
				return res, err
			}
			start := time.Now()
			lat, err := createTimed(ctx, c, ns, done, size, concurrency)
			if err != nil {
				return res, err
			}
			side.busy += time.Since(start)
			side.lat = append(side.lat, lat...)
			after, err := s.apiRequests(ctx)
			if err != nil {
				return res, err
			}
			side.reqs += after - before
		}
	}
	res.Took = time.Since(begun)
	for ns, out := range map[string]*quotaSide{noQuotaNamespace: &res.Without, quotaNamespace: &res.With} {
		side := sides[ns]
		slices.Sort(side.lat)
		out.P50 = side.lat[len(side.lat)/2]
		out.P99 = side.lat[len(side.lat)*99/100]
		out.PerSecond = float64(len(side.lat)) / side.busy.Seconds()
		out.APIRequestsPerCreate = side.reqs / float64(len(side.lat))
	}
	return res, nil
}

// createTimed creates MyApples from-from+n in ns, concurrency at once, and
// returns how long each took. Every one must be admitted.
func createTimed(ctx context.Context, c clients, ns string, from, n, concurrency int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	next := make(chan int)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				_, err := c.dyn.Resource(myApplesGVR).Namespace(ns).Create(ctx, myApple(ns, fmt.Sprintf("q-%06d", from+i), 1), metav1.CreateOptions{})
				lat[i] = time.Since(start)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("creating MyApple %s/q-%06d: %w", ns, from+i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return lat, first
}

func pollUntil(ctx context.Context, timeout time.Duration, ok func() bool) error {
	return devenv.PollEvery(ctx, 100*time.Millisecond, timeout, func(context.Context) error {
		if ok() {
			return nil
		}
		return fmt.Errorf("not yet")
	})
}
