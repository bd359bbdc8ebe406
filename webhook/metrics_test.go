package webhook

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Label values a client chooses are bounded: an unknown operation or kind
// is counted as "other", never as a series of its own.
func TestMetricsLabels(t *testing.T) {
	m, err := NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(m.requestErrors); got != 8 {
		t.Errorf("%d request error series at start, want one per reason (8)", got)
	}
	if got := testutil.CollectAndCount(m.admissions) + testutil.CollectAndCount(m.durations); got != 0 {
		t.Errorf("%d admission series before the first admission, want none", got)
	}
	m.admission(policy.KindPod, admissionv1.Operation("PATCH"), verdictAllowed)
	m.admission(policy.KindPod, admissionv1.Create, verdictAllowed)
	m.duration("Secret", time.Millisecond)
	m.duration(policy.KindDeployment, time.Millisecond)
	m.duration(policy.SourceConfigMap, time.Millisecond)
	for _, lv := range [][]string{{"Pod", "other", "allowed"}, {"Pod", "CREATE", "allowed"}} {
		if got := testutil.ToFloat64(m.admissions.WithLabelValues(lv...)); got != 1 {
			t.Errorf("admissions_total%v = %v, want 1", lv, got)
		}
	}
	for _, kind := range []string{"other", "ConfigMap", "Deployment"} {
		if !m.durations.DeleteLabelValues(kind) {
			t.Errorf("no admission_duration_seconds series for kind %q", kind)
		}
	}
	if got := testutil.CollectAndCount(m.admissions) + testutil.CollectAndCount(m.durations); got != 2 {
		t.Errorf("%d further series, want none", got-2)
	}
}
