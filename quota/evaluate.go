// Package quota keeps maxTotalQuantityPerNamespace exact: before a MyApple
// admission that an enforced quota rule allows is answered, its quantity is
// reserved in a ledger the API server serialises, and every admission, on
// every replica, counts the reservations its informer cache does not yet
// reflect.
package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Index is what quota reads of the MyApples the informer cache has seen.
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

// Cache is what the ledger reads of the informer cache (*cache.Cache): its
// MyApple index, the policy in force and the cluster state rules read.
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
	// counts: its MyApple was refused after this webhook allowed it.
	DefaultTTL = time.Minute
	// DefaultTimeout bounds the reservation of one admission, retries on
	// conflict included; far under the webhook's timeout.
	DefaultTimeout = 3 * time.Second
	// DefaultMaxReservations bounds one namespace's ledger: beyond it,
	// creates wait for the cache to catch up.
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
)

// Options configure a Ledger.
type Options struct {
	// Client writes the ledgers in Namespace, the webhook's own.
	Client    kubernetes.Interface
	Namespace string
	Cache     Cache
	TTL       time.Duration
	Timeout   time.Duration
	// MaxReservations per namespace; 0 is DefaultMaxReservations.
	MaxReservations int
	Metrics         *Metrics
	Log             logr.Logger
	Clock           clock.PassiveClock // nil is the real one
}

// Ledger is a webhook Judge that reserves what enforced quota rules allow
// MyApples: one ledger write per batch of them, no API call otherwise.
type Ledger struct {
	opts Options
	// accounts holds an *account per namespace that has reserved.
	accounts sync.Map
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
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Ledger{opts: opts}, nil
}

// HasSynced is the cache's.
func (l *Ledger) HasSynced() bool { return l.opts.Cache.HasSynced() }

// Evaluate judges a request, counting the reservations the cache does not
// reflect yet, and reserves what it allows; one not recorded refuses it.
func (l *Ledger) Evaluate(req *policy.Request) policy.Decision {
	if req.Kind != policy.KindMyApple {
		return l.opts.Cache.Evaluate(req)
	}
	var rs []Reservation
	if a, ok := l.accounts.Load(req.Namespace); ok && a.(*account).reserved.Load() != nil {
		rs = *a.(*account).reserved.Load()
	}
	w := &waiter{req: req, judged: l.opts.Cache.EvaluateIn(req, l.view(req.Namespace, rs, l.opts.Clock.Now()))}
	d := w.judged
	if !d.Allowed || d.Reserve == 0 || req.DryRun {
		return d
	}
	if stale := l.opts.Cache.MyAppleStaleness(l.opts.Clock.Now()); stale > MaxStaleness {
		l.opts.Metrics.refused(outcomeStale)
		d.RefuseReservation(fmt.Sprintf("the quota of namespace %s cannot be checked exactly: this replica's MyApple cache has had no watch on the API server for %s; nothing was stored, try again",
			req.Namespace, stale.Round(time.Second)))
		return d
	}
	ctx, cancel := context.WithTimeout(cmp.Or(req.Context, context.Background()), l.opts.Timeout)
	defer cancel()
	acc, _ := l.accounts.LoadOrStore(req.Namespace, &account{})
	return l.reserve(ctx, w, acc.(*account))
}
