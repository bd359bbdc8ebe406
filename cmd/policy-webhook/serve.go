package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/quota"
	"github.com/policy-webhook/policy-webhook/webhook"
)

const serveUsage = `Usage: policy-webhook serve --cert-dir DIR [flags]

Serves the validating admission webhooks over TLS (/validate-pods,
/validate-myapples, /validate-policies), answering from policy that
informers keep in memory. Probes: /healthz and /readyz on
--health-probe-bind-address; metrics: /metrics on --metrics-bind-address,
over HTTPS for callers the API server authorizes (--metrics-secure).
SIGTERM or SIGINT: stop being ready, keep serving for --shutdown-delay,
finish requests in flight, exit 0.

Every replica answers admissions and reports what it enforces in the
status.replicas of each AdmissionPolicy; with --leader-elect, one elected
replica writes policy Events and the Ready condition for all.

Flags:
`

// runServe is `policy-webhook serve`: flags to app.Options, then app.Run.
func runServe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serveUsage)
		fs.PrintDefaults()
	}
	var (
		kubeconfig   = fs.String("kubeconfig", "", "path to a kubeconfig; empty: in-cluster config (or $KUBECONFIG, then ~/.kube/config, outside a cluster)")
		policyNS     = fs.String("policy-namespace", webhook.DefaultPolicyNamespace, "the webhook's own namespace, whose policy ConfigMaps apply cluster-wide")
		port         = fs.Int("port", app.DefaultPort, "port of the TLS webhook server")
		certDir      = fs.String("cert-dir", "", "directory holding tls.crt and tls.key, reloaded when they change (required)")
		metricsAddr  = fs.String("metrics-bind-address", ":8443", `address of the metrics server (/metrics); "0" for none`)
		probeAddr    = fs.String("health-probe-bind-address", ":8081", `address of the health probe server (/healthz, /readyz); "0" for none`)
		pprofAddr    = fs.String("pprof-bind-address", "", `address of the pprof server (/debug/pprof/); "" for none`)
		http2        = fs.Bool("enable-http2", false, "let the API server speak HTTP/2 to the webhook (off: HTTP/2's stream handling has been the way into denial-of-service CVEs, and HTTP/1.1 costs less per admission)")
		failOpen     = fs.Bool("fail-open-before-sync", false, "admit Pods and MyApples unjudged, with a warning, until the policy cache has synced (default: refuse them)")
		delay        = fs.Duration("shutdown-delay", 3*time.Second, "on SIGTERM, how long to keep serving while not ready, so that traffic moves away first")
		drainTimeout = fs.Duration("graceful-shutdown-timeout", app.DefaultGracefulShutdownTimeout, "after that, how long requests in flight may take to finish")
		leaderElect  = fs.Bool("leader-elect", true, "elect one replica, on a Lease in the policy namespace, to write policy Events and AdmissionPolicy conditions (off: this replica writes them, right only for a single replica)")
		maxStale     = fs.Duration("max-cache-staleness", app.DefaultMaxCacheStaleness, "how long an informer of the policy cache may go without a watch open on the API server before the replica stops being ready (/readyz/cache-current says which and why); longer than an API server restart, so replicas stay ready and answer from their caches through one; negative: never")
		replicaName  = fs.String("replica-name", "", "this replica's name in status.replicas, its heartbeat Lease and leader election; must differ between replicas (default: $POD_NAME, else the host name)")
	)
	var (
		metricsSecure = fs.Bool("metrics-secure", true, "serve metrics over HTTPS with the serving certificate, every scrape authenticated and authorized by the API server (get on the /metrics non-resource URL); false: plain HTTP to anyone")
		clientCAFile  = fs.String("client-ca-file", "", "PEM file of CAs: serve only clients presenting a certificate they signed (the API server, given one through its AdmissionConfiguration), refusing others at the TLS handshake; reread when it changes. Empty: no client certificate asked")
		readHeader    = fs.Duration("read-header-timeout", webhook.DefaultReadHeaderTimeout, "time a client has to send a request's headers (and finish the TLS handshake)")
		readTimeout   = fs.Duration("read-timeout", webhook.DefaultReadTimeout, "time a client has to send a whole request, headers and body: bounds how long a slow body holds a connection")
		writeTimeout  = fs.Duration("write-timeout", webhook.DefaultWriteTimeout, "time from a request's headers to its response written: bounds a client that does not read its response")
		idleTimeout   = fs.Duration("idle-timeout", webhook.DefaultIdleTimeout, "time a keep-alive connection may stay open with no request")
		maxConns      = fs.Int("max-connections", webhook.DefaultMaxConnections, "connections open at once; more wait in the kernel's accept queue (-1: no limit)")
		maxRequests   = fs.Int("max-requests-in-flight", webhook.DefaultMaxRequestsInFlight, "requests served at once; more are refused with 429 and Retry-After, which the API server retries (-1: no limit)")
		maxBytes      = fs.Int64("max-bytes-in-flight", webhook.DefaultMaxBytesInFlight, "request body bytes held at once, counted as they arrive; a body that would pass it is refused with 429 (the first 64 KiB of each never are; -1: no limit)")
		memRatio      = fs.Float64("memory-limit-ratio", 0.9, "set the Go memory limit (GOMEMLIMIT) to this fraction of the container's cgroup memory limit, unless GOMEMLIMIT is set; 0: leave it")
		quotaTTL      = fs.Duration("quota-reservation-ttl", quota.DefaultTTL, "how long a MyApple's reserved quantity counts against its namespace's quota when the MyApple never appears (refused after this webhook allowed it); at most 10m")
		username      = fs.String("username", "", "the user the API server knows this webhook by (system:serviceaccount:NAMESPACE:NAME); only it may write the webhook's own state (last good versions, their key, quota ledgers). Empty: asked of the API server at start (SelfSubjectReview)")
		ledgerSweep   = fs.Duration("ledger-cleanup-interval", controllers.DefaultLedgerCleanupInterval, "how often the elected replica removes the quota ledgers of deleted namespaces")
		auditEvery    = fs.Duration("audit-interval", reports.DefaultInterval, "how often the elected replica judges every existing Pod and MyApple into PolicyReports and AdmissionPolicy status (also right after a policy change); 0 for no audit")
	)
	policyLimits := bindPolicyLimits(fs)
	reportFormat := reports.FormatOpenReports
	fs.Var(&reportFormat, "report-format", fmt.Sprintf("the API the audit writes its reports in, one per namespace with violations: %s (openreports.io/v1alpha1 Reports) or %s (wgpolicyk8s.io/v1alpha2 PolicyReports)", reports.FormatOpenReports, reports.FormatWGPolicy))
	var (
		reportMax    = fs.Int("report-max-results", reports.DefaultMaxResults, "how many results a report lists at most (its summary counts them all); fewer when they would take a report over 1 MiB")
		maxException = fs.Duration("max-exception-duration", webhook.DefaultMaxExceptionDuration, "how far ahead a PolicyException may expire when it is created or its spec changes (an expired one is kept, inactive)")
		reportPasses = fs.Bool("report-passes", false, "list a pass result in the reports for each policy an object passes (off: only violations are listed, passes counted in the summary)")
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "policy-webhook serve: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if *certDir == "" {
		fmt.Fprintln(stderr, "policy-webhook serve: --cert-dir is required: the directory holding tls.crt and tls.key")
		return exitUsage
	}

	if *replicaName == "" {
		*replicaName = os.Getenv("POD_NAME")
	}

	log := zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(stderr))
	// controller-runtime and client-go log through globals: one format for all.
	crlog.SetLogger(log)
	klog.SetLogger(log)

	memLimit, err := setMemoryLimit(*memRatio, cgroupMemoryLimitFiles)
	if err != nil {
		log.Error(err, "Cannot set the Go memory limit")
		return exitUsage
	}
	log.Info("Go memory limit", "bytes", memLimit.bytes, "from", memLimit.source)

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		log.Error(err, "Cannot reach the API server")
		return 1
	}
	err = app.Run(ctx, app.Options{
		RestConfig:             cfg,
		PolicyNamespace:        *policyNS,
		Port:                   *port,
		CertDir:                *certDir,
		MetricsBindAddress:     *metricsAddr,
		HealthProbeBindAddress: *probeAddr,
		PprofBindAddress:       *pprofAddr,
		EnableHTTP2:            *http2,
		FailOpenBeforeSync:     *failOpen,
		MetricsSecure:          *metricsSecure,
		ClientCAFile:           *clientCAFile,
		Limits: webhook.Limits{
			ReadHeaderTimeout:   *readHeader,
			ReadTimeout:         *readTimeout,
			WriteTimeout:        *writeTimeout,
			IdleTimeout:         *idleTimeout,
			MaxConnections:      *maxConns,
			MaxRequestsInFlight: *maxRequests,
			MaxBytesInFlight:    *maxBytes,
		},
		ShutdownDelay:           *delay,
		GracefulShutdownTimeout: *drainTimeout,
		MaxCacheStaleness:       *maxStale,
		LeaderElection:          *leaderElect,
		ReplicaName:             *replicaName,
		QuotaReservationTTL:     *quotaTTL,
		Username:                *username,
		LedgerCleanupInterval:   *ledgerSweep,
		AuditInterval:           *auditEvery,
		PolicyLimits:            policyLimits(),
		ReportFormat:            reportFormat,
		ReportMaxResults:        *reportMax,
		ReportPasses:            *reportPasses,
		MaxExceptionDuration:    *maxException,
		Log:                     log.WithName("policy-webhook"),
	})
	if err != nil {
		log.Error(err, "policy-webhook serve failed")
		return 1
	}
	return 0
}

// restConfig loads the kubeconfig at path, else as controller-runtime does.
// Client-side rate limiting stays off: the watches must keep up.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := config.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("loading the in-cluster config (or $KUBECONFIG): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	cfg.QPS = -1
	return cfg, nil
}
