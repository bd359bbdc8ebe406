package cache

import (
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// The cache holds PolicyExceptions from their informer, with the policy in
// force; each stops applying at its expiresAt with no write, and an invalid
// one lifts nothing.
func TestPolicyExceptions(t *testing.T) {
	now := time.Now()
	f := newFixture(t, fakecluster.PolicyConfigMap(fakecluster.PolicyNamespace, "registries", fakecluster.RegistryPolicy))
	f.start()
	c := f.cache
	at := func(ns string, when time.Time) *policy.Request {
		r := fakecluster.PodRequest(ns, "nginx")
		r.Now = when
		return r
	}
	fakecluster.Allowed(t, c, at("team-a", now), false)

	x := f.Create(fakecluster.PolicyException("team-a", "legacy", 1, now.Add(time.Hour),
		"ConfigMap", fakecluster.PolicyNamespace, "registries", "pods.allowedRegistries"))
	fakecluster.Eventually(t, "the exception is in force", func() bool { return c.Snapshot().Set.Exceptions().Len() == 1 })
	d := fakecluster.Allowed(t, c, at("team-a", now), true)
	if w := d.Warnings(); len(w) != 1 || w[0] == "" {
		t.Errorf("warnings %q, want the excepted violation", w)
	}
	fakecluster.Allowed(t, c, at("team-b", now), false)
	fakecluster.Allowed(t, c, at("team-a", now.Add(time.Hour)), false)
	if got := promtest.One(t, f.reg, MetricExceptionsInForce, nil); got != 1 {
		t.Errorf("%s = %v, want 1", MetricExceptionsInForce, got)
	}

	// A status write leaves the generation alone: nothing to compile.
	built := c.Snapshot().Version
	x.Object["status"] = map[string]any{"active": "True"}
	f.Update(x)

	// A new generation without a reason is invalid: it lifts nothing.
	bad := fakecluster.PolicyException("team-a", "legacy", 2, now.Add(time.Hour),
		"ConfigMap", fakecluster.PolicyNamespace, "registries", "pods.allowedRegistries")
	bad.SetUID(x.GetUID())
	delete(bad.Object["spec"].(map[string]any), "reason")
	f.Update(bad)
	fakecluster.Eventually(t, "the invalid exception lifts nothing", func() bool { return c.Snapshot().Set.Exceptions().Len() == 0 })
	if c.Snapshot().Version != built+1 {
		t.Errorf("snapshot version %d, want %d: a status write rebuilt the snapshot", c.Snapshot().Version, built+1)
	}
	fakecluster.Allowed(t, c, at("team-a", now), false)

	f.Update(x)
	fakecluster.Eventually(t, "the exception is back", func() bool { return c.Snapshot().Set.Exceptions().Len() == 1 })
	f.Delete(x)
	fakecluster.Eventually(t, "the deleted exception is gone", func() bool { return c.Snapshot().Set.Exceptions().Len() == 0 })
}
