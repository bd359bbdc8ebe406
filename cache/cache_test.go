package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

func TestNotSyncedBeforeStart(t *testing.T) {
	f := newFixture(t, fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy))
	c := f.cache
	if c.HasSynced() {
		t.Fatal("HasSynced before Start")
	}
	if v := c.Snapshot().Version; v != 0 {
		t.Fatalf("snapshot version before Start = %d, want 0", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c.WaitForSync(ctx) {
		t.Fatal("WaitForSync reported a sync before Start")
	}

	f.start()
	if !c.HasSynced() {
		t.Fatal("not HasSynced after WaitForSync")
	}
	// The policy that existed before Start is in the first snapshot.
	if s := c.Snapshot(); s.Version == 0 || s.Set.Len() != 1 {
		t.Fatalf("first snapshot: version %d with %d policies, want version ≥ 1 with 1", s.Version, s.Set.Len())
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), false)

	if err := c.Start(context.Background()); err == nil {
		t.Fatal("a second Start succeeded")
	}
}

// An informer whose list keeps failing never syncs: the cache must not
// claim to be synced, and must still stop when asked.
func TestNotSyncedWhileAListFails(t *testing.T) {
	f := newFixture(t)
	f.Dyn.PrependReactor("list", "myapples", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("the API server is having a bad day")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.cache.Start(ctx) }()

	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if f.cache.WaitForSync(wctx) || f.cache.HasSynced() {
		t.Fatal("synced although MyApples could not be listed")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start returned %v after cancellation before sync, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context was cancelled")
	}
	if f.cache.HasSynced() {
		t.Fatal("HasSynced after stopping before sync")
	}
}

func TestConfigMapScope(t *testing.T) {
	f := newFixture(t,
		fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy),
	)
	f.start()
	c := f.cache

	// A ConfigMap policy applies to its own namespace only.
	d := fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), false)
	if got := d.Violations[0].Source; got != "ConfigMap team-a/registries" {
		t.Errorf("violation source = %q", got)
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "registry.example.com/app:1.0"), true)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "nginx"), true)

	// In the policy namespace, it applies to every namespace.
	global := f.Create(fakecluster.PolicyConfigMap(fakecluster.PolicyNamespace, "no-docker-hub", `
pods:
  allowedRegistries: [registry.example.com/, ghcr.io/]
`))
	f.inForce(policy.Source{Kind: policy.SourceConfigMap, Namespace: fakecluster.PolicyNamespace, Name: "no-docker-hub"}, global.GetResourceVersion())
	d = fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "nginx"), false)
	if got := d.Violations[0].Source; got != "ConfigMap policy-system/no-docker-hub" {
		t.Errorf("violation source = %q", got)
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest(fakecluster.PolicyNamespace, "nginx"), false)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "ghcr.io/acme/app:1"), true)
	// Both apply in team-a: ghcr.io passes the global one, not team-a's.
	d = fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "ghcr.io/acme/app:1"), false)
	if len(d.Violations) != 1 || d.Violations[0].Source != "ConfigMap team-a/registries" {
		t.Errorf("violations = %v, want only team-a's", d.Violations)
	}
	for _, p := range c.Snapshot().Policies() {
		want := p.Source.Namespace
		if want == fakecluster.PolicyNamespace {
			want = ""
		}
		if p.Scope != want {
			t.Errorf("%s has scope %q, want %q", p.Source, p.Scope, want)
		}
	}
}

func TestUnlabelledConfigMapIgnored(t *testing.T) {
	unlabelled := fakecluster.PolicyConfigMap("team-a", "not-a-policy", fakecluster.RegistryPolicy)
	unlabelled.SetLabels(nil)
	f := newFixture(t, unlabelled)
	f.start()
	c := f.cache

	if n := c.Snapshot().Set.Len(); n != 0 {
		t.Fatalf("%d policies from an unlabelled ConfigMap", n)
	}
	// Every list and watch of ConfigMaps asks the API server for policy
	// ConfigMaps only, so the others never reach the process, but for
	// the one ConfigMap of persisted last good versions, by name.
	var seen, lastGood int
	for _, a := range f.Dyn.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		var sel, fieldSel string
		switch a := a.(type) {
		case k8stesting.ListActionImpl:
			sel, fieldSel = a.GetListOptions().LabelSelector, a.GetListOptions().FieldSelector
		case k8stesting.WatchActionImpl:
			sel, fieldSel = a.GetWatchRestrictions().Labels.String(), a.GetWatchRestrictions().Fields.String()
		default:
			continue
		}
		if a.GetNamespace() == fakecluster.PolicyNamespace && fieldSel == "metadata.name="+LastGoodConfigMap && sel == "" {
			lastGood++
			continue
		}
		seen++
		if sel != "policy.example.com/policy=true" {
			t.Errorf("%s configmaps with label selector %q", a.GetVerb(), sel)
		}
	}
	if seen == 0 || lastGood == 0 {
		t.Fatalf("%d lists and watches of policy ConfigMaps, %d of the last good versions", seen, lastGood)
	}

	// The fake watch, unlike the API server, does not filter by label: an
	// unlabelled ConfigMap arriving anyway is still ignored.
	other := fakecluster.PolicyConfigMap("team-b", "also-not-a-policy", fakecluster.RegistryPolicy)
	other.SetLabels(map[string]string{policy.PolicyLabel: "false"})
	f.Create(other)
	marker := f.Create(fakecluster.PolicyConfigMap("team-c", "marker", fakecluster.RegistryPolicy))
	f.inForce(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-c", Name: "marker"}, marker.GetResourceVersion())
	if n := c.Snapshot().Set.Len(); n != 1 {
		t.Fatalf("%d policies, want only the labelled one", n)
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "nginx"), true)

	// A policy that loses its label stops applying.
	marker.SetLabels(nil)
	f.Update(marker)
	f.gone(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-c", Name: "marker"})
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-c", "nginx"), true)
}

func TestInvalidVersionKeepsLastGood(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	f := newFixture(t, cm)
	f.start()
	c := f.cache
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
	good := cm.GetResourceVersion()
	f.inForce(src, good)

	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.InvalidPolicy}
	f.Update(cm)
	se := f.failed(src, cm.GetResourceVersion())
	if se.InForce != good {
		t.Errorf("error says version %q is in force, want %q", se.InForce, good)
	}
	if !strings.Contains(se.Err.Error(), "policy.yaml: pods.allowedRegistries[0]") {
		t.Errorf("error %q lacks the field path", se.Err)
	}
	// The last good version still judges.
	f.inForce(src, good)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), false)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), true)

	if v := promtest.One(t, f.reg, MetricPolicyErrors, map[string]string{"kind": "ConfigMap", "namespace": "team-a", "name": "registries"}); v != 1 {
		t.Errorf("%s = %v, want 1", MetricPolicyErrors, v)
	}

	// A valid version goes in force and clears the error.
	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.DockerHubPolicy}
	f.Update(cm)
	f.inForce(src, cm.GetResourceVersion())
	if _, ok := c.Snapshot().Errors[src]; ok {
		t.Error("error still reported after a valid version")
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), true)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), false)
	if n := promtest.Count(t, f.reg, MetricPolicyErrors, nil); n != 0 {
		t.Errorf("%d %s series after the fix, want 0", n, MetricPolicyErrors)
	}
}

func TestInvalidFromTheStart(t *testing.T) {
	f := newFixture(t, fakecluster.PolicyConfigMap("team-a", "broken", fakecluster.InvalidPolicy))
	f.start()
	src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "broken"}
	se, ok := f.cache.Snapshot().Errors[src]
	if !ok {
		t.Fatal("no error reported for an invalid policy")
	}
	if se.InForce != "" || se.Restored || se.StandIn != v1alpha1.Deny {
		t.Errorf("InForce = %q, Restored %v, StandIn %q for a policy that never compiled, want a Deny stand-in", se.InForce, se.Restored, se.StandIn)
	}
	// No good version is known: what it matches is refused, saying so,
	// rather than let it lapse; what it does not match is not.
	ps := f.cache.Snapshot().Policies()
	if len(ps) != 1 || ps[0].Version != se.Version {
		t.Fatalf("policies in force %v, want the stand-in of version %s", ps, se.Version)
	}
	d := fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != policy.RuleInvalid {
		t.Errorf("violations %v, want the stand-in's one of rule %s", d.Violations, policy.RuleInvalid)
	}
	want := "policy violation: ConfigMap team-a/broken invalid: the policy is invalid (resourceVersion " + se.Version +
		") and no good version of it is known, so what it matches is refused until it is fixed: policy.yaml: pods.allowedRegistries[0]: invalid registry prefix " +
		`"https://registry.example.com/": write the registry host without a scheme, e.g. registry.example.com/`
	if got := d.Message(); got != want {
		t.Errorf("message\n  %s\nwant\n  %s", got, want)
	}
	fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-b", "nginx"), true)
	fakecluster.Allowed(t, f.cache, fakecluster.AppleRequest(policy.Create, "team-a", "a", 1, 0), true)
}

func TestDeleteStopsApplying(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	ap := fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/"))
	broken := fakecluster.PolicyConfigMap("team-b", "broken", fakecluster.InvalidPolicy)
	f := newFixture(t, cm, ap, broken)
	f.start()
	c := f.cache
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), false) // AdmissionPolicy: not ghcr.io
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "ghcr.io/app:1"), false)              // ConfigMap: not registry.example.com

	f.Delete(ap)
	f.gone(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"})
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "registry.example.com/app:1"), true)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "nginx"), false) // the stand-in of the invalid one

	f.Delete(cm)
	f.gone(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"})
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), true)

	// Deleting an invalid source clears its error and its metric.
	f.Delete(broken)
	f.gone(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-b", Name: "broken"})
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-b", "nginx"), true)
	if n := promtest.Count(t, f.reg, MetricPolicyErrors, nil); n != 0 {
		t.Errorf("%d %s series after deleting the invalid source", n, MetricPolicyErrors)
	}
	if n := c.Snapshot().Set.Len(); n != 0 {
		t.Errorf("%d policies left", n)
	}
}

// A source deleted and created again under the same name inherits nothing
// from the old one, even at the same generation.
func TestRecreatedSourceIsNew(t *testing.T) {
	ap := fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/"))
	f := newFixture(t, ap)
	f.start()
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}
	f.Delete(ap)
	f.gone(src)
	again := fakecluster.AdmissionPolicy("trusted", 1, map[string]any{"pods": map[string]any{"allowedRegistries": []any{"https://x/"}}})
	f.Create(again)
	se := f.failed(src, "1")
	if se.InForce != "" {
		t.Errorf("the recreated policy inherited version %q", se.InForce)
	}
	// Not the old one's ghcr.io/: its stand-in, refusing what it matches.
	d := fakecluster.Allowed(t, f.cache, fakecluster.PodRequest("team-a", "ghcr.io/app:1"), false)
	if len(d.Violations) != 1 || d.Violations[0].Rule != policy.RuleInvalid {
		t.Errorf("violations %v, want the stand-in's", d.Violations)
	}
}

func TestNamespaceSelector(t *testing.T) {
	ap := fakecluster.AdmissionPolicy("prod-registries", 1, map[string]any{
		"match": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"env": "prod"}}},
		"pods":  map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
	})
	dev := fakecluster.NamespaceMeta("dev", map[string]string{"env": "dev"})
	f := newFixture(t, ap, fakecluster.NamespaceMeta("prod", map[string]string{"env": "prod"}), dev)
	f.start()
	c := f.cache

	if l, ok := c.NamespaceLabels("prod"); !ok || l["env"] != "prod" {
		t.Errorf("NamespaceLabels(prod) = %v, %v", l, ok)
	}
	if _, ok := c.NamespaceLabels("nowhere"); ok {
		t.Error("NamespaceLabels knows a namespace that does not exist")
	}
	fakecluster.Allowed(t, c, fakecluster.PodRequest("prod", "nginx"), false)
	fakecluster.Allowed(t, c, fakecluster.PodRequest("dev", "nginx"), true)

	dev = dev.DeepCopy()
	dev.Labels = map[string]string{"env": "prod"}
	f.UpdateNamespace(dev)
	fakecluster.Eventually(t, "dev is relabelled in the cache", func() bool {
		l, _ := c.NamespaceLabels("dev")
		return l["env"] == "prod"
	})
	fakecluster.Allowed(t, c, fakecluster.PodRequest("dev", "nginx"), false)
}

func TestConcurrentEvaluateDuringUpdates(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	f := newFixture(t, cm)
	f.start()
	c := f.cache

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := c.Evaluate(fakecluster.PodRequest("team-a", "nginx"))
			// Every version of the policy refuses nginx: no reader may
			// ever see a half-built snapshot that lets it through.
			if d.Allowed {
				t.Error("nginx allowed while the policy was being updated")
				return
			}
		}
	}()
	for i := range 50 {
		cm = cm.DeepCopy()
		cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.RegistryPolicy + "  disallowedTags: [latest, v" + string(rune('a'+i%26)) + "]\n"}
		f.Update(cm)
	}
	f.inForce(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}, cm.GetResourceVersion())
	close(stop)
	<-done
}

func TestTransformsDropWhatIsNotRead(t *testing.T) {
	withNoise := func(u interface {
		SetManagedFields([]metav1.ManagedFieldsEntry)
		SetAnnotations(map[string]string)
	}) {
		u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}})
		u.SetAnnotations(map[string]string{corev1.LastAppliedConfigAnnotation: `{"huge":"json"}`, "keep": "me"})
	}
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	cm.Object["data"].(map[string]any)["README"] = "a long explanation"
	cm.Object["binaryData"] = map[string]any{"logo.png": "aGVsbG8="}
	withNoise(cm)
	ap := fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("ghcr.io/"))
	withNoise(ap)
	mine := fakecluster.MyApple("team-a", "a", 3)
	withNoise(mine)
	ns := fakecluster.NamespaceMeta("team-a", map[string]string{"env": "prod"})
	withNoise(ns)
	f := newFixture(t, cm, ap, mine, ns)
	f.start()
	c := f.cache

	obj, _, _ := c.configMapInformer.GetStore().GetByKey("team-a/registries")
	got := obj.(interface{ UnstructuredContent() map[string]any }).UnstructuredContent()
	md := got["metadata"].(map[string]any)
	if _, ok := md["managedFields"]; ok {
		t.Error("ConfigMap managedFields kept")
	}
	if ann := md["annotations"].(map[string]any); ann[corev1.LastAppliedConfigAnnotation] != nil || ann["keep"] != "me" {
		t.Errorf("ConfigMap annotations = %v", ann)
	}
	if data := got["data"].(map[string]any); len(data) != 1 || data[policy.ConfigMapDataKey] == nil {
		t.Errorf("ConfigMap data keys = %v, want only %s", data, policy.ConfigMapDataKey)
	}
	if _, ok := got["binaryData"]; ok {
		t.Error("ConfigMap binaryData kept")
	}
	if md["labels"] == nil {
		t.Error("ConfigMap labels dropped")
	}

	obj, _, _ = c.policyInformer.GetStore().GetByKey("trusted")
	got = obj.(interface{ UnstructuredContent() map[string]any }).UnstructuredContent()
	md = got["metadata"].(map[string]any)
	if _, ok := md["managedFields"]; ok {
		t.Error("AdmissionPolicy managedFields kept")
	}
	if ann := md["annotations"].(map[string]any); ann[corev1.LastAppliedConfigAnnotation] != nil {
		t.Error("AdmissionPolicy last-applied annotation kept")
	}
	if got["spec"] == nil {
		t.Error("AdmissionPolicy spec dropped")
	}

	obj, _, _ = c.appleInformer.GetStore().GetByKey("team-a/a")
	if a, ok := obj.(*apple); !ok || *a != (apple{namespace: "team-a", name: "a", uid: string(mine.GetUID()), resourceVersion: mine.GetResourceVersion(), color: "red", size: "small", quantity: 3}) {
		t.Errorf("cached MyApple = %#v", obj)
	}

	obj, _, _ = c.namespaceInformer.GetStore().GetByKey("team-a")
	m := obj.(*metav1.PartialObjectMetadata)
	// Annotations are CEL's namespaceObject.metadata.annotations; kubectl's
	// last-applied copy is not.
	if m.ManagedFields != nil || len(m.Annotations) != 1 || m.Annotations["keep"] != "me" || m.Labels["env"] != "prod" {
		t.Errorf("cached namespace = %+v", m.ObjectMeta)
	}
	if got := c.NamespaceAnnotations("team-a"); got["keep"] != "me" {
		t.Errorf("NamespaceAnnotations(team-a) = %v", got)
	}
}
