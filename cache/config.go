package cache

import (
	"errors"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// Config is what a Cache needs from its caller. The clients must not be
// rate limited for the watches to keep up; they make no request per
// admission.
type Config struct {
	// Dynamic lists and watches ConfigMaps, AdmissionPolicies and MyApples.
	Dynamic dynamic.Interface
	// Metadata lists and watches Namespaces, metadata only.
	Metadata metadata.Interface
	// Compiler compiles policy sources; nil is a new one. The webhook's
	// admission of policy objects shares it, so CEL environments are built
	// once per process.
	Compiler *carrier.Compiler
	// PolicyNamespace is the webhook's own namespace: ConfigMap policies
	// there apply cluster-wide, elsewhere only to their own namespace.
	PolicyNamespace string
	// Log receives the cache's own messages; the zero Logger discards them.
	Log logr.Logger
	// Metrics registers the cache's metrics (controller-runtime's
	// metrics.Registry in production); nil registers none.
	Metrics prometheus.Registerer
	// ResyncPeriod re-delivers every cached object to the handlers this
	// often; 0 never does. Nothing here needs it: each change arrives as
	// its own event, and a resync of an unchanged object is skipped.
	ResyncPeriod time.Duration
}

func (c *Config) validate() error {
	var errs []error
	if c.Dynamic == nil {
		errs = append(errs, errors.New("the Dynamic client is required"))
	}
	if c.Metadata == nil {
		errs = append(errs, errors.New("the Metadata client is required"))
	}
	if c.PolicyNamespace == "" {
		errs = append(errs, errors.New("PolicyNamespace is required"))
	}
	if c.ResyncPeriod < 0 {
		errs = append(errs, errors.New("ResyncPeriod must not be negative"))
	}
	return errors.Join(errs...)
}
