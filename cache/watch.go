package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// A Reflector backs off for up to a minute from an API server that does not
// answer yet, and its backoff cannot be set through the informers (see
// docs/operating.md). So the ListerWatcher retries such calls itself, at
// most reconnectCap apart; other errors (403, 410 Gone, a bad request) go to
// the Reflector. A Backoff changes as it steps, so each retry gets its own.
func reconnectBackoff() wait.Backoff {
	return wait.Backoff{
		Duration: 200 * time.Millisecond,
		Factor:   2,
		Jitter:   0.25,
		Steps:    math.MaxInt32,
		Cap:      reconnectCap,
	}
}

// reconnectCap bounds the wait between two attempts to reach an API server.
const reconnectCap = 2 * time.Second

// A restarting API server can hold a watch request for seconds after it
// would serve a new one, yet it answers a watch with its headers at once. So
// a watch call not returned within watchStartTimeout is sent again; the
// timeout doubles each time, to maxWatchStartTimeout, so that an API server
// slow under load is not sent ever more requests.
const (
	watchStartTimeout    = 2 * time.Second
	maxWatchStartTimeout = 32 * time.Second
)

type watchStartTimeoutError struct{ after time.Duration }

func (e *watchStartTimeoutError) Error() string {
	return fmt.Sprintf("the API server did not start the watch within %s", e.after)
}

// Reasons a watch error is counted under.
const (
	watchErrorUnavailable = "unavailable" // the API server did not answer, or answered 404/429/5xx
	watchErrorExpired     = "expired"     // 410 Gone: the resourceVersion was compacted away; the informer relists
	watchErrorOther       = "other"
)

// informerHealth is what one informer's ListerWatcher knows of its
// connection to the API server: the informer is current while a watch it
// opened is open, and as of its end (lastCurrent) after.
type informerHealth struct {
	name    string // the resource, as the metrics label it
	what    string // for messages, e.g. "MyApples"
	log     logr.Logger
	metrics *metrics
	clock   clock.PassiveClock

	mu          sync.Mutex
	watches     int       // watches open
	lastCurrent time.Time // when the store was last known current
	failures    int       // failed calls since the last success
	lastErr     error
}

func newInformerHealth(name, what string, log logr.Logger, m *metrics, clk clock.PassiveClock) *informerHealth {
	return &informerHealth{name: name, what: what, log: log.WithValues("informer", name), metrics: m, clock: clk, lastCurrent: clk.Now()}
}

// InformerStaleness is how long one informer has gone without a watch
// open, and why.
type InformerStaleness struct {
	// Informer names the resource watched: configmaps, admissionpolicies,
	// myapples, namespaces, or lastgood.
	Informer string
	// For is 0 while a watch is open, else the time since the store was
	// last known current, at Since.
	For   time.Duration
	Since time.Time
	// LastError is the last error of a List or Watch since then, if any.
	LastError error
}

func (h *informerHealth) staleness(now time.Time) InformerStaleness {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := InformerStaleness{Informer: h.name}
	if h.watches > 0 {
		return s
	}
	s.Since, s.For, s.LastError = h.lastCurrent, max(now.Sub(h.lastCurrent), 0), h.lastErr
	return s
}

// succeeded records a List, or the start of a watch, that succeeded.
func (h *informerHealth) succeeded(watchStarted bool) {
	h.mu.Lock()
	now := h.clock.Now()
	failures, stale := h.failures, time.Duration(0)
	if h.watches == 0 {
		stale = now.Sub(h.lastCurrent)
	}
	h.failures, h.lastErr, h.lastCurrent = 0, nil, now
	if watchStarted {
		h.watches++
	}
	h.mu.Unlock()
	if failures > 0 {
		h.log.Info("Reaching the API server again: the informer is current", "what", h.what, "failedAttempts", failures, "staleFor", stale.Round(time.Millisecond).String())
	}
}

// watchEnded records the end of a watch: the store was current until now.
func (h *informerHealth) watchEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.watches--
	h.lastCurrent = h.clock.Now()
}

// failed records, counts and logs a failed List or Watch or an error event:
// the first of a run at error level, the rest at V(1), so that an outage is
// one line per informer, not one per attempt.
func (h *informerHealth) failed(call string, err error, retrying bool) {
	reason := watchErrorReason(err)
	h.metrics.watchErrors.WithLabelValues(h.name, reason).Inc()
	h.mu.Lock()
	h.failures++
	h.lastErr = err
	failures := h.failures
	h.mu.Unlock()
	msg := "Listing or watching failed: the informer's cache may be stale until it succeeds"
	switch {
	case reason == watchErrorExpired:
		h.log.Info("Watch failed: the informer relists", "what", h.what, "call", call, "err", err.Error())
	case failures == 1:
		h.log.Error(err, msg, "what", h.what, "call", call, "retrying", retrying, "retryWithin", reconnectCap.String())
	default:
		// logr logs errors whatever the verbosity.
		h.log.V(1).Info(msg, "what", h.what, "call", call, "err", err.Error(), "retrying", retrying, "failedAttempts", failures)
	}
}

// watchErrorHandler is the informer's WatchErrorHandler: it sees the
// errors the Reflector acts on itself (those the ListerWatcher does not
// retry), after which the Reflector backs off and relists.
func (h *informerHealth) watchErrorHandler(_ context.Context, _ *toolscache.Reflector, err error) {
	h.failed("list and watch", err, false)
}

// watchErrorReason sorts an error for the watch errors metric.
func watchErrorReason(err error) string {
	switch {
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		return watchErrorExpired
	case unavailable(err):
		return watchErrorUnavailable
	}
	return watchErrorOther
}

// unavailable tells an error that says the API server cannot answer now
// (it is down, starting, overloaded, or does not serve the resource yet, as
// a restarted API server does not serve a CRD until it has read it) from
// one that says the request itself is wrong.
func unavailable(err error) bool {
	var ue *url.Error
	switch {
	case utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err), utilnet.IsTimeout(err),
		utilnet.IsHTTP2ConnectionLost(err):
		return true
	case errors.As(err, new(*watchStartTimeoutError)):
		return true
	case errors.As(err, &ue):
		// No HTTP response at all: the transport failed.
		return true
	case apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err),
		apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsNotFound(err):
		return true
	}
	return false
}

// listWatch is an informer's ListerWatcher: list and watch as the client
// does, retrying calls the API server cannot answer yet, and keeping h
// current.
func listWatch(h *informerHealth, client any,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) toolscache.ListerWatcher {
	return toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := retry(ctx, h, "list", func() (runtime.Object, error) { return list(ctx, o) })
			if err == nil {
				h.succeeded(false)
			}
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			startTimeout := watchStartTimeout
			w, err := retry(ctx, h, "watch", func() (*trackedWatch, error) {
				// The call's context is the watch's for as long as it
				// lasts: cancelled only if it does not start in time, or
				// once it ends.
				wctx, cancel := context.WithCancel(ctx)
				timer := time.AfterFunc(startTimeout, cancel)
				w, err := watchFn(wctx, o)
				if !timer.Stop() {
					if err == nil {
						w.Stop()
					}
					cancel()
					err = &watchStartTimeoutError{after: startTimeout}
					startTimeout = min(2*startTimeout, maxWatchStartTimeout)
					return nil, err
				}
				if err != nil {
					cancel()
					return nil, err
				}
				// Counted open before its events are passed on, so that
				// its end, however soon, is counted after.
				h.succeeded(true)
				return newTrackedWatch(w, h, cancel), nil
			})
			if err != nil {
				return nil, err
			}
			return w, nil
		},
	}, client)
}

// retry calls call until it succeeds, fails with an error other than
// unavailable, or ctx ends. It reports the errors it retries; the Reflector
// reports the rest through the informer's WatchErrorHandler.
func retry[T any](ctx context.Context, h *informerHealth, what string, call func() (T, error)) (T, error) {
	backoff := reconnectBackoff()
	for {
		v, err := call()
		if err == nil || ctx.Err() != nil || !unavailable(err) {
			return v, err
		}
		h.failed(what, err, true)
		if errors.As(err, new(*watchStartTimeoutError)) {
			continue // the wait is spent already
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s of %s: %w (gave up: %w)", what, h.what, err, ctx.Err())
		case <-time.After(backoff.Step()):
		}
	}
}

// trackedWatch passes a watch's events on, and tells h when the watch
// ends and when an error event arrives (a 410 Gone among them).
type trackedWatch struct {
	w      watch.Interface
	h      *informerHealth
	cancel context.CancelFunc // the watch call's context
	out    chan watch.Event
	stop   chan struct{}
	once   sync.Once
	closed sync.WaitGroup
}

func newTrackedWatch(w watch.Interface, h *informerHealth, cancel context.CancelFunc) *trackedWatch {
	t := &trackedWatch{w: w, h: h, cancel: cancel, out: make(chan watch.Event), stop: make(chan struct{})}
	t.closed.Add(1)
	go t.forward()
	return t
}

func (t *trackedWatch) forward() {
	defer t.closed.Done()
	defer close(t.out)
	defer t.h.watchEnded()
	defer t.cancel()
	in := t.w.ResultChan()
	for {
		select {
		case <-t.stop:
			return
		case ev, ok := <-in:
			if !ok {
				return
			}
			if ev.Type == watch.Error {
				t.h.failed("watch", apierrors.FromObject(ev.Object), false)
			}
			select {
			case t.out <- ev:
			case <-t.stop:
				return
			}
		}
	}
}

func (t *trackedWatch) ResultChan() <-chan watch.Event { return t.out }

// Stop stops the watch and returns once its events are no longer passed
// on, as watch.Interface asks.
func (t *trackedWatch) Stop() {
	t.once.Do(func() {
		t.w.Stop()
		close(t.stop)
	})
	t.closed.Wait()
}

// Staleness reports, for each informer in start order, how long it has
// gone without a watch open on the API server.
func (c *Cache) Staleness(now time.Time) []InformerStaleness {
	out := make([]InformerStaleness, len(c.informers))
	for i, inf := range c.informers {
		out[i] = inf.health.staleness(now)
	}
	return out
}

// MyAppleStaleness is how long the MyApple informer has gone without a
// watch open: 0 while it has one.
func (c *Cache) MyAppleStaleness(now time.Time) time.Duration {
	for _, s := range c.Staleness(now) {
		if s.Informer == "myapples" {
			return s.For
		}
	}
	return 0
}

// CheckCurrent returns an error naming each informer whose cache has not
// been known current for longer than bound, for how long, and its last
// error; nil when every one is within it.
func (c *Cache) CheckCurrent(now time.Time, bound time.Duration) error {
	var errs []error
	for _, s := range c.Staleness(now) {
		if s.For <= bound {
			continue
		}
		err := fmt.Errorf("the %s informer has had no watch open on the API server for %s (since %s, more than %s)",
			s.Informer, s.For.Round(time.Second), s.Since.UTC().Format(time.RFC3339), bound)
		if s.LastError != nil {
			err = fmt.Errorf("%w; last error: %w", err, s.LastError)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
