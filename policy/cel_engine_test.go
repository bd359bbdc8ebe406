package policy_test

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/policy/cel"
	"github.com/policy-webhook/policy-webhook/review"
)

// celCluster is cluster state for CEL: namespace labels and annotations,
// and the MyApples of each namespace.
type celCluster struct {
	apples map[string][]cel.Apple
}

func (celCluster) NamespaceLabels(name string) (map[string]string, bool) {
	return map[string]string{"kubernetes.io/metadata.name": name}, true
}
func (celCluster) NamespaceAnnotations(string) map[string]string {
	return map[string]string{"allow-blue": "no"}
}
func (celCluster) MyAppleQuantity(string, string) int64 { return 0 }
func (c celCluster) MyApples(ns string) cel.AppleList   { return c.set(ns).List() }
func (c celCluster) MyAppleTally(ns string, by cel.GroupBy, value, except string) cel.Tally {
	return c.set(ns).Tally(by, value, except)
}
func (c celCluster) MyAppleGroups(ns string, by cel.GroupBy) []string { return c.set(ns).Groups(by) }

func (c celCluster) set(ns string) *cel.Apples {
	s := cel.NewApples()
	for _, a := range c.apples[ns] {
		s.Set(a)
	}
	return s
}

func compileCM(t testing.TB, name, yaml string) *policy.Policy {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "policy-system", "labels": map[string]any{policy.PolicyLabel: "true"}},
		"data":     map[string]any{policy.ConfigMapDataKey: yaml},
	}}
	p, err := carrier.New().Compile(u, "policy-system")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func admission(t testing.TB, kind policy.Kind, op admissionv1.Operation, obj, old any) *policy.Request {
	t.Helper()
	ar := &admissionv1.AdmissionRequest{UID: "1", Operation: op, Namespace: "shop"}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	ar.Object = runtime.RawExtension{Raw: raw}
	if old != nil {
		if ar.OldObject.Raw, err = json.Marshal(old); err != nil {
			t.Fatal(err)
		}
	}
	ar.Kind.Kind = string(kind)
	if kind == policy.KindMyApple {
		ar.Kind.Group = policy.GroupMyApple
	}
	req, err := review.NewRequest(kind, ar)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func pod(probe bool) map[string]any {
	c := map[string]any{"name": "app", "image": "registry.example.com/app:1"}
	if probe {
		c["readinessProbe"] = map[string]any{"httpGet": map[string]any{"path": "/", "port": int64(80)}}
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "labels": map[string]any{"app": "web"}},
		"spec":     map[string]any{"containers": []any{c}}}
}

func myApple(name, color string, q int64) map[string]any {
	return map[string]any{"apiVersion": "stable.example.com/v1", "kind": "MyApple",
		"metadata": map[string]any{"name": name, "namespace": "shop"},
		"spec":     map[string]any{"color": color, "size": "small", "quantity": q}}
}

func TestCELPolicyJudgesPods(t *testing.T) {
	set := policy.NewSet([]*policy.Policy{compileCM(t, "probes", `
enforcement: Warn
match: {kinds: [Pod]}
pods: {forbidPrivileged: true}
validations:
- name: probes
  expression: "object.spec.containers.all(c, has(c.readinessProbe))"
  message: "every container needs a readinessProbe"
  fieldPath: spec.containers
`)})
	d := set.Evaluate(admission(t, policy.KindPod, admissionv1.Create, pod(false), nil), celCluster{})
	if !d.Allowed || len(d.Violations) != 1 {
		t.Fatalf("decision %+v, want one Warn violation", d)
	}
	v := d.Violations[0]
	if v.Rule != "validations.probes" || v.Field != "spec.containers" || v.Message != "every container needs a readinessProbe" || v.Enforcement != "Warn" {
		t.Errorf("violation %+v", v)
	}
	if d := set.Evaluate(admission(t, policy.KindPod, admissionv1.Create, pod(true), nil), celCluster{}); len(d.Violations) != 0 {
		t.Errorf("a compliant Pod: %+v", d.Violations)
	}
	// UPDATE of a Pod that already had the violation: forgiven.
	if d := set.Evaluate(admission(t, policy.KindPod, admissionv1.Update, pod(false), pod(false)), celCluster{}); len(d.Violations) != 0 {
		t.Errorf("an update keeping an old violation: %+v", d.Violations)
	}
	// UPDATE that introduces it: judged.
	if d := set.Evaluate(admission(t, policy.KindPod, admissionv1.Update, pod(false), pod(true)), celCluster{}); len(d.Violations) != 1 {
		t.Errorf("an update introducing a violation: %+v", d.Violations)
	}
}

func TestCELPolicyReadsClusterAndNamespace(t *testing.T) {
	set := policy.NewSet([]*policy.Policy{compileCM(t, "colors", `
match: {kinds: [MyApple]}
params: {maxPerColor: 2}
validations:
- expression: "cluster.myApples(object.metadata.namespace).filter(a, a.color == object.spec.color && a.name != object.metadata.name).size() < params.maxPerColor"
  messageExpression: "'at most ' + string(params.maxPerColor) + ' MyApples of color ' + object.spec.color"
- name: allowed-color
  expression: "object.spec.color != 'blue' || namespaceObject.metadata.?annotations[?'allow-blue'].orValue('') == 'true'"
  message: "color not allowed in this namespace"
`)})
	c := celCluster{apples: map[string][]cel.Apple{"shop": {{Name: "a", Color: "red"}, {Name: "b", Color: "red"}, {Name: "c", Color: "green"}}}}
	d := set.Evaluate(admission(t, policy.KindMyApple, admissionv1.Create, myApple("d", "red", 1), nil), c)
	if d.Allowed || len(d.Violations) != 1 || d.Violations[0].Rule != "validations[0]" || d.Violations[0].Message != "at most 2 MyApples of color red" {
		t.Errorf("third red apple: %+v", d)
	}
	if d := set.Evaluate(admission(t, policy.KindMyApple, admissionv1.Create, myApple("d", "green", 1), nil), c); !d.Allowed {
		t.Errorf("second green apple: %+v", d.Violations)
	}
	d = set.Evaluate(admission(t, policy.KindMyApple, admissionv1.Create, myApple("d", "blue", 1), nil), c)
	if d.Allowed || len(d.Violations) != 1 || d.Violations[0].Rule != "validations.allowed-color" {
		t.Errorf("blue apple: %+v", d.Violations)
	}
}

func TestCELPolicyWithoutObjectFailsClosed(t *testing.T) {
	set := policy.NewSet([]*policy.Policy{compileCM(t, "probes", `
match: {kinds: [Pod]}
validations:
- expression: "has(object.spec)"
`)})
	req := &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "shop", Pod: &policy.Pod{}}
	d := set.Evaluate(req, nil)
	if d.Allowed || len(d.Violations) != 1 || !strings.Contains(d.Violations[0].Message, "cannot be read by CEL") {
		t.Errorf("decision %+v", d)
	}
}

// TestSetWithoutCELNeverDecodesTheObject guards the promise that a set without CEL never
// decodes the whole object: Unstructured must not be called.
func TestSetWithoutCELNeverDecodesTheObject(t *testing.T) {
	set := policy.NewSet([]*policy.Policy{compileCM(t, "priv", "pods: {forbidPrivileged: true}\n")})
	req := admission(t, policy.KindPod, admissionv1.Create, pod(false), nil)
	req.Unstructured = func() (map[string]any, map[string]any, error) {
		t.Error("the object was decoded for a set without CEL")
		return nil, nil, nil
	}
	set.Evaluate(req, celCluster{})
}

// BenchmarkEvaluateCEL is one admission of a decoded Pod against a policy
// with one simple CEL validation, the object already decoded for CEL (the
// request's Unstructured keeps what it decoded).
func BenchmarkEvaluateCEL(b *testing.B) {
	set := policy.NewSet([]*policy.Policy{compileCM(b, "probes", `
match: {kinds: [Pod]}
validations:
- expression: "object.spec.containers.all(c, has(c.readinessProbe))"
`)})
	req := admission(b, policy.KindPod, admissionv1.Create, pod(true), nil)
	c := celCluster{}
	if d := set.Evaluate(req, c); len(d.Violations) != 0 {
		b.Fatal(d.Violations)
	}
	b.ReportAllocs()
	for b.Loop() {
		set.Evaluate(req, c)
	}
}

// A CEL-only policy whose matchConditions leave the object out did not
// judge it, and is not named among the policies that decided it; one whose
// conditions hold is.
func TestAppliedFollowsMatchConditions(t *testing.T) {
	set := policy.NewSet([]*policy.Policy{compileCM(t, "labelled-only", `
match: {kinds: [Pod]}
matchConditions:
- name: labelled
  expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"
validations:
- expression: "object.spec.containers.all(c, has(c.readinessProbe))"
`)})
	d := set.Evaluate(admission(t, policy.KindPod, admissionv1.Create, pod(false), nil), celCluster{})
	if !d.Allowed || len(d.Applied) != 0 {
		t.Errorf("unlabelled pod: allowed %v, applied %d policies, want none", d.Allowed, len(d.Applied))
	}
	labelled := pod(false)
	labelled["metadata"].(map[string]any)["labels"] = map[string]any{"team": "a"}
	d = set.Evaluate(admission(t, policy.KindPod, admissionv1.Create, labelled, nil), celCluster{})
	if d.Allowed || len(d.Applied) != 1 {
		t.Errorf("labelled pod: allowed %v, applied %d policies, want refused by 1", d.Allowed, len(d.Applied))
	}
}
