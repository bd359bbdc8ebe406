package app

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// Defaults of Options, also the serve command's flag defaults.
const (
	DefaultPort                    = 9443
	DefaultGracefulShutdownTimeout = 20 * time.Second
	// DefaultLeaderElectionID names the leader election Lease.
	DefaultLeaderElectionID = "policy-webhook-leader"
	// DefaultMaxCacheStaleness outlasts an API server restart, yet turns a
	// replica whose own watches fail unready within a minute.
	DefaultMaxCacheStaleness = 60 * time.Second
)

// Options configure Run.
type Options struct {
	// RestConfig reaches the API server; every client Run makes is built
	// from it. A QPS of 0 turns client-side rate limiting off, as
	// ctrl.GetConfig does: the watches must keep up.
	RestConfig *rest.Config
	// PolicyNamespace is the webhook's own namespace, whose policy
	// ConfigMaps apply cluster-wide. Default policy-system.
	PolicyNamespace string

	// Host is the address the webhook server listens on; "" is every address.
	Host string
	// Port of the webhook server. Default 9443; it cannot be 0.
	Port int
	// CertDir holds tls.crt and tls.key, reloaded when they change. Required.
	CertDir string

	// Addresses of the metrics (/metrics), health probe (/healthz,
	// /readyz) and pprof (/debug/pprof/) servers: host:port, or "" (or
	// "0") for none.
	MetricsBindAddress     string
	HealthProbeBindAddress string
	PprofBindAddress       string

	// EnableHTTP2 lets clients negotiate HTTP/2. Off by default: its stream
	// handling has been the way into denial-of-service CVEs, and the API
	// server gains nothing from it over HTTP/1.1 keep-alive.
	EnableHTTP2 bool

	// Limits bound the webhook server's connections, requests and body
	// bytes in flight, and its timeouts; zero fields take the defaults.
	Limits webhook.Limits
	// ClientCAFile, if set, is a PEM file of CAs: clients without a
	// certificate they signed are refused at the handshake. Reread on change.
	ClientCAFile string
	// MetricsSecure serves metrics over HTTPS, each scrape authorized by the
	// API server. Off: plain HTTP to anyone who reaches the address.
	MetricsSecure bool

	// FailOpenBeforeSync admits Pods and MyApples unjudged, with a
	// warning, until the policy cache has synced; by default they are refused.
	FailOpenBeforeSync bool

	// Log receives the webhook's messages; the zero Logger discards them.
	Log logr.Logger

	// ShutdownDelay is how long the server keeps serving, not ready, after
	// ctx is cancelled, so that traffic moves away first. Default 0.
	ShutdownDelay time.Duration
	// GracefulShutdownTimeout bounds the wait for everything to stop after
	// that. Default 20s; negative waits for ever.
	GracefulShutdownTimeout time.Duration
	// ResyncPeriod is passed to the policy cache; 0 never resyncs.
	ResyncPeriod time.Duration
	// MaxCacheStaleness is how long an informer of the policy cache may go
	// without a watch before the replica stops being ready. Default 60s;
	// negative: never.
	MaxCacheStaleness time.Duration

	// ReplicaName names this replica in status.replicas, its heartbeat Lease
	// and leader election; it must be unique. Default: the host name, lowercased.
	ReplicaName string
	// LeaderElection elects one replica, on a Lease in PolicyNamespace, to
	// write what is written once for all. Every replica answers admissions
	// either way. Off, this replica writes as if it led: several would all
	// write the Ready condition.
	LeaderElection bool
	// LeaderElectionID names the Lease. Default policy-webhook-leader.
	LeaderElectionID string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election; zero
	// keeps client-go's defaults (15s, 10s, 2s). A Lease lost stops only the
	// leader's writers: the replica keeps answering admissions and
	// campaigns again.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// HeartbeatInterval is how often the replica renews its heartbeat
	// Lease (default 10s); after 4 missed renewals the leader counts it gone.
	HeartbeatInterval time.Duration

	// MetricsRegistry receives every metric, all unregistered when Run
	// returns; nil is controller-runtime's registry.
	MetricsRegistry prometheus.Registerer

	// AuditInterval is how often the elected replica sweeps existing objects
	// into PolicyReports and status, as it does after policy changes. 0: none.
	AuditInterval time.Duration
	// AuditDebounce is how long a policy change waits for more before the
	// sweep it triggers; 0 is the audit's default (2s).
	AuditDebounce time.Duration
	// ReportFormat is the API of the audit's reports; "" is OpenReports.
	ReportFormat reports.Format
	// ReportMaxResults is how many results a report lists, the summary
	// counting them all; 0 is reports.DefaultMaxResults.
	ReportMaxResults int
	// ReportPasses lists pass results too.
	ReportPasses bool

	// PolicyLimits bound what policies may cost (CEL) and how many a
	// namespace may hold; zero fields are the defaults.
	PolicyLimits carrier.Limits

	// MaxExceptionDuration bounds how far ahead a PolicyException may
	// expire when it is written; 0 is webhook.DefaultMaxExceptionDuration.
	MaxExceptionDuration time.Duration

	// QuotaReservationTTL bounds how long a reservation counts when its
	// MyApple never appears; 0 is quota.DefaultTTL.
	QuotaReservationTTL time.Duration

	// Username is the user the API server knows this webhook by
	// (system:serviceaccount:NAMESPACE:NAME): writes of the webhook's own
	// state (the last good versions, their key, the quota ledgers) by
	// anyone else are refused. "": asked of the API server at start
	// (SelfSubjectReview), which is right in a Pod and in tests alike.
	Username string
	// LedgerCleanupInterval is how often the elected replica removes the
	// quota ledgers of deleted namespaces. Default
	// controllers.DefaultLedgerCleanupInterval.
	LedgerCleanupInterval time.Duration

	// OnReady, if set, is called once, from its own goroutine, when /readyz first passes.
	OnReady func()
}

func (o Options) withDefaults() Options {
	o.PolicyNamespace = cmp.Or(o.PolicyNamespace, webhook.DefaultPolicyNamespace)
	o.Port = cmp.Or(o.Port, DefaultPort)
	if o.MetricsRegistry == nil {
		o.MetricsRegistry = crmetrics.Registry
	}
	o.GracefulShutdownTimeout = cmp.Or(o.GracefulShutdownTimeout, DefaultGracefulShutdownTimeout)
	o.MaxCacheStaleness = cmp.Or(o.MaxCacheStaleness, DefaultMaxCacheStaleness)
	if o.ReplicaName == "" {
		host, _ := os.Hostname()
		o.ReplicaName = strings.ToLower(host)
	}
	o.LeaderElectionID = cmp.Or(o.LeaderElectionID, DefaultLeaderElectionID)
	o.MaxExceptionDuration = cmp.Or(o.MaxExceptionDuration, webhook.DefaultMaxExceptionDuration)
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.RestConfig == nil {
		errs = append(errs, errors.New("RestConfig is required"))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("CertDir is required: it holds tls.crt and tls.key"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is out of range 1-65535", o.Port))
	}
	if o.ReplicaName == "" {
		errs = append(errs, errors.New("ReplicaName is required: the host name is unknown"))
	}
	for name, d := range map[string]time.Duration{"LeaseDuration": o.LeaseDuration, "RenewDeadline": o.RenewDeadline, "RetryPeriod": o.RetryPeriod, "HeartbeatInterval": o.HeartbeatInterval} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if o.AuditInterval < 0 || o.AuditDebounce < 0 {
		errs = append(errs, fmt.Errorf("AuditInterval %s and AuditDebounce %s must not be negative", o.AuditInterval, o.AuditDebounce))
	}
	if o.MaxExceptionDuration < 0 {
		errs = append(errs, fmt.Errorf("MaxExceptionDuration %s is negative", o.MaxExceptionDuration))
	}
	if o.LedgerCleanupInterval < 0 {
		errs = append(errs, fmt.Errorf("LedgerCleanupInterval %s is negative", o.LedgerCleanupInterval))
	}
	if o.ReportMaxResults < 0 {
		errs = append(errs, fmt.Errorf("ReportMaxResults %d is negative", o.ReportMaxResults))
	}
	if o.ReportFormat != "" {
		if err := new(reports.Format).Set(string(o.ReportFormat)); err != nil {
			errs = append(errs, err)
		}
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("ShutdownDelay %s is negative", o.ShutdownDelay))
	}
	if err := o.PolicyLimits.CEL.WithDefaults().Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.PolicyLimits.PoliciesPerNamespace < 0 {
		errs = append(errs, fmt.Errorf("PoliciesPerNamespace %d is negative", o.PolicyLimits.PoliciesPerNamespace))
	}
	if o.QuotaReservationTTL < 0 || o.QuotaReservationTTL >= cache.DeletedRetention {
		errs = append(errs, fmt.Errorf("QuotaReservationTTL %s must be between 0 and %s", o.QuotaReservationTTL, cache.DeletedRetention))
	}
	return errors.Join(errs...)
}

// disabledIfEmpty maps "" to controller-runtime's "0" (off): its metrics
// server would otherwise default to :8080.
func disabledIfEmpty(addr string) string { return cmp.Or(addr, "0") }
