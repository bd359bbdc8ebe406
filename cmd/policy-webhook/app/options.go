package app

import (
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
	"github.com/policy-webhook/policy-webhook/webhook"
)

// Defaults of Options, also the serve command's flag defaults.
const (
	DefaultPort                    = 9443
	DefaultGracefulShutdownTimeout = 20 * time.Second
	// DefaultLeaderElectionID names the Lease, in the policy namespace,
	// that the replicas elect their leader on.
	DefaultLeaderElectionID = "policy-webhook-leader"
	// DefaultMaxCacheStaleness outlasts an API server restart (tens of
	// seconds), during which every replica answers from its cache and
	// should stay ready, yet turns a replica whose own watches fail
	// unready within a minute.
	DefaultMaxCacheStaleness = 60 * time.Second
)

// Options configure Run.
type Options struct {
	// RestConfig reaches the API server. Every client Run makes is built
	// from it, so a transport wrapped here sees every request. Client-side
	// rate limiting is turned off when QPS is 0 (as ctrl.GetConfig does):
	// the watches must keep up, and no admission makes a request.
	RestConfig *rest.Config
	// PolicyNamespace is the webhook's own namespace, whose policy
	// ConfigMaps apply cluster-wide. Default policy-system.
	PolicyNamespace string

	// Host is the address the webhook server listens on; "" is every
	// address. Tests use 127.0.0.1.
	Host string
	// Port of the webhook server. Default 9443. controller-runtime cannot
	// listen on port 0 and report the port, so tests pick a free one.
	Port int
	// CertDir holds tls.crt and tls.key, reloaded when they change.
	// Required.
	CertDir string

	// Addresses of the metrics (/metrics), health probe (/healthz,
	// /readyz) and pprof (/debug/pprof/) servers: host:port, or "" (or
	// "0") for none.
	MetricsBindAddress     string
	HealthProbeBindAddress string
	PprofBindAddress       string

	// EnableHTTP2 lets clients negotiate HTTP/2. Off by default, as in
	// kubebuilder's scaffolding: HTTP/2's stream handling has been the
	// way into denial-of-service bugs (CVE-2023-44487 rapid reset,
	// CVE-2023-39325), and the API server, the only client, gains
	// nothing from it over HTTP/1.1 keep-alive. Serving HTTP/2 also costs
	// more CPU per admission: a goroutine per stream and frame writes
	// handed between goroutines.
	EnableHTTP2 bool

	// Limits bound the webhook server's connections, requests and body
	// bytes in flight, and its timeouts; zero fields take the defaults.
	Limits webhook.Limits
	// ClientCAFile, if set, is a PEM file of CAs: only clients presenting
	// a certificate signed by one of them (the API server, through its
	// AdmissionConfiguration's kubeConfigFile) are served; others are
	// refused at the TLS handshake. Read again when it changes.
	ClientCAFile string
	// MetricsSecure serves metrics over HTTPS with the serving
	// certificate, each scrape authenticated and authorized by the API
	// server (get on the /metrics non-resource URL). Off: plain HTTP to
	// anyone who reaches the address.
	MetricsSecure bool

	// FailOpenBeforeSync admits Pods and MyApples unjudged, with a
	// warning, until the policy cache has synced. By default they are
	// refused (fail closed) with a message saying why.
	FailOpenBeforeSync bool

	// Log receives the webhook's messages; the zero Logger discards them.
	// controller-runtime's own components log through its global logger
	// (ctrl.SetLogger), as they always do.
	Log logr.Logger

	// ShutdownDelay is how long the server keeps serving, not ready,
	// after ctx is cancelled, so that load balancers and the API server
	// stop sending requests before it stops accepting them. Default 0.
	ShutdownDelay time.Duration
	// GracefulShutdownTimeout bounds the wait for in-flight requests and
	// everything else to stop after that. Default 20s; negative waits
	// for ever.
	GracefulShutdownTimeout time.Duration
	// ResyncPeriod is passed to the policy cache; 0 never resyncs.
	ResyncPeriod time.Duration
	// MaxCacheStaleness is how long an informer of the policy cache may go
	// without a watch open on the API server before the replica stops
	// being ready (/readyz/cache-current names the informer, for how
	// long, and its last error). Default 60s; negative: never.
	MaxCacheStaleness time.Duration

	// ReplicaName names this replica: in the status.replicas of
	// AdmissionPolicies, its heartbeat Lease, and as its identity in
	// leader election. Replicas must have distinct names; the Pod name
	// is. Default: the host name, lowercased.
	ReplicaName string
	// LeaderElection elects one replica, on a Lease in PolicyNamespace,
	// to write what is written once for all (policy Events, the Ready
	// condition, and any other work that must run once). Every
	// replica answers admissions either way. Off, this replica writes as
	// if it led: right for one replica; several would all write the
	// Ready condition (Events stay one per version: see cache.Reporter).
	LeaderElection bool
	// LeaderElectionID names the Lease. Default policy-webhook-leader.
	LeaderElectionID string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election
	// as in client-go; zero keeps controller-runtime's defaults (15s,
	// 10s, 2s). A leader lost makes Run return an error: the process
	// exits and restarts, as with every controller-runtime manager.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// HeartbeatInterval is how often the replica renews its heartbeat
	// Lease (default 10s); after 4 missed renewals the leader counts it
	// gone and removes its status.replicas entries.
	HeartbeatInterval time.Duration

	// MetricsRegistry receives the webhook's and the cache's metrics; nil
	// is controller-runtime's registry, which the metrics server serves.
	// Everything registered is unregistered when Run returns.
	MetricsRegistry prometheus.Registerer

	// AuditInterval is how often the elected replica sweeps the existing
	// Pods and MyApples into PolicyReports and AdmissionPolicy status; it
	// also sweeps AuditDebounce after each policy change. 0: no audit.
	AuditInterval time.Duration
	// AuditDebounce is how long a policy change waits for more before the
	// sweep it triggers; 0 is the audit's default (2s).
	AuditDebounce time.Duration

	// QuotaReservationTTL bounds how long a quota reservation counts when
	// the cache never sees the MyApple it was made for (refused after
	// this webhook allowed it); 0 is quota.DefaultTTL.
	QuotaReservationTTL time.Duration

	// OnReady, if set, is called once, the first time the server is ready
	// (the same checks as /readyz), from a goroutine of its own.
	OnReady func()
}

func (o Options) withDefaults() Options {
	if o.PolicyNamespace == "" {
		o.PolicyNamespace = webhook.DefaultPolicyNamespace
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.MetricsRegistry == nil {
		o.MetricsRegistry = crmetrics.Registry
	}
	if o.GracefulShutdownTimeout == 0 {
		o.GracefulShutdownTimeout = DefaultGracefulShutdownTimeout
	}
	if o.MaxCacheStaleness == 0 {
		o.MaxCacheStaleness = DefaultMaxCacheStaleness
	}
	if o.ReplicaName == "" {
		// The Pod name in a cluster, where serve passes $POD_NAME anyway.
		host, _ := os.Hostname()
		o.ReplicaName = strings.ToLower(host)
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
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
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("ShutdownDelay %s is negative", o.ShutdownDelay))
	}
	if o.QuotaReservationTTL < 0 || o.QuotaReservationTTL >= cache.DeletedRetention {
		errs = append(errs, fmt.Errorf("QuotaReservationTTL %s must be between 0 and %s", o.QuotaReservationTTL, cache.DeletedRetention))
	}
	return errors.Join(errs...)
}

// disabledIfEmpty maps "" to controller-runtime's "0" (off): its metrics
// server would otherwise default to :8080.
func disabledIfEmpty(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}
