package app

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Leader election timings when Options leave them zero: client-go's and
// controller-runtime's defaults.
const (
	defaultLeaseDuration = 15 * time.Second
	defaultRenewDeadline = 10 * time.Second
	defaultRetryPeriod   = 2 * time.Second
)

// MetricLeader is 1 while this replica runs the leader's writers.
const MetricLeader = "policy_webhook_leader"

// leader runs the leader's writers while this replica holds the Lease, and
// campaigns again when it loses it. controller-runtime's own leader
// election ends the process on a lost Lease, which would take the read path
// (every admission) down with the write path: an API server gone for longer
// than RenewDeadline would then leave no replica answering.
type leader struct {
	lock                                resourcelock.Interface
	leaseDuration, renewDeadline, retry time.Duration
	writers                             []manager.Runnable
	log                                 logr.Logger
	leading                             prometheus.Gauge
	// running is held while the writers run: never two sets at once.
	running sync.Mutex
}

// newLeader builds the Lease lock under the replica's name. Its client
// times out well within RenewDeadline, so that one hung request cannot
// cost the Lease.
func newLeader(cfg *rest.Config, opts Options, writers []manager.Runnable, reg prometheus.Registerer) (*leader, error) {
	l := &leader{
		leaseDuration: cmp.Or(opts.LeaseDuration, defaultLeaseDuration),
		renewDeadline: cmp.Or(opts.RenewDeadline, defaultRenewDeadline),
		retry:         cmp.Or(opts.RetryPeriod, defaultRetryPeriod),
		writers:       writers,
		log:           opts.Log.WithName("leader-election"),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricLeader,
			Help: "1 while this replica holds the leader election Lease and runs the leader's writers (status, Events, last good versions, audit).",
		}),
	}
	if err := reg.Register(l.leading); err != nil {
		return nil, fmt.Errorf("registering the leader election metric: %w", err)
	}
	lcfg := rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	lcfg.Timeout = max(l.renewDeadline/2, time.Second)
	kube, err := kubernetes.NewForConfig(lcfg)
	if err != nil {
		return nil, fmt.Errorf("creating the leader election client: %w", err)
	}
	l.lock, err = resourcelock.New(resourcelock.LeasesResourceLock, opts.PolicyNamespace, opts.LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: opts.ReplicaName})
	if err != nil {
		return nil, fmt.Errorf("creating the leader election lock: %w", err)
	}
	// Timings that client-go refuses fail Run at once, not at the first campaign.
	if _, err := leaderelection.NewLeaderElector(l.config(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {},
	})); err != nil {
		return nil, fmt.Errorf("configuring leader election (LeaseDuration %s, RenewDeadline %s, RetryPeriod %s): %w",
			l.leaseDuration, l.renewDeadline, l.retry, err)
	}
	return l, nil
}

// config is the election's configuration, with its callbacks. The Lease
// is released on cancel: campaign cancels only once the writers stopped.
func (l *leader) config(cb leaderelection.LeaderCallbacks) leaderelection.LeaderElectionConfig {
	return leaderelection.LeaderElectionConfig{
		Lock:            l.lock,
		LeaseDuration:   l.leaseDuration,
		RenewDeadline:   l.renewDeadline,
		RetryPeriod:     l.retry,
		ReleaseOnCancel: true,
		Name:            l.lock.Describe(),
		Callbacks:       cb,
	}
}

// NeedLeaderElection is false: it is the leader election, run on every replica.
func (*leader) NeedLeaderElection() bool { return false }

// Start campaigns until ctx is done, running the writers whenever this
// replica leads. On ctx done it stops the writers first, then hands the
// Lease over, so that no two replicas ever write at once.
func (l *leader) Start(ctx context.Context) error {
	ctx = klog.NewContext(ctx, l.log)
	for term := 1; ctx.Err() == nil; term++ {
		if err := l.campaign(ctx, term); err != nil {
			return err
		}
	}
	// A round whose writers have yet to notice it ended: wait for them.
	l.running.Lock()
	defer l.running.Unlock()
	return nil
}

// campaign is one round: acquire the Lease, run the writers, and return
// once the Lease is lost (or ctx is done) and the writers have stopped.
func (l *leader) campaign(ctx context.Context, term int) error {
	// The election's own context ends only after the writers have stopped,
	// so that ReleaseOnCancel never hands the Lease over while they write.
	electionCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	var mu sync.Mutex
	leading, ended := false, false
	stopped := make(chan struct{})
	// Shutdown before this replica leads: stop campaigning at once.
	unhook := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		ended = true
		if !leading {
			stopElection()
		}
	})
	defer unhook()

	le, err := leaderelection.NewLeaderElector(l.config(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(leadCtx context.Context) {
			mu.Lock()
			if ended || leadCtx.Err() != nil {
				mu.Unlock()
				return
			}
			leading = true
			mu.Unlock()
			defer close(stopped)
			// The writers stop when the Lease is lost or on shutdown.
			runCtx, cancel := context.WithCancel(leadCtx)
			defer cancel()
			defer context.AfterFunc(ctx, cancel)()
			l.run(runCtx, term)
			// Now that nothing writes, the Lease may go (on shutdown).
			stopElection()
		},
		OnStoppedLeading: func() {}, // required; campaign logs the loss
	}))
	if err != nil {
		return fmt.Errorf("configuring leader election: %w", err)
	}
	le.Run(electionCtx)
	mu.Lock()
	wasLeading := leading
	ended = true // a late OnStartedLeading of this round does nothing
	mu.Unlock()
	if wasLeading {
		<-stopped
		if ctx.Err() == nil {
			l.log.Info("Lost the leader election Lease: the leader's writers stopped; admissions are still answered from the cache; campaigning again",
				"lease", l.lock.Describe())
		}
	}
	return nil
}

// run runs every writer until ctx is done and they have all returned. A
// writer that fails is logged and the others keep running: losing one
// writer is no reason to stop answering admissions, and the next term
// starts it again.
func (l *leader) run(ctx context.Context, term int) {
	l.running.Lock()
	defer l.running.Unlock()
	if ctx.Err() != nil {
		return
	}
	l.log.Info("Elected: starting the leader's writers", "lease", l.lock.Describe(), "campaign", term)
	l.leading.Set(1)
	defer l.leading.Set(0)
	var wg sync.WaitGroup
	for _, w := range l.writers {
		wg.Go(func() {
			if err := w.Start(ctx); err != nil {
				l.log.Error(err, "A leader's writer failed; it starts again with the next term", "writer", fmt.Sprintf("%T", w))
			}
		})
	}
	wg.Wait()
	l.log.Info("The leader's writers stopped", "lease", l.lock.Describe())
}
