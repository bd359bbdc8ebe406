package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/quota"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// Run serves the webhook until ctx is cancelled, then stops being ready,
// keeps serving for ShutdownDelay, lets requests in flight finish, stops the
// cache and returns nil. It returns an error if it cannot start or a part fails.
func Run(ctx context.Context, opts Options) error {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return fmt.Errorf("invalid webhook options: %w", err)
	}
	log := opts.Log
	log.Info("Starting policy-webhook", "policyNamespace", opts.PolicyNamespace, "host", opts.Host, "port", opts.Port,
		"certDir", opts.CertDir, "http2", opts.EnableHTTP2, "failOpenBeforeSync", opts.FailOpenBeforeSync, "shutdownDelay", opts.ShutdownDelay.String(), "maxCacheStaleness", opts.MaxCacheStaleness.String(),
		"replica", opts.ReplicaName, "leaderElection", opts.LeaderElection, "policyLimits", opts.PolicyLimits)

	cfg := rest.CopyConfig(opts.RestConfig)
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "policy-webhook"
	}
	serving, err := certwatcher.New(filepath.Join(opts.CertDir, certs.CertFile), filepath.Join(opts.CertDir, certs.KeyFile))
	if err != nil {
		return fmt.Errorf("loading the serving certificate from %s: %w", opts.CertDir, err)
	}

	reg := &registrations{Registerer: opts.MetricsRegistry}
	defer reg.unregisterAll()
	compiler := carrier.New(carrier.WithLimits(opts.PolicyLimits))
	pc, cs, auditor, kube, err := newCache(cfg, opts, compiler, reg)
	if err != nil {
		return err
	}

	m, err := webhook.NewMetrics(reg)
	if err != nil {
		return err
	}
	if err := registerRuntimeCollectors(reg); err != nil {
		return err
	}
	webhookServer, err := webhook.NewServer(webhook.ServerOptions{
		Host: opts.Host, Port: opts.Port, GetCertificate: serving.GetCertificate, ClientCAFile: opts.ClientCAFile,
		EnableHTTP2: opts.EnableHTTP2, Limits: opts.Limits, Metrics: m, Registerer: reg, Log: log.WithName("server"),
	})
	if err != nil {
		return err
	}
	mgrOpts := manager.Options{
		Metrics:                 metricsOptions(opts, serving),
		HealthProbeBindAddress:  disabledIfEmpty(opts.HealthProbeBindAddress),
		PprofBindAddress:        disabledIfEmpty(opts.PprofBindAddress),
		WebhookServer:           webhookServer,
		GracefulShutdownTimeout: &opts.GracefulShutdownTimeout,
	}
	if log.GetSink() != nil {
		mgrOpts.Logger = log
	}
	// The manager's own cache and client stay unused, so they list nothing.
	// It elects no leader: see leader.
	mgr, err := manager.New(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	// Asking for the webhook server adds it to the manager's runnables.
	server := mgr.GetWebhookServer()
	ledger, err := newLedger(cfg, opts, pc, reg)
	if err != nil {
		return err
	}
	// A policy object is judged with its CEL estimated at the namespaces it
	// will meet; the cache compiles what is in force with the same floor
	// whatever it holds, so that a namespace's growth evicts no policy.
	applied := compiler.WithMyApplesBound(pc.LargestMyAppleNamespace)
	for path, h := range webhook.Handlers(pc, ledger, pc, webhook.NewImpact(kube.CoreV1().RESTClient(), pc), applied, opts.PolicyNamespace, opts.FailOpenBeforeSync, m, log.WithName("admission"),
		webhook.WithMaxExceptionDuration(opts.MaxExceptionDuration)) {
		server.Register(path, h)
	}
	state, err := newStateHandler(ctx, kube, opts, m)
	if err != nil {
		return err
	}
	server.Register(webhook.PathState, state)
	if err := mgr.Add(serving); err != nil {
		return fmt.Errorf("adding the certificate watcher: %w", err)
	}
	// This replica's writer, and those that run while it leads: without
	// leader election, always.
	if err := mgr.Add(cs.Replica); err != nil {
		return fmt.Errorf("adding a controller: %w", err)
	}
	leaders := []manager.Runnable{cs.Status, cs.LastGood, cs.Ledgers, cs.Exceptions}
	if auditor != nil {
		leaders = append(leaders, auditor)
	}
	if opts.LeaderElection {
		le, err := newLeader(cfg, opts, leaders, reg)
		if err != nil {
			return err
		}
		leaders = []manager.Runnable{le}
	}
	for _, r := range leaders {
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("adding a controller: %w", err)
		}
	}

	ready := &readiness{judge: pc, current: pc, maxStale: opts.MaxCacheStaleness, certs: serving, certDir: opts.CertDir, server: server.StartedChecker(), clock: clock.RealClock{}}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the liveness check: %w", err)
	}
	for _, c := range ready.checks() {
		if err := mgr.AddReadyzCheck(c.name, c.check); err != nil {
			return fmt.Errorf("adding the readiness check %s: %w", c.name, err)
		}
	}

	return serve(ctx, opts, mgr, pc, ready, webhookServer)
}

// newLedger is the quota ledger MyApple admissions are judged through.
func newLedger(cfg *rest.Config, opts Options, pc *cache.Cache, reg prometheus.Registerer) (*quota.Ledger, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the quota ledger's client: %w", err)
	}
	m, err := quota.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return quota.New(quota.Options{
		Client: client, Namespace: opts.PolicyNamespace, Cache: pc, TTL: opts.QuotaReservationTTL,
		Metrics: m, Log: opts.Log.WithName("quota"),
	})
}

// serve runs the manager and the cache and orders their shutdown. The cache
// runs outside the manager, which would stop it before the webhook server
// while requests are still in flight.
func serve(ctx context.Context, opts Options, mgr manager.Manager, pc *cache.Cache, ready *readiness, server *webhook.Server) error {
	log := opts.Log
	// Both outlive ctx on purpose: shutdown is this function's to order.
	mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMgr()
	cacheCtx, stopCache := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCache()

	cacheDone := make(chan error, 1)
	go func() { cacheDone <- pc.Start(cacheCtx) }()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	if opts.OnReady != nil {
		go ready.notifyReady(mgrCtx, opts.OnReady)
	}

	stopCacheAndWait := func() error {
		stopCache()
		if err := <-cacheDone; err != nil {
			return fmt.Errorf("policy cache: %w", err)
		}
		return nil
	}

	select {
	case <-ctx.Done():
	case err := <-mgrDone:
		// Unasked, the manager returns only on failure, such as a port in use.
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		return errors.Join(fmt.Errorf("webhook server: %w", err), stopCacheAndWait())
	case err := <-cacheDone:
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		stopMgr()
		return errors.Join(fmt.Errorf("policy cache: %w", err), <-mgrDone)
	}

	log.Info("Shutting down: no longer ready", "shutdownDelay", opts.ShutdownDelay)
	ready.stopping.Store(true)
	server.Drain()
	if opts.ShutdownDelay > 0 {
		select {
		case <-time.After(opts.ShutdownDelay):
		case err := <-mgrDone:
			return errors.Join(fmt.Errorf("webhook server during shutdown: %w", err), stopCacheAndWait())
		}
	}
	log.Info("Shutting down: stopping the server; requests in flight finish")
	stopMgr()
	mgrErr := <-mgrDone
	if mgrErr != nil {
		mgrErr = fmt.Errorf("stopping the webhook server: %w", mgrErr)
	}
	err := errors.Join(mgrErr, stopCacheAndWait())
	log.Info("Shut down")
	return err
}

// newCache builds the clients, sharing one HTTP client, the policy cache
// and the writers: the controllers and the audit (nil when off).
func newCache(cfg *rest.Config, opts Options, compiler *carrier.Compiler, reg prometheus.Registerer) (*cache.Cache, *controllers.Controllers, *reports.Auditor, kubernetes.Interface, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the HTTP client for the API server: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	md, err := metadata.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the metadata client: %w", err)
	}
	kube, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	pc, err := cache.New(cache.Config{
		Dynamic:         dyn,
		Metadata:        md,
		Compiler:        compiler,
		PolicyNamespace: opts.PolicyNamespace,
		Log:             opts.Log.WithName("cache"),
		Metrics:         reg,
		ResyncPeriod:    opts.ResyncPeriod,
	})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the policy cache: %w", err)
	}
	var cs *controllers.Controllers
	auditor, err := newAuditor(cfg, opts, pc, reg, func() {
		cs.Status.AuditSwept()
		cs.Exceptions.Poke()
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ccfg := controllers.Config{
		Cache:             pc,
		Dynamic:           dyn,
		Kube:              kube,
		Replica:           opts.ReplicaName,
		PolicyNamespace:   opts.PolicyNamespace,
		HeartbeatInterval: opts.HeartbeatInterval,
		Log:               opts.Log.WithName("controllers"),
		Metrics:           reg,

		LedgerCleanupInterval: opts.LedgerCleanupInterval,
	}
	if auditor != nil {
		ccfg.Audit = auditor
		ccfg.ExceptionCoverage = func() (map[string]int64, time.Time, bool) {
			c := auditor.Coverage()
			if c == nil {
				return nil, time.Time{}, false
			}
			return c.Objects, c.At, true
		}
	}
	if cs, err = controllers.New(ccfg); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("creating the controllers: %w", err)
	}
	return pc, cs, auditor, kube, nil
}
