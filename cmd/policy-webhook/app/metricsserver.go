package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/policy-webhook/policy-webhook/webhook"
)

// metricsOptions configure controller-runtime's metrics server. Secure, every
// scrape is authorized by the API server, so the policy names in the labels
// go only to who may read them. HTTP/1.1 only, as on the webhook port.
func metricsOptions(opts Options, certs *certwatcher.CertWatcher) metricsserver.Options {
	o := metricsserver.Options{BindAddress: disabledIfEmpty(opts.MetricsBindAddress)}
	if opts.MetricsSecure {
		o.SecureServing = true
		o.FilterProvider = authenticateAndAuthorize
		o.TLSOpts = []func(*tls.Config){webhook.TLSOption(certs.GetCertificate, false)}
	}
	return o
}

// registerRuntimeCollectors registers the Go runtime and process collectors,
// which controller-runtime registers only from its unused controller package.
// One registered already stays, even a Go collector with other options,
// refused with a plain error rather than AlreadyRegisteredError.
func registerRuntimeCollectors(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				continue
			}
			if msg := err.Error(); strings.Contains(msg, "previously registered descriptor") ||
				strings.Contains(msg, "already exists with the same fully-qualified name") {
				continue
			}
			return fmt.Errorf("registering the Go and process metrics: %w", err)
		}
	}
	return nil
}

// registrations remembers the collectors registered, so that Run leaves
// none behind for the next run's own.
type registrations struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *registrations) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *registrations) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *registrations) unregisterAll() {
	for _, c := range r.collectors {
		r.Unregister(c)
	}
	r.collectors = nil
}
