// Package quota keeps maxTotalQuantityPerNamespace exact: before a MyApple
// admission that an enforced quota rule allows is answered, its quantity is
// reserved in a ledger the API server serialises, and every admission, on
// every replica, counts the reservations its informer cache does not yet
// reflect.
package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Index is what quota needs to know of the MyApples the informer cache
// has seen.
type Index interface {
	// MyAppleQuantity is a namespace's total, less the MyApple named except.
	MyAppleQuantity(namespace, except string) int64
	// MyAppleSeen is the resourceVersion and quantity at which the cache
	// holds the MyApple with this UID ("" and 0 when it holds none), and
	// whether it saw it deleted.
	MyAppleSeen(namespace, uid string) (resourceVersion string, quantity int64, deleted bool)
	// DeletedRetention is how long MyAppleSeen remembers a deletion: a
	// reservation must lapse sooner, or one confirmed by its MyApple's
	// deletion would count again.
	DeletedRetention() time.Duration
	// MyAppleStaleness is how long the MyApple informer has been without
	// a watch: 0 while it is current.
	MyAppleStaleness(now time.Time) time.Duration
}

// Cache is what the ledger reads of the informer cache: its MyApple index,
// the policy in force and the cluster state rules read. *cache.Cache is the
// one in a running server.
type Cache interface {
	Index
	policy.Cluster
	cel.Cluster
	HasSynced() bool
	Evaluate(req *policy.Request) policy.Decision
	EvaluateIn(req *policy.Request, cluster policy.Cluster) policy.Decision
}

// Defaults of Options.
const (
	// DefaultTTL bounds how long a reservation the cache never confirms
	// counts: the MyApple was refused after this webhook allowed it (by
	// another webhook, or the API server timed out waiting), and its
	// quantity is held until then.
	DefaultTTL = time.Minute
	// DefaultTimeout bounds the reservation of one admission, retries on
	// conflict included; far under the webhook's timeout.
	DefaultTimeout = 3 * time.Second
	// DefaultMaxReservations bounds one namespace's ledger (about 120
	// bytes a reservation): beyond it, creates wait for the cache to catch
	// up rather than grow the object without bound.
	DefaultMaxReservations = 2000
	// KeepConfirmed is how long a reservation stays in the ledger once
	// the writing replica's cache holds what it reserved, so that other
	// replicas, whose caches may be a moment behind, still count it.
	KeepConfirmed = 15 * time.Second
	// MaxStaleness is how long this replica's MyApple cache may have been
	// without a watch before it stops reserving: a cache further behind
	// than KeepConfirmed could miss MyApples whose reservations another
	// replica has already dropped.
	MaxStaleness = 10 * time.Second

	// LedgerPrefix names a namespace's ledger: a ConfigMap
	// policy-webhook-quota-<namespace> in the webhook's namespace.
	LedgerPrefix = "policy-webhook-quota-"
	// LedgerKey is the ledger's data key.
	LedgerKey = "reservations.json"
	// NamespaceLabel on a ledger names the namespace it accounts for.
	NamespaceLabel = "policy-webhook.io/quota-namespace"

	maxAttempts = 8
)

// Options configure a Ledger.
type Options struct {
	// Client writes the ledgers; Namespace is where they live (the
	// webhook's own).
	Client    kubernetes.Interface
	Namespace string
	Cache     Cache
	TTL       time.Duration
	Timeout   time.Duration
	// MaxReservations per namespace; 0 is DefaultMaxReservations.
	MaxReservations int
	Metrics         *Metrics
	Log             logr.Logger
	Now             func() time.Time
}

// Ledger judges MyApple admissions and reserves what enforced quota rules
// allow. It is a webhook Judge: HasSynced and Evaluate, which for a MyApple
// in a namespace with an enforced quota makes one API call (an update of
// the ledger, more on conflict) and none otherwise.
type Ledger struct {
	opts Options
	// accounts holds an *account per namespace that has reserved: read by
	// every MyApple admission without a lock.
	accounts sync.Map
}

// account is one namespace's ledger as this replica last read or wrote it,
// and the admissions waiting to reserve in it.
type account struct {
	mu      sync.Mutex // guards queue and leading
	queue   []*waiter
	leading bool // an admission holds the lead; the rest queue
	// Only the admission settling touches these.
	loaded bool // cm and reserved reflect the API server's, as of the last call
	cm     *corev1.ConfigMap
	// reserved is the ledger's reservations, read without mu by
	// admissions that reserve nothing (dry runs, refusals).
	reserved atomic.Pointer[[]Reservation]
}

// Reservation is a quantity reserved for one MyApple. It counts until the
// cache holds the MyApple at a version after Replaces (or saw it deleted),
// or until TTL after At.
type Reservation struct {
	UID      string `json:"uid"`
	Name     string `json:"name"`
	Quantity int64  `json:"quantity"`
	// Replaces is the resourceVersion of the MyApple an UPDATE replaces;
	// empty for a CREATE.
	Replaces string    `json:"replaces,omitempty"`
	At       time.Time `json:"at"`
}

type ledgerData struct {
	Reservations []Reservation `json:"reservations"`
}

// New returns a Ledger. Ledgers are created on first use.
func New(opts Options) (*Ledger, error) {
	if opts.Client == nil || opts.Cache == nil || opts.Namespace == "" {
		return nil, errors.New("quota: a client, a cache and a namespace are required")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if r := opts.Cache.DeletedRetention(); opts.TTL >= r {
		return nil, fmt.Errorf("quota: the reservation TTL %s must be under %s, how long the cache remembers deletions", opts.TTL, r)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxReservations <= 0 {
		opts.MaxReservations = DefaultMaxReservations
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Ledger{opts: opts}, nil
}

// HasSynced is the cache's.
func (l *Ledger) HasSynced() bool { return l.opts.Cache.HasSynced() }

// Evaluate judges a request, counting the reservations the cache does not
// reflect yet, and reserves what an enforced quota rule allows before
// allowing it. A reservation that cannot be recorded refuses the request.
func (l *Ledger) Evaluate(req *policy.Request) policy.Decision {
	if req.Kind != policy.KindMyApple {
		return l.opts.Cache.Evaluate(req)
	}
	acc := l.account(req.Namespace, false)
	d := l.opts.Cache.EvaluateIn(req, l.view(req.Namespace, acc, l.opts.Now()))
	if !d.Allowed || d.Reserve == 0 || req.DryRun {
		return d
	}
	if stale := l.opts.Cache.MyAppleStaleness(l.opts.Now()); stale > MaxStaleness {
		l.opts.Metrics.refused(outcomeStale)
		d.RefuseReservation(fmt.Sprintf("the quota of namespace %s cannot be checked exactly: this replica's MyApple cache has had no watch on the API server for %s; nothing was stored, try again",
			req.Namespace, stale.Round(time.Second)))
		return d
	}
	ctx := req.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	return l.reserve(ctx, req, l.account(req.Namespace, true), d)
}

func (l *Ledger) account(namespace string, create bool) *account {
	if a, ok := l.accounts.Load(namespace); ok {
		return a.(*account)
	}
	if !create {
		return nil
	}
	a, _ := l.accounts.LoadOrStore(namespace, &account{})
	return a.(*account)
}

// view is the cluster as the cache holds it plus one namespace's pending
// reservations, as this replica last read or wrote them.
func (l *Ledger) view(namespace string, acc *account, now time.Time) policy.Cluster {
	if acc == nil {
		return l.opts.Cache
	}
	rs := acc.reserved.Load()
	if rs == nil {
		return l.opts.Cache
	}
	return l.viewOf(namespace, *rs, now)
}

func (l *Ledger) viewOf(namespace string, rs []Reservation, now time.Time) policy.Cluster {
	if len(rs) == 0 {
		return l.opts.Cache
	}
	return &view{Cache: l.opts.Cache, namespace: namespace, reserved: rs, now: now, ttl: l.opts.TTL}
}

type view struct {
	Cache
	namespace string
	reserved  []Reservation
	now       time.Time
	ttl       time.Duration
}

// MyAppleQuantity adds to the cache's total what pending reservations hold
// beyond it; except (the MyApple under admission) is left out of both.
func (v *view) MyAppleQuantity(namespace, except string) int64 {
	total := v.Cache.MyAppleQuantity(namespace, except)
	if namespace != v.namespace {
		return total
	}
	for i := range v.reserved {
		r := &v.reserved[i]
		if r.Name == except {
			continue
		}
		extra := pending(v.Cache, namespace, r, v.now, v.ttl)
		if extra > math.MaxInt64-total {
			return math.MaxInt64
		}
		total += extra
	}
	return total
}

// pending is what a reservation holds beyond what the cache counts for its
// MyApple: nothing once expired or confirmed.
func pending(ix Index, namespace string, r *Reservation, now time.Time, ttl time.Duration) int64 {
	rv, quantity, deleted := ix.MyAppleSeen(namespace, r.UID)
	switch {
	case now.Sub(r.At) > ttl || confirmed(r, rv, deleted):
		return 0
	case rv != "":
		return max(0, r.Quantity-quantity)
	}
	return r.Quantity
}

// confirmed: the cache saw r's MyApple deleted, or holds it at a version
// after the one r replaces.
func confirmed(r *Reservation, rv string, deleted bool) bool {
	return deleted || (rv != "" && rv != r.Replaces)
}

// reserve queues the request on its namespace's account and waits for its
// decision. One admission at a time leads: it takes every admission queued
// so far, settles them in one ledger write, and hands the lead to the
// newest admission queued meanwhile. One write thus serves every admission
// of a namespace that arrived while the last one was in flight, as the
// ResourceQuota admission batches by namespace. d is the decision so far,
// returned refused if ctx ends first.
func (l *Ledger) reserve(ctx context.Context, req *policy.Request, acc *account, d policy.Decision) policy.Decision {
	w := &waiter{req: req, first: d, begun: l.opts.Now(), done: make(chan policy.Decision, 1), lead: make(chan struct{}, 1)}
	acc.mu.Lock()
	acc.queue = append(acc.queue, w)
	if !acc.leading {
		acc.leading = true
		w.lead <- struct{}{}
	}
	acc.mu.Unlock()
	for {
		// A decision already made wins over a context that ended since.
		select {
		case d := <-w.done:
			return d
		default:
		}
		select {
		case d := <-w.done:
			return d
		case <-w.lead:
			l.lead(ctx, req.Namespace, acc)
		case <-ctx.Done():
			l.leave(acc, w)
			l.opts.Metrics.reserved(outcomeError, l.opts.Now().Sub(w.begun))
			d.RefuseReservation(fmt.Sprintf("the quota of namespace %s could not be checked in time: nothing was stored, try again", req.Namespace))
			return d
		}
	}
}

// waiter is one admission waiting for its reservation.
type waiter struct {
	req   *policy.Request
	first policy.Decision // judged against the ledger as last seen
	begun time.Time
	done  chan policy.Decision // buffered: settle never blocks on it
	lead  chan struct{}        // buffered: the lead is handed over without blocking
}

// lead settles the admissions queued, then hands the lead on.
func (l *Ledger) lead(ctx context.Context, ns string, acc *account) {
	acc.mu.Lock()
	batch := acc.queue
	acc.queue = nil
	acc.mu.Unlock()
	l.settle(ctx, ns, acc, batch)
	acc.mu.Lock()
	l.handOver(acc)
	acc.mu.Unlock()
}

// handOver passes the lead to the newest admission queued, which has the
// most time left, or lets it go. acc.mu is held.
func (l *Ledger) handOver(acc *account) {
	if n := len(acc.queue); n > 0 {
		acc.queue[n-1].lead <- struct{}{}
		return
	}
	acc.leading = false
}

// leave takes an admission that gave up out of the queue; if the lead had
// been handed to it, it is handed on. An admission already taken into a
// batch may still be reserved for: unconfirmed, the reservation lapses
// after the TTL.
func (l *Ledger) leave(acc *account, w *waiter) {
	acc.mu.Lock()
	defer acc.mu.Unlock()
	acc.queue = slices.DeleteFunc(acc.queue, func(o *waiter) bool { return o == w })
	select {
	case <-w.lead:
		l.handOver(acc)
	default:
	}
}

// settle judges a batch in order against the ledger as stored, each with
// the reservations of those before it, and records the reservations in one
// write, with the ledger's resourceVersion as the precondition. On a
// conflict it reads the ledger again and judges the whole batch again.
func (l *Ledger) settle(ctx context.Context, ns string, acc *account, batch []*waiter) {
	ref := fmt.Sprintf("ConfigMap %s/%s%s", l.opts.Namespace, LedgerPrefix, ns)
	decisions := make([]policy.Decision, len(batch))
	reserving := make([]bool, len(batch))
	for i, w := range batch {
		decisions[i], reserving[i] = w.first, true
	}
	answer := func(o outcome) {
		now := l.opts.Now()
		for i, w := range batch {
			if reserving[i] {
				l.opts.Metrics.reserved(o, now.Sub(w.begun))
			}
			w.done <- decisions[i]
		}
	}
	fail := func(why string) {
		acc.loaded = false
		l.opts.Log.Error(errors.New(why), "Refusing the MyApples whose quota could not be reserved", "namespace", ns, "admissions", len(batch))
		for i := range batch {
			if reserving[i] {
				decisions[i].RefuseReservation(fmt.Sprintf("the quota of namespace %s could not be checked exactly (%s): nothing was stored, try again", ns, why))
			}
		}
		answer(outcomeError)
	}
	for attempt := 1; ; attempt++ {
		if !acc.loaded {
			if err := l.load(ctx, ns, acc); err != nil {
				fail(fmt.Sprintf("reading the quota ledger %s: %v", ref, err))
				return
			}
		}
		now := l.opts.Now()
		next := l.keep(ns, *acc.reserved.Load(), now)
		reserve := false
		for i, w := range batch {
			d := l.opts.Cache.EvaluateIn(w.req, l.viewOf(ns, next, now))
			reserving[i] = d.Allowed && d.Reserve > 0
			if reserving[i] {
				if len(next) >= l.opts.MaxReservations {
					reserving[i] = false
					l.opts.Metrics.reserved(outcomeFull, now.Sub(w.begun))
					d.RefuseReservation(fmt.Sprintf("namespace %s has %d MyApple admissions its quota has yet to see stored: try again in a few seconds", ns, len(next)))
				} else {
					next = withReservation(next, reservationFor(w.req, d.Reserve, now))
					reserve = true
				}
			}
			decisions[i] = d
		}
		if !reserve {
			answer(outcomeReserved)
			return
		}
		err := l.write(ctx, ns, acc, next)
		if err == nil {
			answer(outcomeReserved)
			return
		}
		if retriable(err) && attempt < maxAttempts && ctx.Err() == nil {
			// Another replica wrote first: read what it wrote and judge
			// the batch again.
			l.opts.Metrics.conflict()
			acc.loaded = false
			continue
		}
		fail(fmt.Sprintf("recording the reservation in the quota ledger %s: %v", ref, err))
		return
	}
}

func reservationFor(req *policy.Request, quantity int64, now time.Time) Reservation {
	r := Reservation{UID: req.MyApple.UID, Name: req.MyApple.Name, Quantity: quantity, At: now}
	if req.Operation == policy.Update && req.OldMyApple != nil {
		r.Replaces = req.OldMyApple.ResourceVersion
	}
	return r
}

// withReservation adds r, replacing any earlier reservation for the same
// MyApple: the new one says what it will hold.
func withReservation(rs []Reservation, r Reservation) []Reservation {
	rs = slices.DeleteFunc(rs, func(o Reservation) bool { return o.Name == r.Name })
	return append(rs, r)
}

func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
}

// keep is the reservations worth keeping: not expired, and not confirmed
// by this replica's cache for longer than KeepConfirmed. It returns a new
// slice: the stored one is shared with readers.
func (l *Ledger) keep(namespace string, rs []Reservation, now time.Time) []Reservation {
	out := make([]Reservation, 0, len(rs)+1)
	for _, r := range rs {
		rv, _, deleted := l.opts.Cache.MyAppleSeen(namespace, r.UID)
		if age := now.Sub(r.At); age <= l.opts.TTL && (age <= KeepConfirmed || !confirmed(&r, rv, deleted)) {
			out = append(out, r)
		}
	}
	return out
}

func (l *Ledger) load(ctx context.Context, namespace string, acc *account) error {
	cm, err := l.opts.Client.CoreV1().ConfigMaps(l.opts.Namespace).Get(ctx, LedgerPrefix+namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		acc.cm, acc.loaded = nil, true
		acc.reserved.Store(&[]Reservation{})
		return nil
	}
	if err != nil {
		return err
	}
	rs, err := decode(cm)
	if err != nil {
		return err
	}
	acc.cm, acc.loaded = cm, true
	acc.reserved.Store(&rs)
	return nil
}

// write stores the reservations: an update that the API server refuses if
// another writer got there first, or the ledger's creation.
func (l *Ledger) write(ctx context.Context, namespace string, acc *account, rs []Reservation) error {
	data, err := json.Marshal(ledgerData{Reservations: rs})
	if err != nil {
		return err
	}
	var out *corev1.ConfigMap
	cms := l.opts.Client.CoreV1().ConfigMaps(l.opts.Namespace)
	if acc.cm == nil {
		out, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: LedgerPrefix + namespace, Namespace: l.opts.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "policy-webhook", NamespaceLabel: namespace},
			},
			Data: map[string]string{LedgerKey: string(data)},
		}, metav1.CreateOptions{FieldManager: "policy-webhook"})
	} else {
		cm := acc.cm.DeepCopy()
		cm.Data = map[string]string{LedgerKey: string(data)}
		out, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "policy-webhook"})
	}
	if err != nil {
		return err
	}
	acc.cm = out
	acc.reserved.Store(&rs)
	return nil
}

// decode reads a ledger. One that cannot be read is an error, not an empty
// ledger: forgetting reservations would let a namespace past its limit.
func decode(cm *corev1.ConfigMap) ([]Reservation, error) {
	raw, ok := cm.Data[LedgerKey]
	if !ok {
		return nil, fmt.Errorf("data key %s is missing (delete the ConfigMap to start the ledger afresh)", LedgerKey)
	}
	var d ledgerData
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return nil, fmt.Errorf("data key %s: %w (delete the ConfigMap to start the ledger afresh)", LedgerKey, err)
	}
	return slices.Clip(d.Reservations), nil
}
