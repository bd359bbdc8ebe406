package webhook

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Verdicts, the values of policy_webhook_admissions_total's verdict label.
const (
	verdictAllowed          = "allowed"            // judged and admitted, possibly with warnings
	verdictDenied           = "denied"             // a Deny violation or an invalid policy
	verdictNotSynced        = "not_synced"         // refused: the policy cache has not synced
	verdictAllowedNotSynced = "allowed_not_synced" // admitted unjudged before sync (fail open)
	verdictSkipped          = "skipped"            // not this path's to judge; admitted
	verdictError            = "error"              // the object could not be read; refused
	verdictBusy             = "busy"               // refused with 429: no room to judge it now
	verdictUnknownNamespace = "unknown_namespace"  // refused: its namespace could not be confirmed
)

// Reasons, the values of policy_webhook_request_errors_total's reason label.
const (
	errMethod        = "method_not_allowed"
	errContentType   = "unsupported_media_type"
	errTooLarge      = "too_large"
	errMalformed     = "malformed"
	errPanic         = "panic"
	errWrite         = "write"
	errWrongResource = "wrong_resource"
	errShed          = "overloaded"
)

// Metrics are the webhook's Prometheus metrics, one value for every handler.
type Metrics struct {
	admissions    *prometheus.CounterVec
	durations     *prometheus.HistogramVec
	violations    *prometheus.CounterVec
	excepted      *prometheus.CounterVec
	requestErrors *prometheus.CounterVec
	candidates    *prometheus.CounterVec
}

// MetricCandidateEvaluations counts candidate outcomes, by source and outcome.
const MetricCandidateEvaluations = "policy_webhook_candidate_evaluations_total"

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_webhook_admissions_total",
			Help: "Admission requests answered, by kind, operation and verdict " +
				"(allowed, denied, not_synced, allowed_not_synced, skipped, error, busy, unknown_namespace).",
		}, []string{"kind", "operation", "verdict"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "policy_webhook_admission_duration_seconds",
			Help: "Time from reading an AdmissionReview to writing its response, by kind.",
			// 25µs to 0.2s: an answer from memory takes tens of microseconds.
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14),
		}, []string{"kind"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_webhook_violations_total",
			Help: "Policy violations found in admitted or refused objects, by rule and enforcement (Deny, Warn, Audit).",
		}, []string{"rule", "enforcement"}),
		excepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricExceptedViolations,
			Help: "Policy violations a PolicyException lifted at admission (not enforced), by policy and rule.",
		}, []string{"policy", "rule"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "policy_webhook_request_errors_total",
			Help: "HTTP requests refused before judging, by reason " +
				"(method_not_allowed, unsupported_media_type, too_large, malformed, panic, write, wrong_resource, overloaded).",
		}, []string{"reason"}),
		candidates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCandidateEvaluations,
			Help: "Admissions judged by a policy's candidate beside the policy in force, by source and outcome " +
				"(same, would_deny, would_allow, would_warn); the candidate never changes the verdict.",
		}, []string{"source", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.admissions, m.durations, m.violations, m.excepted, m.requestErrors, m.candidates} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the webhook's metrics: %w", err)
		}
	}
	// Export every reason from the start, so alerts on its rate work at once.
	for _, r := range []string{errMethod, errContentType, errTooLarge, errMalformed, errPanic, errWrite, errWrongResource, errShed} {
		m.requestErrors.WithLabelValues(r)
	}
	return m, nil
}

// admission counts an answer; kind is one the handler judges.
func (m *Metrics) admission(kind string, op admissionv1.Operation, verdict string) {
	switch op {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
	default:
		op = "other" // a client's made-up operation must not add series
	}
	m.admissions.WithLabelValues(kind, string(op), verdict).Inc()
}

// duration observes an answer's time; kind comes from the client, so only
// the kinds judged here get a series of their own.
func (m *Metrics) duration(kind string, d time.Duration) {
	switch kind {
	case policy.KindPod, policy.KindMyApple, policy.SourceConfigMap, policy.SourceAdmissionPolicy, policy.SourcePolicyException:
	default:
		if _, ok := policy.PodControllerOf(policy.Kind(kind)); !ok {
			kind = "other"
		}
	}
	m.durations.WithLabelValues(kind).Observe(d.Seconds())
}

func (m *Metrics) requestError(reason string) { m.requestErrors.WithLabelValues(reason).Inc() }

func (m *Metrics) violation(v *policy.Violation) {
	if v.ExceptedBy != "" {
		m.excepted.WithLabelValues(v.Source, v.Rule).Inc()
		return
	}
	m.violations.WithLabelValues(v.Rule, string(v.Enforcement)).Inc()
}

// candidate counts one candidate outcome. Sources are bounded by the
// policies the cluster holds; outcomes are the four of v1alpha1.
func (m *Metrics) candidate(r *policy.CandidateResult) {
	m.candidates.WithLabelValues(r.Candidate.SourceName(), r.Outcome).Inc()
}

// MetricExceptedViolations counts the violations exceptions lifted.
const MetricExceptedViolations = "policy_webhook_excepted_violations_total"
