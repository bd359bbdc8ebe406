// Package promtest reads the values of Prometheus metrics from a registry,
// for tests.
package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sum is the sum of the values of the series of metric family name whose
// labels include every pair of want (nil: every series): a counter's or
// gauge's value, an untyped one's, a histogram's or summary's sample
// count. It is 0 when no series matches.
func Sum(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	tb.Helper()
	sum := 0.0
	for _, m := range series(tb, g, name, want) {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		}
	}
	return sum
}

// Count is the number of series of metric family name whose labels
// include every pair of want.
func Count(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) int {
	tb.Helper()
	return len(series(tb, g, name, want))
}

// One is the value (as Sum gives it) of the one series of name whose
// labels include want; the test fails if there is not exactly one.
func One(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	tb.Helper()
	if n := Count(tb, g, name, want); n != 1 {
		tb.Fatalf("%d series of %s%v, want 1", n, name, want)
	}
	return Sum(tb, g, name, want)
}

func series(tb testing.TB, g prometheus.Gatherer, name string, want map[string]string) []*dto.Metric {
	tb.Helper()
	families, err := g.Gather()
	if err != nil {
		tb.Fatalf("gathering metrics: %v", err)
	}
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}
