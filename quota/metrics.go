package quota

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count and time reservations, and count ledger write conflicts.
type Metrics struct {
	outcomes  [numOutcomes]prometheus.Counter
	seconds   prometheus.Observer
	conflicts prometheus.Counter
}

type outcome uint8

const (
	outcomeReserved outcome = iota
	outcomeFull
	outcomeError
	outcomeStale
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"reserved", "full", "error", "stale"}

// NewMetrics registers the ledger's metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	reservations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "policy_webhook_quota_reservations_total",
		Help: "MyApple admissions that an enforced namespace quota allowed, by the outcome of reserving their quantity: reserved, full (the namespace's ledger holds too many pending reservations), error (the ledger could not be read or written) or stale (this replica's MyApple cache has had no watch for too long to count exactly; nothing was tried). Any but reserved refused the admission.",
	}, []string{"outcome"})
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "policy_webhook_quota_reservation_seconds",
		Help:    "Time to reserve a MyApple's quantity in its namespace's quota ledger, conflicts and retries included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	conflicts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "policy_webhook_quota_conflicts_total",
		Help: "Quota ledger writes refused because another admission wrote first; each is followed by a fresh read and a new judgement.",
	})
	for _, c := range []prometheus.Collector{reservations, seconds, conflicts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the quota metrics: %w", err)
		}
	}
	m := &Metrics{seconds: seconds, conflicts: conflicts}
	for i := range numOutcomes {
		m.outcomes[i] = reservations.WithLabelValues(outcomeNames[i])
	}
	return m, nil
}

// reserved counts a reservation tried, and the time it took.
func (m *Metrics) reserved(o outcome, took time.Duration) {
	if m == nil {
		return
	}
	m.outcomes[o].Inc()
	m.seconds.Observe(took.Seconds())
}

// refused counts an admission refused before any reservation was tried.
func (m *Metrics) refused(o outcome) {
	if m != nil {
		m.outcomes[o].Inc()
	}
}

func (m *Metrics) conflict() {
	if m != nil {
		m.conflicts.Inc()
	}
}
