package controllers

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// status reads an AdmissionPolicy's status from the fake cluster.
func (f *fixture) status(name string) (v1alpha1.AdmissionPolicyStatus, *metav1.Condition) {
	f.T.Helper()
	u, err := f.Dyn.Resource(v1alpha1.Resource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.T.Fatalf("getting AdmissionPolicy %s: %v", name, err)
	}
	var st v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
			f.T.Fatalf("decoding status: %v", err)
		}
	}
	return st, meta.FindStatusCondition(st.Conditions, ConditionReady)
}

// statusWrites counts the status applies made to an AdmissionPolicy.
func (f *fixture) statusWrites(name string) int {
	n := 0
	for _, a := range f.Dyn.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetSubresource() == "status" && a.GetResource() == v1alpha1.Resource &&
			p.GetPatchType() == types.ApplyPatchType && p.GetName() == name {
			n++
		}
	}
	return n
}

// replica returns this replica's status.replicas entry.
func replicaEntry(st v1alpha1.AdmissionPolicyStatus) *v1alpha1.ReplicaStatus {
	for i := range st.Replicas {
		if st.Replicas[i].Name == testReplica {
			return &st.Replicas[i]
		}
	}
	return nil
}

// get reads an AdmissionPolicy back, status included, as the next update
// would start from.
func (f *fixture) get(name string) *unstructured.Unstructured {
	f.T.Helper()
	u, err := f.Dyn.Resource(v1alpha1.Resource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.T.Fatalf("getting AdmissionPolicy %s: %v", name, err)
	}
	return u
}

// One replica, which leads: it writes its own status.replicas entry and,
// as leader, the Ready condition, the inForce summary and the Event. The
// fake client merges applies rather than tracking field managers; what
// several replicas do to each other's entries is the envtest's to show.
func TestAdmissionPolicyStatus(t *testing.T) {
	f := newFixture(t, fakecluster.AdmissionPolicy("trusted", 1, fakecluster.RegistrySpec("registry.example.com/")))
	f.start()
	c := f.cache

	fakecluster.Eventually(t, "Ready=True for generation 1, in force on 1/1 replicas", func() bool {
		st, ready := f.status("trusted")
		r := replicaEntry(st)
		return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == 1 && st.ObservedGeneration == 1 &&
			st.InForce == "1/1" && r != nil && r.ObservedGeneration == 1 && r.InForce
	})
	st, ready := f.status("trusted")
	if ready.Reason != ReasonInForce || ready.Message != "generation 1 is in force" {
		t.Errorf("Ready = %s %q", ready.Reason, ready.Message)
	}
	if r := replicaEntry(st); r.Message != "" || r.LastTransitionTime.IsZero() {
		t.Errorf("replica entry %+v: want no message and the time it took effect", r)
	}

	// Generation 2 is invalid: generation 1 stays in force, and says so.
	ap := f.get("trusted")
	ap.Object["spec"] = map[string]any{"pods": map[string]any{"allowedRegistries": []any{"https://registry.example.com/"}}}
	ap.SetGeneration(2)
	f.Update(ap)
	fakecluster.Eventually(t, "Ready=False for generation 2, in force on 0/1 replicas", func() bool {
		st, ready := f.status("trusted")
		r := replicaEntry(st)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.ObservedGeneration == 2 && st.ObservedGeneration == 2 &&
			st.InForce == "0/1" && r != nil && r.ObservedGeneration == 2 && !r.InForce
	})
	st, ready = f.status("trusted")
	if r := replicaEntry(st); r.Message != "generation 2 is invalid (generation 1 stays in force)" {
		t.Errorf("replica entry message %q", r.Message)
	}
	for _, want := range []string{"generation 2 is invalid", "spec.pods.allowedRegistries[0]", "generation 1 stays in force"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q lacks %q", ready.Message, want)
		}
	}
	if ready.Reason != ReasonInvalidPolicy {
		t.Errorf("Ready reason = %q", ready.Reason)
	}
	f.inForce(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}, "1")
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), false)
	// Events on a cluster-scoped object land in the default namespace.
	fakecluster.Eventually(t, "a Warning Event on the AdmissionPolicy", func() bool {
		for _, e := range f.Events("default", "trusted") {
			if e.Reason == ReasonInvalidPolicy && e.InvolvedObject.Kind == "AdmissionPolicy" &&
				strings.Contains(e.Message, "generation 2 is invalid") && strings.Contains(e.Message, "generation 1 stays in force") {
				return true
			}
		}
		return false
	})

	// Status is written only when it changes: a change of metadata alone
	// (same generation) writes nothing. Each generation took two applies,
	// the replica's entry and the leader's condition (the first one's
	// summary may take one more, if the entry lands after it).
	writes := f.statusWrites("trusted")
	if writes < 4 || writes > 6 {
		t.Errorf("%d status writes for two generations, want 4 to 6", writes)
	}
	ap = f.get("trusted")
	ap.SetLabels(map[string]string{"team": "platform"})
	f.Update(ap)
	// The queue and the handler run in order: once a policy handled
	// after the relabel has its status, the relabel has been handled too.
	f.Create(fakecluster.AdmissionPolicy("later", 1, fakecluster.RegistrySpec("docker.io/")))
	fakecluster.Eventually(t, "Ready=True on the later policy", func() bool {
		_, ready := f.status("later")
		return ready != nil && ready.Status == metav1.ConditionTrue
	})
	if got := f.statusWrites("trusted"); got != writes {
		t.Errorf("%d status writes after a metadata-only change, want %d", got, writes)
	}

	// Fixed in generation 3: back to True.
	ap = f.get("trusted")
	ap.Object["spec"] = fakecluster.RegistrySpec("docker.io/")
	ap.SetGeneration(3)
	f.Update(ap)
	fakecluster.Eventually(t, "Ready=True for generation 3", func() bool {
		_, ready := f.status("trusted")
		return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == 3
	})
	f.inForce(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}, "3")
	fakecluster.Allowed(t, c, fakecluster.PodRequest("team-a", "nginx"), true)
	if v := promtest.One(t, f.reg, MetricStatusUpdates, map[string]string{"result": "updated"}); v < 6 {
		t.Errorf("%s{result=updated} = %v, want ≥ 6", MetricStatusUpdates, v)
	}
	if n := len(f.Events("default", "trusted")); n != 1 {
		t.Errorf("%d Events on the AdmissionPolicy, want 1 (one invalid generation)", n)
	}
}
