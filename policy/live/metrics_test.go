package live

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/policy-webhook/policy-webhook/policy"
)

// series returns the metrics of a family whose labels include want.
func series(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []*dto.Metric
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	metric:
		for _, m := range fam.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metric
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func countSeries(t *testing.T, reg *prometheus.Registry, name string) int {
	return len(series(t, reg, name, nil))
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	s := series(t, reg, name, labels)
	if len(s) != 1 {
		t.Fatalf("%d series of %s%v, want 1", len(s), name, labels)
	}
	return s[0].GetGauge().GetValue()
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	s := series(t, reg, name, labels)
	if len(s) != 1 {
		t.Fatalf("%d series of %s%v, want 1", len(s), name, labels)
	}
	return s[0].GetCounter().GetValue()
}

func TestMetrics(t *testing.T) {
	f := newFixture(t,
		policyConfigMap("team-a", "registries", registryPolicy),
		policyConfigMap(testPolicyNamespace, "global", registryPolicy),
		admissionPolicy("trusted", 1, registrySpec("ghcr.io/")),
		myApple("team-a", "a", 1),
	)
	if v := gaugeValue(t, f.reg, MetricCacheSynced, nil); v != 0 {
		t.Errorf("%s = %v before Start", MetricCacheSynced, v)
	}
	f.start()
	if v := gaugeValue(t, f.reg, MetricCacheSynced, nil); v != 1 {
		t.Errorf("%s = %v after sync", MetricCacheSynced, v)
	}
	if v := gaugeValue(t, f.reg, MetricPolicies, map[string]string{"kind": "ConfigMap"}); v != 2 {
		t.Errorf("%s{kind=ConfigMap} = %v, want 2", MetricPolicies, v)
	}
	if v := gaugeValue(t, f.reg, MetricPolicies, map[string]string{"kind": "AdmissionPolicy"}); v != 1 {
		t.Errorf("%s{kind=AdmissionPolicy} = %v, want 1", MetricPolicies, v)
	}
	builds := counterValue(t, f.reg, MetricSnapshotBuilds, nil)
	if builds < 1 {
		t.Errorf("%s = %v after the first build", MetricSnapshotBuilds, builds)
	}

	cm := f.create(policyConfigMap("team-b", "registries", registryPolicy))
	f.inForce(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: "registries"}, cm.GetResourceVersion())
	eventually(t, "a propagation time is observed", func() bool {
		s := series(t, f.reg, MetricPropagation, nil)
		return len(s) == 1 && s[0].GetHistogram().GetSampleCount() >= 1
	})
	if v := counterValue(t, f.reg, MetricSnapshotBuilds, nil); v <= builds {
		t.Errorf("%s = %v after a change, was %v", MetricSnapshotBuilds, v, builds)
	}
	if v := gaugeValue(t, f.reg, MetricPolicies, map[string]string{"kind": "ConfigMap"}); v != 3 {
		t.Errorf("%s{kind=ConfigMap} = %v, want 3", MetricPolicies, v)
	}
	if v := gaugeValue(t, f.reg, MetricCachedMyApples, nil); v != 1 {
		t.Errorf("%s = %v, want 1", MetricCachedMyApples, v)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a Config without clients")
	}
	// Two caches cannot register the same metrics in one registry.
	f := newFixture(t)
	if _, err := New(Config{Dynamic: f.dyn, Metadata: f.meta, Kube: f.kube, PolicyNamespace: "p", Metrics: f.reg}); err == nil {
		t.Fatal("a second cache registered the same metrics")
	}
}
