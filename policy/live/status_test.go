package live

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// status reads an AdmissionPolicy's status from the fake cluster.
func (f *fixture) status(name string) (v1alpha1.AdmissionPolicyStatus, *metav1.Condition) {
	f.t.Helper()
	u, err := f.dyn.Resource(v1alpha1.Resource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("getting AdmissionPolicy %s: %v", name, err)
	}
	var st v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
			f.t.Fatalf("decoding status: %v", err)
		}
	}
	return st, meta.FindStatusCondition(st.Conditions, ConditionReady)
}

// statusWrites counts the status updates made to an AdmissionPolicy.
func (f *fixture) statusWrites(name string) int {
	n := 0
	for _, a := range f.dyn.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" && a.GetResource() == v1alpha1.Resource {
			if u, ok := a.(interface{ GetObject() runtime.Object }); ok && u.GetObject().(*unstructured.Unstructured).GetName() == name {
				n++
			}
		}
	}
	return n
}

// get reads an AdmissionPolicy back, status included, as the next update
// would start from.
func (f *fixture) get(name string) *unstructured.Unstructured {
	f.t.Helper()
	u, err := f.dyn.Resource(v1alpha1.Resource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("getting AdmissionPolicy %s: %v", name, err)
	}
	return u
}

func TestAdmissionPolicyStatus(t *testing.T) {
	f := newFixture(t, admissionPolicy("trusted", 1, registrySpec("registry.example.com/")))
	f.start()
	c := f.cache

	eventually(t, "Ready=True for generation 1", func() bool {
		st, ready := f.status("trusted")
		return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == 1 && st.ObservedGeneration == 1
	})
	_, ready := f.status("trusted")
	if ready.Reason != ReasonInForce || ready.Message != "generation 1 is in force" {
		t.Errorf("Ready = %s %q", ready.Reason, ready.Message)
	}

	// Generation 2 is invalid: generation 1 stays in force, and says so.
	ap := f.get("trusted")
	ap.Object["spec"] = map[string]any{"pods": map[string]any{"allowedRegistries": []any{"https://registry.example.com/"}}}
	ap.SetGeneration(2)
	f.update(ap)
	eventually(t, "Ready=False for generation 2", func() bool {
		st, ready := f.status("trusted")
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.ObservedGeneration == 2 && st.ObservedGeneration == 2
	})
	_, ready = f.status("trusted")
	for _, want := range []string{"generation 2 is invalid", "spec.pods.allowedRegistries[0]", "generation 1 stays in force"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q lacks %q", ready.Message, want)
		}
	}
	if ready.Reason != ReasonInvalidPolicy {
		t.Errorf("Ready reason = %q", ready.Reason)
	}
	f.inForce(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}, "1")
	allowed(t, c, podRequest("team-a", "nginx"), false)
	// Events on a cluster-scoped object land in the default namespace.
	eventually(t, "a Warning Event on the AdmissionPolicy", func() bool {
		for _, e := range f.events("default", "trusted") {
			if e.Reason == ReasonInvalidPolicy && e.InvolvedObject.Kind == "AdmissionPolicy" && strings.Contains(e.Message, "generation 1 stays in force") {
				return true
			}
		}
		return false
	})

	// Status is written only when it changes: a change of metadata alone
	// (same generation) writes nothing.
	writes := f.statusWrites("trusted")
	if writes != 2 {
		t.Errorf("%d status writes for two generations, want 2", writes)
	}
	ap = f.get("trusted")
	ap.SetLabels(map[string]string{"team": "platform"})
	f.update(ap)
	// The queue and the handler run in order: once a policy handled
	// after the relabel has its status, the relabel has been handled too.
	f.create(admissionPolicy("later", 1, registrySpec("docker.io/")))
	eventually(t, "Ready=True on the later policy", func() bool {
		_, ready := f.status("later")
		return ready != nil && ready.Status == metav1.ConditionTrue
	})
	if got := f.statusWrites("trusted"); got != writes {
		t.Errorf("%d status writes after a metadata-only change, want %d", got, writes)
	}

	// Fixed in generation 3: back to True.
	ap = f.get("trusted")
	ap.Object["spec"] = registrySpec("docker.io/")
	ap.SetGeneration(3)
	f.update(ap)
	eventually(t, "Ready=True for generation 3", func() bool {
		_, ready := f.status("trusted")
		return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == 3
	})
	f.inForce(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "trusted"}, "3")
	allowed(t, c, podRequest("team-a", "nginx"), true)
	if v := counterValue(t, f.reg, MetricStatusUpdates, map[string]string{"result": "updated"}); v < 3 {
		t.Errorf("%s{result=updated} = %v, want ≥ 3", MetricStatusUpdates, v)
	}
}
