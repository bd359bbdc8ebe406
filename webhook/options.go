package webhook

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Defaults of Options, also the serve command's flag defaults.
const (
	DefaultPolicyNamespace         = policy.DefaultPolicyNamespace
	DefaultPort                    = 9443
	DefaultGracefulShutdownTimeout = 20 * time.Second
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

	// MetricsRegistry receives the webhook's and the cache's metrics; nil
	// is controller-runtime's registry, which the metrics server serves.
	// Everything registered is unregistered when Run returns.
	MetricsRegistry prometheus.Registerer

	// OnReady, if set, is called once, the first time the server is ready
	// (the same checks as /readyz), from a goroutine of its own.
	OnReady func()
}

func (o Options) withDefaults() Options {
	if o.PolicyNamespace == "" {
		o.PolicyNamespace = DefaultPolicyNamespace
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
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("ShutdownDelay %s is negative", o.ShutdownDelay))
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
