package cache

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for dashboards, alerts and tests.
const (
	MetricPolicies     = "policy_webhook_policies"
	MetricPolicyErrors = "policy_webhook_policy_errors"
	// MetricCandidateErrors: 1 for each source whose newest candidate is invalid.
	MetricCandidateErrors = "policy_webhook_candidate_errors"
	MetricSnapshotBuilds  = "policy_webhook_snapshot_builds_total"
	MetricPropagation     = "policy_webhook_policy_propagation_seconds"
	MetricCacheSynced     = "policy_webhook_cache_synced"
	MetricCachedMyApples  = "policy_webhook_cached_myapples"
	MetricWatchErrors     = "policy_webhook_cache_watch_errors_total"
	MetricCacheStale      = "policy_webhook_cache_stale_seconds"
	// MetricUnseenNamespaces counts admissions for a namespace the
	// informer did not hold (EnsureNamespace), by outcome.
	MetricUnseenNamespaces = "policy_webhook_unseen_namespaces_total"
	// MetricExceptionsInForce counts the PolicyExceptions active now.
	MetricExceptionsInForce = "policy_webhook_exceptions_in_force"
)

const (
	metricLabelKind         = "kind"
	metricLabelNamespace    = "namespace"
	metricLabelName         = "name"
	metricLabelInformer     = "informer"
	metricLabelReason       = "reason"
	propagationBucketsStart = 0.0001 // 100µs
)

// metrics are one Cache's collectors. They exist even when nothing
// registers them, so the code that updates them never branches.
type metrics struct {
	policies     *prometheus.GaugeVec
	policyErrors *prometheus.GaugeVec
	// candidateErrors: 1 for each source whose newest candidate is invalid.
	candidateErrors *prometheus.GaugeVec
	builds          prometheus.Counter
	propagation     prometheus.Histogram
	synced          prometheus.Gauge
	apples          prometheus.GaugeFunc
	exceptions      prometheus.GaugeFunc
	watchErrors     *prometheus.CounterVec
	// unseenNamespaces by outcome (namespaces.go).
	unseenNamespaces *prometheus.CounterVec

	reg prometheus.Registerer // nil: none
}

func newMetrics(reg prometheus.Registerer, apples, exceptions func() float64) (*metrics, error) {
	m := &metrics{
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricPolicies,
			Help: "Policies in force, by carrier kind (ConfigMap, AdmissionPolicy).",
		}, []string{metricLabelKind}),
		policyErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricPolicyErrors,
			Help: "1 for each policy source whose newest version is invalid and not in force (its last good version, if any, stays in force).",
		}, []string{metricLabelKind, metricLabelNamespace, metricLabelName}),
		candidateErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricCandidateErrors,
			Help: "1 for each policy source whose newest candidate is invalid and not judged (its last good candidate, if any, still is; the policy in force is untouched).",
		}, []string{metricLabelKind, metricLabelNamespace, metricLabelName}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSnapshotBuilds,
			Help: "Policy snapshots built and swapped in.",
		}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricPropagation,
			Help:    "Seconds from the informer delivering a policy change to the snapshot that enforces it being swapped in.",
			Buckets: prometheus.ExponentialBuckets(propagationBucketsStart, 2, 16),
		}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricCacheSynced,
			Help: "1 once every informer has synced and the first policy snapshot is built.",
		}),
		apples: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricCachedMyApples,
			Help: "MyApples held in the cache for the namespace quota rule.",
		}, apples),
		exceptions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: MetricExceptionsInForce,
			Help: "PolicyExceptions in force now: valid, and before their expiresAt (read against the clock when scraped).",
		}, exceptions),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWatchErrors,
			Help: "Failed lists and watches of the cache's informers, and error events on their watches, by informer and reason (unavailable: the API server did not answer or answered 404/429/5xx, and the call is retried within 2 s; expired: 410 Gone, the informer relists; other).",
		}, []string{metricLabelInformer, metricLabelReason}),
		unseenNamespaces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricUnseenNamespaces,
			Help: "Admissions for a namespace the cache did not hold yet, by outcome: informer (it delivered the namespace within the wait), read (read once from the API server), not_found and error (the request was refused).",
		}, []string{"outcome"}),
		reg: reg,
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.policies, m.policyErrors, m.candidateErrors, m.builds, m.propagation, m.synced, m.apples, m.exceptions, m.watchErrors, m.unseenNamespaces} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return m, nil
}

// registerStaleness registers one policy_webhook_cache_stale_seconds series
// per informer, read when scraped.
func (m *metrics) registerStaleness(informers []watchedInformer) error {
	if m.reg == nil {
		return nil
	}
	var errs []error
	for _, i := range informers {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        MetricCacheStale,
			Help:        "Seconds since the informer's cache was last known current: 0 while it has a watch open on the API server.",
			ConstLabels: prometheus.Labels{metricLabelInformer: i.health.name},
		}, func() float64 { return i.health.staleness(i.health.clock.Now()).For.Seconds() })
		if err := m.reg.Register(g); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}
