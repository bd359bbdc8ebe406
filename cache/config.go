package cache

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
)

// Config is what a Cache needs from its caller. The clients must not be
// rate limited for the watches to keep up; they make no request per
// admission.
type Config struct {
	// Dynamic lists and watches ConfigMaps, AdmissionPolicies and MyApples,
	// and writes AdmissionPolicy status.
	Dynamic dynamic.Interface
	// Metadata lists and watches Namespaces, metadata only.
	Metadata metadata.Interface
	// Kube records Events on policy objects that fail to compile, and
	// renews and lists the replicas' heartbeat Leases.
	Kube kubernetes.Interface
	// Replica names this replica (its Pod name) in the status.replicas
	// of AdmissionPolicies, in its heartbeat Lease and in the Events it
	// writes as leader. Replicas must have distinct names. Required.
	Replica string
	// HeartbeatInterval is how often the replica renews its heartbeat
	// Lease, and the leader re-reads who is alive. A replica whose Lease
	// has not been renewed for HeartbeatInterval × heartbeatMisses is
	// gone. Default 10s.
	HeartbeatInterval time.Duration
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
	if c.Kube == nil {
		errs = append(errs, errors.New("the Kube client is required"))
	}
	if c.PolicyNamespace == "" {
		errs = append(errs, errors.New("PolicyNamespace is required"))
	}
	if c.Replica == "" {
		errs = append(errs, errors.New("the Replica name is required"))
	} else if msgs := validation.IsDNS1123Subdomain(c.Replica); len(msgs) > 0 || len(c.Replica) > MaxReplicaNameLength {
		errs = append(errs, fmt.Errorf("the Replica name %q must be a DNS-1123 subdomain (a Pod name) of at most %d characters", c.Replica, MaxReplicaNameLength))
	}
	if c.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("HeartbeatInterval must not be negative"))
	}
	if c.ResyncPeriod < 0 {
		errs = append(errs, errors.New("ResyncPeriod must not be negative"))
	}
	return errors.Join(errs...)
}

// MaxReplicaNameLength bounds a replica name so that the names made from it
// (field manager "policy-webhook/<replica>", at most 128 characters; Lease
// policy-webhook-replica-<replica>) stay within the API's limits. Pod names
// of a Deployment are far shorter.
const MaxReplicaNameLength = 100

// DefaultHeartbeatInterval is Config.HeartbeatInterval's default.
const DefaultHeartbeatInterval = 10 * time.Second

func (c Config) withDefaults() Config {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return c
}
