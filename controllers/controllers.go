package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Config is what the controllers need from their caller.
type Config struct {
	// Cache is the replica's informer cache, read only.
	Cache *cache.Cache
	// Dynamic applies AdmissionPolicy status and writes the last good
	// versions' ConfigMap.
	Dynamic dynamic.Interface
	// Kube records Events and renews and lists heartbeat Leases.
	Kube kubernetes.Interface
	// Replica names this replica (its Pod name) in status.replicas, its
	// heartbeat Lease and its Events; names must be distinct. Required.
	Replica string
	// PolicyNamespace is the webhook's own namespace, where the Leases and
	// the last good versions live.
	PolicyNamespace string
	// HeartbeatInterval is how often the replica renews its heartbeat
	// Lease, and the leader re-reads who is alive; 0 is the default.
	HeartbeatInterval time.Duration
	// Log receives the controllers' messages; the zero Logger discards them.
	Log logr.Logger
	// Metrics registers the controllers' metrics; nil registers none.
	Metrics prometheus.Registerer
	// Audit, if set, has the status.audit of each AdmissionPolicy, which
	// Status writes with the rest of the leader's status.
	Audit interface {
		AuditStatus(name string) (*v1alpha1.AuditStatus, bool)
	}
	// LedgerCleanupInterval is how often the leader removes the quota
	// ledgers of deleted namespaces; 0 is DefaultLedgerCleanupInterval.
	LedgerCleanupInterval time.Duration
	// CandidateInterval is the least time between two writes of this
	// replica's candidate counts; 0 is DefaultCandidateInterval.
	CandidateInterval time.Duration
	// CandidateEventInterval is the least time between two Events
	// summarising the outcomes of a ConfigMap's candidate; 0 is
	// DefaultCandidateEventInterval.
	CandidateEventInterval time.Duration
	// Clock is the controllers' clock; nil is the real one.
	Clock clock.PassiveClock
	// ExceptionCoverage, if set, is how many existing objects each
	// PolicyException (namespace/name) covered in the last audit sweep, and
	// when it ended; ok false before the first.
	ExceptionCoverage func() (objects map[string]int64, at time.Time, ok bool)
}

// DefaultCandidateInterval is Config.CandidateInterval's default: a
// replica writes its candidate counts at most this often while they change.
const DefaultCandidateInterval = 10 * time.Second

// DefaultCandidateEventInterval is Config.CandidateEventInterval's default.
const DefaultCandidateEventInterval = 10 * time.Minute

// MaxReplicaNameLength bounds a replica name so that the field manager and
// Lease names made from it stay within the API's limits.
const MaxReplicaNameLength = 100

// DefaultHeartbeatInterval is Config.HeartbeatInterval's default.
const DefaultHeartbeatInterval = 10 * time.Second

func (c *Config) validate() error {
	var errs []error
	if c.Cache == nil {
		errs = append(errs, errors.New("the Cache is required"))
	}
	if c.Dynamic == nil {
		errs = append(errs, errors.New("the Dynamic client is required"))
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
	if c.LedgerCleanupInterval < 0 {
		errs = append(errs, errors.New("LedgerCleanupInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// Controllers are the writers of one replica: Replica runs on every
// replica, the others on the elected one only.
type Controllers struct {
	Replica  *ReplicaStatus
	Status   *Status
	LastGood *LastGood
	Ledgers  *Ledgers
	// Exceptions writes PolicyException status and expiry Events.
	Exceptions *ExceptionStatus
}

// New makes the controllers and has the cache tell them of changes. Call it
// before the cache starts.
func New(cfg Config) (*Controllers, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuring the controllers: %w", err)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.CandidateEventInterval <= 0 {
		cfg.CandidateEventInterval = DefaultCandidateEventInterval
	}
	if cfg.CandidateInterval <= 0 {
		cfg.CandidateInterval = DefaultCandidateInterval
	}
	if cfg.LedgerCleanupInterval == 0 {
		cfg.LedgerCleanupInterval = DefaultLedgerCleanupInterval
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("configuring the controllers: %w", err)
	}
	w := &writer{cfg: cfg, log: cfg.Log, metrics: m}
	cs := &Controllers{
		Replica:    newReplicaStatus(w),
		Status:     &Status{w: w},
		LastGood:   &LastGood{w: w, max: lastGoodMaxBytes},
		Ledgers:    &Ledgers{w: w, interval: cfg.LedgerCleanupInterval},
		Exceptions: &ExceptionStatus{w: w, wake: make(chan struct{}, 1), emitted: map[types.UID]string{}},
	}
	cfg.Cache.OnSnapshot(func(s *cache.Snapshot) {
		for _, p := range s.Policies() {
			if p.Source.Kind == policy.SourceAdmissionPolicy {
				cs.Replica.enqueue(p.Source.Name)
				cs.Status.enqueue(p.Source)
			}
		}
		for src := range s.Errors {
			if src.Kind == policy.SourceAdmissionPolicy {
				cs.Replica.enqueue(src.Name)
			}
			cs.Status.enqueue(src)
		}
		for src := range s.Candidates {
			cs.Status.enqueue(src)
		}
		cs.LastGood.enqueue()
		cs.Exceptions.Poke()
	})
	cfg.Cache.OnAdmissionPolicy(func(name string) {
		cs.Replica.enqueue(name)
		cs.Status.enqueue(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name})
	})
	return cs, nil
}

// writer is what the controllers share: configuration, clients, metrics.
type writer struct {
	cfg     Config
	log     logr.Logger
	metrics *metrics
}

// The condition an AdmissionPolicy's status carries, and its reasons.
const (
	ConditionReady = "Ready"
	ReasonInForce  = "InForce"
	// ReasonInvalidPolicy, also the Warning Event's reason: the current
	// version is invalid; the message says which version stays in force.
	ReasonInvalidPolicy = "InvalidPolicy"
)

// FieldManager names the leader's writes, whichever replica leads, so that
// a new leader takes the fields over without a conflict.
const FieldManager = "policy-webhook"

// ReplicaFieldManager is the field manager of a replica's own
// status.replicas entry: server-side apply keeps each entry owned by its
// replica, and applying nothing under it removes a gone replica's entry.
func ReplicaFieldManager(replica string) string { return FieldManager + "/" + replica }

// written remembers, per AdmissionPolicy, what a writer last applied and
// the resourceVersion it decided from, so that a sync before the informer
// delivers that write does not apply the same again.
type written map[string]writeMemo

type writeMemo struct {
	from    string // resourceVersion decided from
	content any    // a comparable summary of what was applied
}

func (w written) pending(u *unstructured.Unstructured, content any) bool {
	m, ok := w[u.GetName()]
	return ok && m.from == u.GetResourceVersion() && m.content == content
}

func (w written) record(u *unstructured.Unstructured, content any) {
	w[u.GetName()] = writeMemo{from: u.GetResourceVersion(), content: content}
}

// statusOf decodes an AdmissionPolicy's status; one that cannot be read is
// read as empty, and replaced.
func statusOf(u *unstructured.Unstructured) v1alpha1.AdmissionPolicyStatus {
	var st v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st)
	}
	return st
}

// applyStatus applies status (nil: nothing) to an AdmissionPolicy's status
// subresource with server-side apply under manager. Force takes over fields
// another manager holds: each manager here owns its fields by design.
func (w *writer) applyStatus(ctx context.Context, name, manager string, status *v1alpha1.AdmissionPolicyStatus) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AdmissionPolicy",
		"metadata":   map[string]any{"name": name},
	}}
	if status != nil {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
		if err != nil {
			return fmt.Errorf("encoding the status of AdmissionPolicy %s: %w", name, err)
		}
		obj.Object["status"] = content
	}
	_, err := w.cfg.Dynamic.Resource(v1alpha1.Resource).ApplyStatus(ctx, name, obj, metav1.ApplyOptions{FieldManager: manager, Force: true})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("applying the status of AdmissionPolicy %s as %s: %w", name, manager, err)
	}
	w.metrics.statusUpdates.WithLabelValues(statusResultUpdated).Inc()
	return nil
}

// MetricStatusUpdates counts AdmissionPolicy status writes.
const MetricStatusUpdates = "policy_webhook_policy_status_updates_total"

const (
	statusResultUpdated = "updated"
	statusResultFailed  = "failed"
)

type metrics struct {
	statusUpdates *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{statusUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricStatusUpdates,
		Help: "AdmissionPolicy status writes, by result (updated, failed).",
	}, []string{"result"})}
	if reg != nil {
		if err := reg.Register(m.statusUpdates); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
