package webhook

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Label values. Each metric's series are resolved once, on first use, and
// kept in fixed arrays indexed by these small enums, so recording a
// request allocates nothing and looks up no label hash.
type (
	kindIndex    uint8
	opIndex      uint8
	verdictIndex uint8
	errorReason  uint8
)

const (
	kindPod kindIndex = iota
	kindMyApple
	kindConfigMap
	kindAdmissionPolicy
	kindOther
	numKinds
)

var kindNames = [numKinds]string{policy.KindPod, policy.KindMyApple, policy.SourceConfigMap, policy.SourceAdmissionPolicy, "other"}

func kindOf(k string) kindIndex {
	switch k {
	case policy.KindPod:
		return kindPod
	case policy.KindMyApple:
		return kindMyApple
	case policy.SourceConfigMap:
		return kindConfigMap
	case policy.SourceAdmissionPolicy:
		return kindAdmissionPolicy
	}
	return kindOther
}

const (
	opCreate opIndex = iota
	opUpdate
	opDelete
	opConnect
	opOther
	numOps
)

var opNames = [numOps]string{"CREATE", "UPDATE", "DELETE", "CONNECT", "other"}

func opOf(op admissionv1.Operation) opIndex {
	switch op {
	case admissionv1.Create:
		return opCreate
	case admissionv1.Update:
		return opUpdate
	case admissionv1.Delete:
		return opDelete
	case admissionv1.Connect:
		return opConnect
	}
	return opOther
}

const (
	// verdictAllowed: judged and admitted (possibly with warnings).
	verdictAllowed verdictIndex = iota
	// verdictDenied: judged and refused (a Deny violation, an invalid policy).
	verdictDenied
	// verdictNotSynced: refused because the policy cache has not synced.
	verdictNotSynced
	// verdictAllowedNotSynced: admitted unjudged before sync (fail open).
	verdictAllowedNotSynced
	// verdictSkipped: not ours to judge (an operation, subresource or
	// resource the path does not cover), admitted.
	verdictSkipped
	// verdictError: the object could not be read; refused.
	verdictError
	// verdictBusy: refused with 429 for want of room to judge it now.
	verdictBusy
	numVerdicts
)

var verdictNames = [numVerdicts]string{"allowed", "denied", "not_synced", "allowed_not_synced", "skipped", "error", "busy"}

const (
	errMethod errorReason = iota
	errContentType
	errTooLarge
	errMalformed
	errPanic
	errWrite
	errWrongResource
	errShed
	numErrorReasons
)

var errorReasonNames = [numErrorReasons]string{"method_not_allowed", "unsupported_media_type", "too_large", "malformed", "panic", "write", "wrong_resource", "overloaded"}

// Metrics are the webhook's Prometheus metrics. One value serves every
// handler of a server.
type Metrics struct {
	admissionsVec *prometheus.CounterVec
	durationVec   *prometheus.HistogramVec
	violations    *prometheus.CounterVec
	requestErrors [numErrorReasons]prometheus.Counter

	admissions [numKinds][numOps][numVerdicts]lazyCounter
	durations  [numKinds]lazyObserver
}

// lazyCounter resolves its series on first use: resolving all of them up
// front would export a hundred always-zero series.
type lazyCounter struct {
	once sync.Once
	c    prometheus.Counter
}

type lazyObserver struct {
	once sync.Once
	o    prometheus.Observer
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissionsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_webhook_admissions_total",
			Help: "Admission requests answered, by kind, operation and verdict " +
				"(allowed, denied, not_synced, allowed_not_synced, skipped, error, busy).",
		}, []string{"kind", "operation", "verdict"}),
		durationVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "policy_webhook_admission_duration_seconds",
			Help: "Time from reading an AdmissionReview to writing its response, by kind.",
			// 25µs to 0.2s: an answer from memory takes tens of microseconds.
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14),
		}, []string{"kind"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_webhook_violations_total",
			Help: "Policy violations found in admitted or refused objects, by rule and enforcement (Deny, Warn, Audit).",
		}, []string{"rule", "enforcement"}),
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "policy_webhook_request_errors_total",
		Help: "HTTP requests refused before judging, by reason " +
			"(method_not_allowed, unsupported_media_type, too_large, malformed, panic, write, wrong_resource, overloaded).",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.admissionsVec, m.durationVec, m.violations, errs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the webhook's metrics: %w", err)
		}
	}
	// Every reason is exported from the start, so an alert on its rate
	// works before the first error.
	for i := range m.requestErrors {
		m.requestErrors[i] = errs.WithLabelValues(errorReasonNames[i])
	}
	return m, nil
}

func (m *Metrics) admission(k kindIndex, op opIndex, v verdictIndex) {
	lc := &m.admissions[k][op][v]
	lc.once.Do(func() { lc.c = m.admissionsVec.WithLabelValues(kindNames[k], opNames[op], verdictNames[v]) })
	lc.c.Inc()
}

func (m *Metrics) duration(k kindIndex, d time.Duration) {
	lo := &m.durations[k]
	lo.once.Do(func() { lo.o = m.durationVec.WithLabelValues(kindNames[k]) })
	lo.o.Observe(d.Seconds())
}

func (m *Metrics) requestError(r errorReason) { m.requestErrors[r].Inc() }

func (m *Metrics) violation(v *policy.Violation) {
	m.violations.WithLabelValues(v.Rule, string(v.Enforcement)).Inc()
}
