package cache

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// connectionRefused is the error a client gets from an API server that is
// not running.
func connectionRefused() error {
	return &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis/stable.example.com/v1/myapples",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
}

func TestUnavailable(t *testing.T) {
	gr := schema.GroupResource{Group: "stable.example.com", Resource: "myapples"}
	for _, c := range []struct {
		err    error
		reason string
	}{
		{connectionRefused(), watchErrorUnavailable},
		{apierrors.NewNotFound(gr, ""), watchErrorUnavailable},
		{apierrors.NewTooManyRequests("slow down", 1), watchErrorUnavailable},
		{apierrors.NewServiceUnavailable("starting"), watchErrorUnavailable},
		{apierrors.NewResourceExpired("too old resource version: 1 (200)"), watchErrorExpired},
		{apierrors.NewForbidden(gr, "", errors.New("RBAC")), watchErrorOther},
		{errors.New("something else"), watchErrorOther},
	} {
		if got := watchErrorReason(c.err); got != c.reason {
			t.Errorf("watchErrorReason(%v) = %s, want %s", c.err, got, c.reason)
		}
	}
}

// The staleness an informer reports: 0 while a watch is open, the time
// since its last watch ended (or list succeeded) otherwise, with the last
// error; CheckCurrent names the informers past the bound.
func TestInformerStaleness(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC))
	h := newInformerHealth("myapples", "MyApples", logr.Discard(), mustMetrics(t), clk)
	c := &Cache{informers: []watchedInformer{{health: h}}}

	if s := h.staleness(clk.Now().Add(3 * time.Second)); s.For != 3*time.Second {
		t.Errorf("before any list: stale for %s, want 3s (since it was made)", s.For)
	}
	clk.Step(time.Second)
	h.succeeded(false) // list
	h.succeeded(true)  // watch
	if s := h.staleness(clk.Now().Add(time.Hour)); s.For != 0 {
		t.Errorf("with a watch open: stale for %s", s.For)
	}
	clk.Step(10 * time.Second)
	h.watchEnded()
	h.failed("watch", connectionRefused(), true)
	s := h.staleness(clk.Now().Add(45 * time.Second))
	if s.For != 45*time.Second || !s.Since.Equal(clk.Now()) || s.LastError == nil {
		t.Errorf("45 s after the watch ended: %+v", s)
	}
	if err := c.CheckCurrent(clk.Now().Add(45*time.Second), time.Minute); err != nil {
		t.Errorf("within the bound: %v", err)
	}
	err := c.CheckCurrent(clk.Now().Add(61*time.Second), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "the myapples informer has had no watch open on the API server for 1m1s") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("past the bound: %v", err)
	}
	h.succeeded(true)
	if err := c.CheckCurrent(clk.Now().Add(time.Hour), time.Minute); err != nil {
		t.Errorf("with a watch open again: %v", err)
	}
}

func mustMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(nil, func() float64 { return 0 }, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Watches the API server cannot answer are retried by the ListerWatcher
// itself, counted, and the informer is current again as soon as one
// succeeds; a watch that ends makes the informer stale until the next.
func TestWatchRetriedWhileUnavailable(t *testing.T) {
	f := newFixture(t, fakecluster.MyApple("team-a", "a", 1))
	const refusals = 3
	var mu sync.Mutex
	calls := 0
	watches := make(chan *watch.FakeWatcher, 10)
	f.Dyn.PrependWatchReactor("myapples", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= refusals {
			return true, nil, connectionRefused()
		}
		w := watch.NewFake()
		watches <- w
		return true, w, nil
	})
	f.start()
	fakecluster.Eventually(t, "the MyApples watch open", func() bool { return f.cache.Staleness(time.Now())[2].For == 0 })
	labels := map[string]string{metricLabelInformer: "myapples", metricLabelReason: watchErrorUnavailable}
	if v := promtest.One(t, f.reg, MetricWatchErrors, labels); v != refusals {
		t.Errorf("%s%v = %v, want %d", MetricWatchErrors, labels, v, refusals)
	}

	// The API server ends the watch: stale until the next one opens.
	w := <-watches
	w.Stop()
	<-watches
	fakecluster.Eventually(t, "the MyApples watch open again", func() bool { return f.cache.Staleness(time.Now())[2].For == 0 })
	if err := f.cache.CheckCurrent(time.Now(), 0); err != nil {
		t.Errorf("every informer current: %v", err)
	}
	if v := promtest.One(t, f.reg, MetricCacheStale, map[string]string{metricLabelInformer: "myapples"}); v != 0 {
		t.Errorf("%s{informer=myapples} = %v with a watch open", MetricCacheStale, v)
	}
}

// An error the API server being down does not explain goes to the
// Reflector, which reports it through the informer's WatchErrorHandler.
func TestListErrorReachesTheWatchErrorHandler(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	failed := false
	f.Dyn.PrependReactor("list", "admissionpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "policy.example.com", Resource: "admissionpolicies"}, "", errors.New("RBAC"))
		}
		return false, nil, nil
	})
	f.start()
	labels := map[string]string{metricLabelInformer: "admissionpolicies", metricLabelReason: watchErrorOther}
	if v := promtest.One(t, f.reg, MetricWatchErrors, labels); v != 1 {
		t.Errorf("%s%v = %v, want 1", MetricWatchErrors, labels, v)
	}
}

// A watch the API server does not start within watchStartTimeout (as a
// restarting API server holds those sent while it starts) is given up and
// sent again at once.
func TestHeldWatchSentAgain(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	calls := 0
	f.Dyn.PrependWatchReactor("admissionpolicies", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			// The fake client does not see the call's context: it
			// stands for a server that answers too late.
			time.Sleep(watchStartTimeout + 500*time.Millisecond)
		}
		return true, watch.NewFake(), nil
	})
	f.start()
	labels := map[string]string{metricLabelInformer: "admissionpolicies", metricLabelReason: watchErrorUnavailable}
	fakecluster.Eventually(t, "the held watch counted and sent again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls >= 2 && promtest.One(t, f.reg, MetricWatchErrors, labels) == 1
	})
	fakecluster.Eventually(t, "the AdmissionPolicies watch open", func() bool { return f.cache.Staleness(time.Now())[1].For == 0 })
}
