package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// quotaCache judges MyApples by one quota rule, against whatever cluster
// view it is given, and holds no MyApple itself: what the ledger adds is
// all there is to count.
type quotaCache struct {
	cacheView
	limit int64
}

func (c *quotaCache) EvaluateIn(req *policy.Request, cluster policy.Cluster) policy.Decision {
	a := req.MyApple
	d := policy.Decision{Allowed: true}
	if cluster.MyAppleQuantity(req.Namespace, a.Name)+a.Spec.Quantity > c.limit {
		d.Allowed = false
		return d
	}
	d.Reserve, d.ReserveFor = a.Spec.Quantity, "ConfigMap ns/quota"
	return d
}

func (c *quotaCache) Evaluate(req *policy.Request) policy.Decision { return c.EvaluateIn(req, c) }

func createReq(ns, name string, q int64) *policy.Request {
	return &policy.Request{Kind: policy.KindMyApple, Operation: policy.Create, Namespace: ns,
		MyApple: &policy.MyApple{ObjectMeta: policy.ObjectMeta{Name: name, Namespace: ns, UID: "uid-" + name}, Spec: policy.MyAppleSpec{Quantity: q}}}
}

func newTestLedger(t *testing.T, client *fake.Clientset, timeout time.Duration) *Ledger {
	t.Helper()
	l, err := New(Options{Client: client, Namespace: "policy-system", Timeout: timeout,
		Cache: &quotaCache{cacheView: cacheView{seen: map[string]seen{}}, limit: 60}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBatching: concurrent admissions of one namespace share ledger
// writes, and exactly as many fit as the limit allows.
func TestBatching(t *testing.T) {
	client := fake.NewClientset()
	var writes atomic.Int32
	slow := func(k8stesting.Action) (bool, runtime.Object, error) {
		writes.Add(1)
		time.Sleep(20 * time.Millisecond) // an API server round trip, so that admissions queue
		return false, nil, nil
	}
	client.PrependReactor("create", "configmaps", slow)
	client.PrependReactor("update", "configmaps", slow)
	l := newTestLedger(t, client, 5*time.Second)

	var admitted atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if d := l.Evaluate(createReq("ns", fmt.Sprintf("a%02d", i), 10)); d.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 6 {
		t.Errorf("%d admitted, want 6", admitted.Load())
	}
	if w := writes.Load(); w >= 6 {
		t.Errorf("%d ledger writes for 6 reservations: admissions that queued were not batched", w)
	}
	t.Logf("%d ledger writes for %d reservations", writes.Load(), admitted.Load())
}

// TestWaiterGivesUp: an admission that waits longer than its timeout is
// refused with a message saying so, and the namespace's next admissions
// still go through: no lead is lost.
func TestWaiterGivesUp(t *testing.T) {
	client := fake.NewClientset()
	release := make(chan struct{})
	var first atomic.Bool
	client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if first.CompareAndSwap(false, true) {
			<-release
		}
		return false, nil, nil
	})
	l := newTestLedger(t, client, 200*time.Millisecond)

	leader := make(chan policy.Decision)
	go func() { leader <- l.Evaluate(createReq("ns", "a", 10)) }()
	for !first.Load() {
		time.Sleep(time.Millisecond)
	}
	late := l.Evaluate(createReq("ns", "b", 10))
	if late.Allowed || len(late.Violations) != 1 || !strings.Contains(late.Violations[0].Message, "could not be checked in time") {
		t.Errorf("an admission that waited past its timeout: %+v", late)
	}
	close(release)
	if d := <-leader; !d.Allowed {
		t.Errorf("the leader, whose write went through: %+v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	next := make(chan policy.Decision)
	go func() { next <- l.Evaluate(createReq("ns", "c", 10)) }()
	select {
	case d := <-next:
		if !d.Allowed {
			t.Errorf("the next admission: %+v", d)
		}
	case <-ctx.Done():
		t.Fatal("the next admission never got the lead")
	}
}

// TestStaleCacheRefuses: a replica whose MyApple cache has been without a
// watch for longer than MaxStaleness reserves nothing and refuses, saying
// why; a dry run still answers.
func TestStaleCacheRefuses(t *testing.T) {
	client := fake.NewClientset()
	l := newTestLedger(t, client, time.Second)
	reg := prometheus.NewRegistry()
	var err error
	if l.opts.Metrics, err = NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	l.opts.Cache.(*quotaCache).stale = MaxStaleness + time.Second
	d := l.Evaluate(createReq("ns", "a", 10))
	if d.Allowed || len(d.Violations) != 1 || !strings.Contains(d.Violations[0].Message, "MyApple cache has had no watch on the API server for 11s") {
		t.Errorf("a reservation on a stale cache: %+v", d)
	}
	if n := len(client.Actions()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
	// Counted as refused on a stale cache; no reservation was timed.
	if n := promtest.Sum(t, reg, "policy_webhook_quota_reservations_total", map[string]string{"outcome": "stale"}); n != 1 {
		t.Errorf("%v stale refusals counted, want 1", n)
	}
	if n := promtest.Sum(t, reg, "policy_webhook_quota_reservation_seconds", nil); n != 0 {
		t.Errorf("%v reservations timed, want none", n)
	}
	dry := createReq("ns", "b", 10)
	dry.DryRun = true
	if d := l.Evaluate(dry); !d.Allowed {
		t.Errorf("a dry run on a stale cache: %+v", d)
	}
}
