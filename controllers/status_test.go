package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

// The Event of an invalid version is named from the object's UID and the
// version alone, so every leader names it alike, and the name is one the
// API server accepts whatever the object's name.
func TestInvalidEventName(t *testing.T) {
	long := strings.Repeat("a", 230) + "-" + strings.Repeat("b", 22)
	names := map[string]bool{}
	for _, c := range []struct {
		name    string
		uid     types.UID
		version string
	}{
		{"registries", "uid-1", "101"},
		{"registries", "uid-1", "102"}, // a later invalid version
		{"registries", "uid-2", "101"}, // the same name recreated
		{long, "uid-1", "101"},
		{strings.Repeat("c", 236) + ".d", "uid-1", "101"}, // truncated at the dot
	} {
		got := invalidEventName(c.name, c.uid, c.version)
		if again := invalidEventName(c.name, c.uid, c.version); again != got {
			t.Errorf("%s: named %q, then %q", c.name, got, again)
		}
		if msgs := validation.IsDNS1123Subdomain(got); len(msgs) > 0 {
			t.Errorf("%q is no DNS subdomain: %v", got, msgs)
		}
		if names[got] {
			t.Errorf("%q named twice", got)
		}
		names[got] = true
	}
	if got := invalidEventName("registries", "uid-1", "101"); !strings.HasPrefix(got, "registries.") {
		t.Errorf("%q does not start with the object's name", got)
	}
}

// The author of an invalid ConfigMap version sees a Warning Event on it
// saying what stays in force: the last good version, or, with none known,
// the stand-in that refuses what the policy matches.
func TestWarningEventOnInvalidConfigMap(t *testing.T) {
	cm := fakecluster.PolicyConfigMap("team-a", "registries", fakecluster.RegistryPolicy)
	f := newFixture(t, cm, fakecluster.PolicyConfigMap("team-a", "broken", fakecluster.InvalidPolicy))
	f.start()
	good := cm.GetResourceVersion()
	cm = cm.DeepCopy()
	cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fakecluster.InvalidPolicy}
	f.Update(cm)
	f.failed(policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}, cm.GetResourceVersion())

	var ev corev1.Event
	fakecluster.Eventually(t, "a Warning Event on the ConfigMap", func() bool {
		for _, e := range f.Events("team-a", "registries") {
			if e.Reason == ReasonInvalidPolicy {
				ev = e
				return true
			}
		}
		return false
	})
	if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.Kind != "ConfigMap" || ev.InvolvedObject.UID != cm.GetUID() {
		t.Errorf("event %s %s on %+v", ev.Type, ev.Reason, ev.InvolvedObject)
	}
	for _, want := range []string{"policy.yaml: pods.allowedRegistries[0]", "without a scheme", "resourceVersion " + good + " stays in force"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("event message %q lacks %q", ev.Message, want)
		}
	}
	fakecluster.Eventually(t, "a Warning Event saying what it matches is refused", func() bool {
		for _, e := range f.Events("team-a", "broken") {
			if e.Reason == ReasonInvalidPolicy && strings.Contains(e.Message, "(no good version of it is known: what it matches is refused until it is fixed)") {
				return true
			}
		}
		return false
	})
}
