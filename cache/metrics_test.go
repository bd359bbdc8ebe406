package cache

import (
	"testing"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

func TestMetrics(t *testing.T) {
	f := newFixture(t,
		fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy),
		fakecluster.PolicyConfigMap(fakecluster.PolicyNamespace, "global", fakecluster.RegistryPolicy),
		fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/")),
		fakecluster.MyApple("team-a", "a", 1),
	)
	if v := promtest.One(t, f.reg, MetricCacheSynced, nil); v != 0 {
		t.Errorf("%s = %v before Start", MetricCacheSynced, v)
	}
	f.start()
	if v := promtest.One(t, f.reg, MetricCacheSynced, nil); v != 1 {
		t.Errorf("%s = %v after sync", MetricCacheSynced, v)
	}
	if v := promtest.One(t, f.reg, MetricPolicies, map[string]string{"kind": "ConfigMap"}); v != 2 {
		t.Errorf("%s{kind=ConfigMap} = %v, want 2", MetricPolicies, v)
	}
	if v := promtest.One(t, f.reg, MetricPolicies, map[string]string{"kind": "AdmissionPolicy"}); v != 1 {
		t.Errorf("%s{kind=AdmissionPolicy} = %v, want 1", MetricPolicies, v)
	}
	builds := promtest.One(t, f.reg, MetricSnapshotBuilds, nil)
	if builds < 1 {
		t.Errorf("%s = %v after the first build", MetricSnapshotBuilds, builds)
	}

	cm := f.Create(fakecluster.PolicyConfigMap("team-b", "registries", fakecluster.RegistryPolicy))
	f.inForce(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: "registries"}, cm.GetResourceVersion())
	fakecluster.Eventually(t, "a propagation time is observed", func() bool {
		return promtest.Count(t, f.reg, MetricPropagation, nil) == 1 && promtest.Sum(t, f.reg, MetricPropagation, nil) >= 1
	})
	if v := promtest.One(t, f.reg, MetricSnapshotBuilds, nil); v <= builds {
		t.Errorf("%s = %v after a change, was %v", MetricSnapshotBuilds, v, builds)
	}
	if v := promtest.One(t, f.reg, MetricPolicies, map[string]string{"kind": "ConfigMap"}); v != 3 {
		t.Errorf("%s{kind=ConfigMap} = %v, want 3", MetricPolicies, v)
	}
	if v := promtest.One(t, f.reg, MetricCachedMyApples, nil); v != 1 {
		t.Errorf("%s = %v, want 1", MetricCachedMyApples, v)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a Config without clients")
	}
	// Two caches cannot register the same metrics in one registry.
	f := newFixture(t)
	if _, err := New(Config{Dynamic: f.Dyn, Metadata: f.Meta, PolicyNamespace: "p", Metrics: f.reg}); err == nil {
		t.Fatal("a second cache registered the same metrics")
	}
}
