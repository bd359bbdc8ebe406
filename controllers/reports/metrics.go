package reports

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/policy-webhook/policy-webhook/audit"
)

// Metric names, for dashboards, alerts and tests.
const (
	MetricViolations    = "policy_webhook_audit_violations"
	MetricSweepDuration = "policy_webhook_audit_sweep_duration_seconds"
	MetricObjectsJudged = "policy_webhook_audit_objects_judged_total"
	MetricSweeps        = "policy_webhook_audit_sweeps_total"
	MetricReportWrites  = "policy_webhook_audit_report_writes_total"
)

type metrics struct {
	violations   *prometheus.GaugeVec
	duration     prometheus.Histogram
	judged       *prometheus.CounterVec
	sweeps       *prometheus.CounterVec
	reportWrites prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		violations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricViolations,
			Help: "Violations among the existing objects found by the last audit sweep, by policy source, rule and enforcement.",
		}, []string{"source", "rule", "enforcement"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricSweepDuration,
			Help:    "Seconds one audit sweep took: listing, judging and writing the results.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14), // 10ms to ~82s
		}),
		judged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricObjectsJudged,
			Help: "Existing objects judged by audit sweeps, by kind.",
		}, []string{"kind"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSweeps,
			Help: "Audit sweeps, by result (ok, failed, cancelled: the policies changed during it).",
		}, []string{"result"}),
		reportWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricReportWrites,
			Help: "PolicyReports applied by the audit (only those whose content changed).",
		}),
	}
	// Series known in advance exist from the start, at 0, for rate().
	for _, kind := range audit.Kinds() {
		m.judged.WithLabelValues(kind)
	}
	for _, result := range []string{"ok", "failed", "cancelled"} {
		m.sweeps.WithLabelValues(result)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.violations, m.duration, m.judged, m.sweeps, m.reportWrites} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the audit metrics: %w", err)
		}
	}
	return m, nil
}

// setViolations replaces the gauge's series with this sweep's counts, so
// that a fixed violation's series goes away.
func (m *metrics) setViolations(counts map[metricKey]int) {
	m.violations.Reset()
	for k, n := range counts {
		m.violations.WithLabelValues(k.source, k.rule, string(k.enforcement)).Set(float64(n))
	}
}
