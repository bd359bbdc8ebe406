package controllers

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

// lastGoodEntries reads the persisted last good versions as the fake API
// server holds them, keyed by source; nil when there is no ConfigMap.
func (f *fixture) lastGoodEntries() map[policy.Source]cache.LastGoodEntry {
	f.T.Helper()
	u, err := f.Dyn.Resource(fakecluster.ConfigMaps).Namespace(fakecluster.PolicyNamespace).Get(context.Background(), cache.LastGoodConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.T.Fatalf("reading the last good versions: %v", err)
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	out := map[policy.Source]cache.LastGoodEntry{}
	for k, v := range data {
		var e cache.LastGoodEntry
		if err := yaml.UnmarshalStrict([]byte(v), &e); err != nil || k != cache.LastGoodKey(e.Source()) {
			// Not one the leader writes: counted, so that it shows.
			out[policy.Source{Kind: "unreadable", Name: k}] = e
			continue
		}
		out[e.Source()] = e
	}
	return out
}

// persisted waits until the persisted entries are exactly want: source to
// "uid@version".
func (f *fixture) persisted(want map[policy.Source]string) map[policy.Source]cache.LastGoodEntry {
	f.T.Helper()
	var got map[policy.Source]cache.LastGoodEntry
	fakecluster.Eventually(f.T, fmt.Sprintf("the persisted last good versions are %v", want), func() bool {
		got = f.lastGoodEntries()
		if len(got) != len(want) {
			return false
		}
		for src, e := range got {
			if want[src] != string(e.UID)+"@"+e.Version {
				return false
			}
		}
		return true
	})
	return got
}

// A source made invalid keeps its last good version in force on a replica
// that starts afterwards: the leader persisted it, the new replica
// enforces it and says so; fixing or deleting the source takes its entry
// out again.
func TestLastGoodSurvivesRestart(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	ap := fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/"))
	f := newFixture(t, cm, ap)
	f.start()
	cmSrc := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	apSrc := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}
	goodRV := cm.GetResourceVersion()
	f.inForce(cmSrc, goodRV)
	f.inForce(apSrc, "1")
	// Nothing is invalid: nothing is written.
	if got := f.lastGoodEntries(); got != nil {
		t.Errorf("last good versions %v with every policy valid", got)
	}

	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.InvalidPolicy}
	f.Update(cm)
	ap = ap.DeepCopy()
	ap.Object["spec"] = map[string]any{"pods": map[string]any{"allowedRegistries": []any{"ftp://nope/"}}}
	ap.SetGeneration(2)
	f.Update(ap)
	f.failed(cmSrc, cm.GetResourceVersion())
	f.failed(apSrc, "2")
	entries := f.persisted(map[policy.Source]string{cmSrc: string(cm.GetUID()) + "@" + goodRV, apSrc: string(ap.GetUID()) + "@1"})
	if got := entries[cmSrc].Policy; got != fakecluster.RegistryPolicy {
		t.Errorf("persisted policy.yaml %q, want %q", got, fakecluster.RegistryPolicy)
	}
	if got := entries[apSrc].Policy; got != `{"pods":{"allowedRegistries":["ghcr.io/"]}}` {
		t.Errorf("persisted spec %s", got)
	}

	f.restart()
	for src, version := range map[policy.Source]string{cmSrc: goodRV, apSrc: "1"} {
		se := f.cache.Snapshot().Errors[src]
		if se.InForce != version || !se.Restored {
			t.Errorf("%s: in force %q (restored %v), want %s restored", src, se.InForce, se.Restored, version)
		}
	}
	// Both last good versions judge: ghcr.io/ everywhere, and
	// registry.example.com/ in team-a.
	d := fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-b", "nginx"), false)
	if got, want := d.Message(), `policy violation: AdmissionPolicy trusted pods.allowedRegistries spec.containers[0].image: image "nginx" resolves to docker.io/library/nginx:latest, which is not under an allowed registry (ghcr.io/)`; got != want {
		t.Errorf("message\n  %s\nwant\n  %s", got, want)
	}
	fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-b", "ghcr.io/app:1"), true)
	d = fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "ghcr.io/app:1"), false)
	if len(d.Violations) != 1 || d.Violations[0].Source != "ConfigMap team-a/registries" || d.Violations[0].Rule != "pods.allowedRegistries" {
		t.Errorf("violations %v, want the ConfigMap's last good version's", d.Violations)
	}

	// Status and Events say which version is in force, and from where.
	restored := "generation 1, the last good version, stays in force as persisted in ConfigMap policy-system/policy-webhook-last-good"
	fakecluster.Eventually(t, "the Ready condition names the persisted version", func() bool {
		u, ok := f.cache.AdmissionPolicy("trusted")
		if !ok {
			return false
		}
		ready := apimeta.FindStatusCondition(statusOf(u).Conditions, ConditionReady)
		return ready != nil && ready.ObservedGeneration == 2 && strings.HasSuffix(ready.Message, "("+restored+")")
	})
	// The new leader keeps the entries as they are.
	if got := f.lastGoodEntries(); len(got) != 2 {
		t.Errorf("entries after the restart: %v", got)
	}

	// Fixed: in force, and its entry goes. Deleted: its entry goes too.
	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.DockerHubPolicy}
	f.Update(cm)
	f.inForce(cmSrc, cm.GetResourceVersion())
	f.persisted(map[policy.Source]string{apSrc: string(ap.GetUID()) + "@1"})
	f.Delete(ap)
	f.gone(apSrc)
	f.persisted(map[policy.Source]string{})
}

// A source deleted and created again under the same name is another
// object: the last good version of the old one does not apply to it, and
// its entry goes.
func TestLastGoodOfAnotherObjectIgnored(t *testing.T) {
	ap := fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/"))
	f := newFixture(t, ap)
	f.start()
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}
	f.inForce(src, "1")
	ap = ap.DeepCopy()
	ap.Object["spec"] = map[string]any{"pods": map[string]any{"allowedRegistries": []any{"ftp://nope/"}}}
	ap.SetGeneration(2)
	f.Update(ap)
	f.persisted(map[policy.Source]string{src: string(ap.GetUID()) + "@1"})
	f.stop()

	// While no replica runs, the policy is deleted and created again,
	// invalid, as generation 2 once more.
	f.Delete(ap)
	again := fakecluster.AdmissionPolicy("trusted", 2, map[string]any{"pods": map[string]any{"allowedRegistries": []any{"ftp://nope/"}}})
	f.Create(again)
	f.newReplica()
	f.start()
	se := f.failed(src, "2")
	if se.InForce != "" || se.Restored || se.StandIn == "" {
		t.Errorf("in force %q (restored %v, stand-in %q), want the stand-in", se.InForce, se.Restored, se.StandIn)
	}
	d := fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "ghcr.io/app:1"), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != policy.RuleInvalid {
		t.Errorf("violations %v, want the stand-in's", d.Violations)
	}
	f.persisted(map[policy.Source]string{})
}

// The ConfigMap holds at most what a ConfigMap may (1 MiB; 2 KiB here, so
// that the policies stay small): a last good version that does not fit is
// left out, the smaller ones kept.
func TestLastGoodIsBounded(t *testing.T) {
	big := func(n int, prefix string) string {
		var b strings.Builder
		b.WriteString("pods:\n  allowedRegistries:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - %s%03d.example.com/\n", prefix, i)
		}
		return b.String()
	}
	small := fakecluster.PolicyConfigMap("team-a", "small", fakecluster.RegistryPolicy)
	large := fakecluster.PolicyConfigMap("team-b", "large", big(40, "registry-")) // ~1.5 KiB
	medium := fakecluster.PolicyConfigMap("team-c", "medium", big(20, "r-"))      // ~0.6 KiB
	f := newFixture(t, small, large, medium)
	f.cs.LastGood.max = 2048
	f.start()
	want := map[policy.Source]string{}
	for _, cm := range []*unstructured.Unstructured{small, large, medium} {
		src := policy.Source{Kind: policy.SourceConfigMap, Namespace: cm.GetNamespace(), Name: cm.GetName()}
		f.inForce(src, cm.GetResourceVersion())
		if cm != large {
			want[src] = string(cm.GetUID()) + "@" + cm.GetResourceVersion()
		}
		bad := cm.DeepCopy()
		bad.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.InvalidPolicy}
		f.Update(bad)
	}
	f.persisted(want)
}

func TestLastGoodKey(t *testing.T) {
	long := strings.Repeat("a", 253)
	for _, src := range []policy.Source{
		{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries.v2"},
		{Kind: policy.SourceAdmissionPolicy, Name: "trusted"},
		{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: long},
		{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: long},
	} {
		k := cache.LastGoodKey(src)
		if msgs := validation.IsConfigMapKey(k); len(msgs) > 0 {
			t.Errorf("key %q of %s: %v", k, src, msgs)
		}
	}
	if got := cache.LastGoodKey(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries.v2"}); got != "configmap.team-a.registries.v2" {
		t.Errorf("key %q", got)
	}
	if a, b := cache.LastGoodKey(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: long}),
		cache.LastGoodKey(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: long}); a == b {
		t.Errorf("two sources share key %q", a)
	}
}

// A persisted version that arrives after the replica synced replaces the
// stand-in; entries that cannot be read, or sit under another source's
// key, are ignored, and the leader drops them.
// lastGoodKey creates the Secret of the key the entries are signed with,
// as a leader would, and returns the key.
func (f *fixture) lastGoodKey() []byte {
	key := []byte(strings.Repeat("k", cache.LastGoodKeyBytes))
	f.Create(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": cache.LastGoodKeySecret, "namespace": fakecluster.PolicyNamespace},
		"data":     map[string]any{cache.LastGoodKeyData: base64.StdEncoding.EncodeToString(key)},
	}})
	// Entries written before the cache holds the key would not verify, and
	// the leader would remove them as forged.
	fakecluster.Eventually(f.T, "the cache holds the key", func() bool { return f.cache.LastGoodKey() != nil })
	return key
}

func TestLastGoodArrivingLater(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.InvalidPolicy)
	f := newFixture(t, cm)
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	if se := f.failed(src, cm.GetResourceVersion()); se.StandIn == "" {
		t.Fatalf("%+v, want the stand-in", se)
	}
	key := f.lastGoodKey()
	entry, err := cache.SignLastGood(key, cache.LastGoodEntry{Kind: "ConfigMap", Namespace: "team-a", Name: "registries", UID: cm.GetUID(), Version: "7", Policy: fakecluster.RegistryPolicy})
	if err != nil {
		t.Fatal(err)
	}
	other, err := cache.SignLastGood(key, cache.LastGoodEntry{Kind: "ConfigMap", Namespace: "team-b", Name: "registries", UID: "u", Version: "7", Policy: fakecluster.RegistryPolicy})
	if err != nil {
		t.Fatal(err)
	}
	f.Create(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": cache.LastGoodConfigMap, "namespace": fakecluster.PolicyNamespace},
		"data": map[string]any{
			cache.LastGoodKey(src):       entry,
			"configmap.team-a.elsewhere": other,
			"configmap.team-c.garbage":   "kind: [",
		},
	}})
	fakecluster.Eventually(t, "the persisted version is in force", func() bool {
		se := f.cache.Snapshot().Errors[src]
		return se.Restored && se.InForce == "7"
	})
	fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), true)
	d := fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "nginx"), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != "pods.allowedRegistries" {
		t.Errorf("violations %v, want the persisted version's", d.Violations)
	}
	f.persisted(map[policy.Source]string{src: string(cm.GetUID()) + "@7"})
}

// Entries written behind the webhook's back (it unregistered): the leader
// puts back the one it knows, removes one invented for a policy that never
// had a good version, and a replica that starts later enforces neither
// (the stand-in refuses instead), as neither is signed with the key.
func TestLastGoodForgedEntries(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	broken := fakecluster.PolicyConfigMap("team-b", "broken", fakecluster.InvalidPolicy)
	f := newFixture(t, cm, broken)
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	brokenSrc := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: "broken"}
	goodRV := cm.GetResourceVersion()
	f.inForce(src, goodRV)
	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.InvalidPolicy}
	f.Update(cm)
	f.failed(src, cm.GetResourceVersion())
	want := map[policy.Source]string{src: string(cm.GetUID()) + "@" + goodRV}
	f.persisted(want)
	if f.cache.LastGoodKey() == nil {
		t.Fatal("the leader persisted with no key")
	}

	// A weaker version of the same object, and one for a policy that never
	// had a good version, signed with a key of the forger's.
	forger := []byte(strings.Repeat("f", cache.LastGoodKeyBytes))
	weak, err := cache.SignLastGood(forger, cache.LastGoodEntry{Kind: "ConfigMap", Namespace: "team-a", Name: "registries", UID: cm.GetUID(), Version: goodRV, Policy: fakecluster.DockerHubPolicy})
	if err != nil {
		t.Fatal(err)
	}
	invented, err := cache.SignLastGood(forger, cache.LastGoodEntry{Kind: "ConfigMap", Namespace: "team-b", Name: "broken", UID: broken.GetUID(), Version: "1", Policy: fakecluster.DockerHubPolicy})
	if err != nil {
		t.Fatal(err)
	}
	forge := func() {
		u, err := f.Dyn.Resource(fakecluster.ConfigMaps).Namespace(fakecluster.PolicyNamespace).Get(context.Background(), cache.LastGoodConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u.Object["data"] = map[string]any{cache.LastGoodKey(src): weak, cache.LastGoodKey(brokenSrc): invented}
		f.Update(u)
	}
	forge()
	got := f.persisted(want)
	if got[src].Policy != fakecluster.RegistryPolicy {
		t.Errorf("restored policy %q, want %q", got[src].Policy, fakecluster.RegistryPolicy)
	}

	// Forged again, the leader stopped first: a new replica trusts neither.
	f.stop()
	forge()
	f.newReplica()
	f.start()
	for _, s := range []policy.Source{src, brokenSrc} {
		if se := f.cache.Snapshot().Errors[s]; se.Restored || se.StandIn == "" {
			t.Errorf("%s after a restart: %+v, want the stand-in, not the forged entry", s, se)
		}
	}
	fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "nginx"), false)
	f.persisted(map[policy.Source]string{})
}
