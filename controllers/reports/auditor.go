package reports

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Defaults of Config.
const (
	DefaultInterval = 60 * time.Second
	DefaultDebounce = 2 * time.Second
	// DefaultSweepTimeout bounds one sweep, listing and writing included.
	DefaultSweepTimeout = 5 * time.Minute
	// DefaultSweepShare is the share of one CPU a sweep's judging may take:
	// admissions on the same replica keep the rest.
	DefaultSweepShare = 0.25
)

// errPoliciesChanged cancels a sweep whose policies are no longer in force.
var errPoliciesChanged = errors.New("the policies changed")

// Policies is what the audit needs of the live policy cache.
type Policies interface {
	policy.Cluster
	WaitForSync(ctx context.Context) bool
	Snapshot() *cache.Snapshot
	Swapped() <-chan struct{}
}

// Config is what an Auditor needs.
type Config struct {
	// Policies is the live cache admissions are judged with.
	Policies Policies
	// REST lists Pods and MyApples in pages.
	REST rest.Interface
	// Dynamic writes the reports.
	Dynamic dynamic.Interface
	// Discovery tells whether the CRDs of the reports are installed.
	Discovery discovery.DiscoveryInterface
	// Format of the reports; "" is FormatOpenReports.
	Format Format
	// MaxResults a report lists, the summary counting them all; 0 is
	// DefaultMaxResults.
	MaxResults int
	// Passes lists a pass result for each policy an object passes, off by
	// default: they would outnumber the violations by far.
	Passes bool
	// Interval between sweeps; 0 is DefaultInterval.
	Interval time.Duration
	// Debounce is how long a policy change waits for more before the sweep
	// it triggers; 0 is DefaultDebounce.
	Debounce time.Duration
	// SweepTimeout bounds one sweep; 0 is DefaultSweepTimeout.
	SweepTimeout time.Duration
	// SweepShare is the share of one CPU, in (0, 1], that judging objects
	// may take during a sweep: it pauses in between to leave the rest to
	// admissions. 0 is DefaultSweepShare.
	SweepShare float64
	// PageSize of the lists; 0 is audit.DefaultPageSize.
	PageSize int64
	// Log receives the audit's messages.
	Log logr.Logger
	// Metrics registers the audit's metrics; nil registers none.
	Metrics prometheus.Registerer
	// Clock is the audit's clock; nil is the real one.
	Clock clock.PassiveClock
	// Swept, if set, is called after each sweep that judged every object,
	// once Results holds what it found.
	Swept func()
}

// Auditor is the background audit: a controller-runtime Runnable that runs
// on the elected leader only, so that one replica writes one set of reports.
type Auditor struct {
	cfg     Config
	log     logr.Logger
	metrics *metrics
	lister  *audit.Lister

	// Only the goroutine that sweeps touches these.
	written              map[string]string // namespace → content hash of its report; nil: not loaded
	firstSeen            map[resultKey]metav1.Timestamp
	reportsMissingLogged bool
	// results is status.audit by AdmissionPolicy name; nil before the first sweep.
	results atomic.Pointer[map[string]*v1alpha1.AuditStatus]
	// candidates is status.candidate.existing by AdmissionPolicy name: the
	// existing objects its candidate would deny and its spec admits.
	candidates atomic.Pointer[map[policy.Source]*v1alpha1.AuditStatus]
	// covered is what the last sweep found of the exceptions.
	covered atomic.Pointer[ExceptionCoverage]
}

// ExceptionCoverage is how many existing objects each PolicyException
// (namespace/name) covered in one sweep, and when that sweep ended.
type ExceptionCoverage struct {
	Objects map[string]int64
	At      time.Time
}

// Coverage is what the last sweep that judged every object found of the
// exceptions; nil before the first.
func (a *Auditor) Coverage() *ExceptionCoverage { return a.covered.Load() }

// New checks the configuration and registers the metrics.
func New(cfg Config) (*Auditor, error) {
	var errs []error
	if cfg.Policies == nil {
		errs = append(errs, errors.New("policies are required"))
	}
	if cfg.REST == nil || cfg.Dynamic == nil || cfg.Discovery == nil {
		errs = append(errs, errors.New("the REST, Dynamic and Discovery clients are required"))
	}
	if cfg.Interval < 0 || cfg.Debounce < 0 || cfg.SweepTimeout < 0 {
		errs = append(errs, errors.New("the interval, debounce and sweep timeout must not be negative"))
	}
	if cfg.SweepShare < 0 || cfg.SweepShare > 1 {
		errs = append(errs, fmt.Errorf("the sweep's CPU share must be in (0, 1], not %g", cfg.SweepShare))
	}
	if cfg.Format == "" {
		cfg.Format = FormatOpenReports
	}
	if err := new(Format).Set(string(cfg.Format)); err != nil {
		errs = append(errs, err)
	}
	if cfg.MaxResults < 0 {
		errs = append(errs, fmt.Errorf("the maximum of results per report %d must not be negative", cfg.MaxResults))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the audit: %w", err)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.SweepTimeout == 0 {
		cfg.SweepTimeout = DefaultSweepTimeout
	}
	if cfg.SweepShare == 0 {
		cfg.SweepShare = DefaultSweepShare
	}
	if cfg.MaxResults == 0 {
		cfg.MaxResults = DefaultMaxResults
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Auditor{
		cfg:       cfg,
		log:       cfg.Log,
		metrics:   m,
		lister:    &audit.Lister{Client: cfg.REST, PageSize: cfg.PageSize},
		firstSeen: map[resultKey]metav1.Timestamp{},
	}, nil
}

// NeedLeaderElection makes the manager run the audit on the elected replica only.
func (a *Auditor) NeedLeaderElection() bool { return true }

// Start sweeps once the policy cache has synced, then every Interval and
// Debounce after each policy change, until ctx is done. A policy change
// cancels the sweep in flight at once (its results would be about policies
// no longer in force) and starts another against the new ones. A failed
// sweep is logged and counted; the next one starts afresh.
func (a *Auditor) Start(ctx context.Context) error {
	a.log.Info("Starting the audit", "interval", a.cfg.Interval, "debounce", a.cfg.Debounce, "cpuShare", a.cfg.SweepShare)
	if !a.cfg.Policies.WaitForSync(ctx) {
		return nil
	}
	// A change before the first sweep is in it.
	select {
	case <-a.cfg.Policies.Swapped():
	default:
	}
	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	var (
		debounce <-chan time.Time
		// The sweep in flight: its end, and how to cancel it; nil when none.
		done   chan struct{}
		cancel context.CancelCauseFunc
	)
	sweep := func(why string) {
		if done != nil {
			// Cancelled (or about to end): the next waits for it, so
			// that one sweep at a time touches the Auditor's state.
			<-done
		}
		var sctx context.Context
		sctx, cancel = context.WithCancelCause(ctx)
		d := make(chan struct{})
		done = d
		go func() {
			defer close(d)
			a.sweepAndLog(sctx, why)
		}()
	}
	sweep("start")
	// An exception that expires changes verdicts with no write: the audit
	// sweeps again at that instant.
	var expiry *time.Timer
	expiryC := func() <-chan time.Time {
		if expiry == nil {
			return nil
		}
		return expiry.C
	}
	armExpiry := func() {
		if expiry != nil {
			expiry.Stop()
			expiry = nil
		}
		now := a.cfg.Clock.Now()
		if next, ok := a.cfg.Policies.Snapshot().Set.Exceptions().NextExpiry(now); ok {
			expiry = time.NewTimer(next.Sub(now))
		}
	}
	armExpiry()
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			if done != nil {
				<-done
			}
			a.log.Info("Audit stopped")
			return nil
		case <-done:
			done, cancel = nil, nil
		case <-a.cfg.Policies.Swapped():
			if cancel != nil {
				cancel(errPoliciesChanged)
			}
			if debounce == nil {
				debounce = time.After(a.cfg.Debounce)
			}
			armExpiry()
		case <-expiryC():
			if cancel != nil {
				cancel(errPoliciesChanged)
			}
			sweep("exception expired")
			armExpiry()
			ticker.Reset(a.cfg.Interval)
		case <-debounce:
			debounce = nil
			sweep("policy change")
			ticker.Reset(a.cfg.Interval)
		case <-ticker.C:
			if done == nil {
				sweep("interval")
			}
		}
	}
}

// AuditStatus is status.audit of an AdmissionPolicy as the last sweep
// found it; false before the first sweep, or for a policy it did not judge.
func (a *Auditor) AuditStatus(name string) (*v1alpha1.AuditStatus, bool) {
	r := a.results.Load()
	if r == nil {
		return nil, false
	}
	st, ok := (*r)[name]
	return st, ok
}

// CandidateAuditStatus is what the last sweep found the candidate of an
// AdmissionPolicy would deny among the existing objects; false before the
// first sweep, or for a policy without a candidate.
func (a *Auditor) CandidateAuditStatus(name string) (*v1alpha1.AuditStatus, bool) {
	return a.CandidateExisting(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
}

// CandidateExisting is what the last sweep found the candidate of a
// policy source would deny among the existing objects; false before the
// first sweep, or for a source without a candidate.
func (a *Auditor) CandidateExisting(src policy.Source) (*v1alpha1.AuditStatus, bool) {
	r := a.candidates.Load()
	if r == nil {
		return nil, false
	}
	st, ok := (*r)[src]
	return st, ok
}

func (a *Auditor) sweepAndLog(ctx context.Context, why string) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.SweepTimeout)
	defer cancel()
	begun := a.cfg.Clock.Now()
	s, err := a.Sweep(ctx)
	took := a.cfg.Clock.Since(begun)
	a.metrics.duration.Observe(took.Seconds())
	switch {
	case err != nil && errors.Is(context.Cause(ctx), errPoliciesChanged):
		a.metrics.sweeps.WithLabelValues("cancelled").Inc()
		a.log.Info("Audit sweep cancelled: the policies changed", "trigger", why, "took", took)
	case err != nil:
		a.metrics.sweeps.WithLabelValues("failed").Inc()
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			a.log.Error(err, "Audit sweep failed", "trigger", why, "took", took)
		}
	default:
		a.metrics.sweeps.WithLabelValues("ok").Inc()
		a.log.Info("Audit sweep done", "trigger", why, "took", took, "judged", s.Totals.Judged,
			"violations", s.Violations, "namespacesWithViolations", s.Namespaces)
	}
}

// SweepSummary says what one sweep found.
type SweepSummary struct {
	Totals     audit.Totals
	Violations int
	Namespaces int
}

// Sweep judges every existing object against one snapshot, so that all are
// judged by the same policies, then writes the reports and the metrics and
// publishes status.audit for the Status controller to write.
func (a *Auditor) Sweep(ctx context.Context) (SweepSummary, error) {
	snap := a.cfg.Policies.Snapshot()
	now := metav1.NewTime(a.cfg.Clock.Now())
	f := newFindings(metav1.Timestamp{Seconds: now.Unix()}, a.cfg.MaxResults, a.cfg.Passes)
	violations := 0
	p := newPacer(a.cfg.SweepShare)
	totals, err := audit.Sweep(ctx, a.lister, func(r *policy.Request) policy.Decision {
		p.begin()
		// CEL stops with the sweep; exceptions apply as at its start.
		r.Context, r.Now = ctx, now.Time
		return snap.Set.Evaluate(r, a.cfg.Policies)
	}, func(o *audit.Object, d *policy.Decision) error {
		violations += len(d.Violations)
		f.add(o, d, a.firstSeen)
		// Cancelled between two pages is not soon enough: a page of
		// costly objects takes long.
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		return p.end(ctx)
	})
	for kind, n := range totals.Judged {
		a.metrics.judged.WithLabelValues(kind).Add(float64(n))
	}
	if err != nil {
		return SweepSummary{Totals: totals}, err
	}
	a.firstSeen = f.firstSeen
	a.metrics.setViolations(f.counts)
	a.covered.Store(&ExceptionCoverage{Objects: f.excepted, At: a.cfg.Clock.Now()})
	byNamespace := f.reported()
	a.publishCandidates(snap.Set.Candidates(), f.candidates, now)
	a.publish(snap.Policies(), f.policies, now)
	err = a.writeReports(ctx, byNamespace)
	return SweepSummary{Totals: totals, Violations: violations, Namespaces: len(byNamespace)}, err
}
