package carrier

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

func TestReadCoverage(t *testing.T) {
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	for _, tc := range []struct {
		name string
		u    *unstructured.Unstructured
		want policy.Coverage
	}{
		{"an invalid rule: the rest is read", celConfigMap("pods:\n  allowedRegistries: [\"https://x/\"]\n"),
			policy.Coverage{Enforcement: v1alpha1.Deny, Match: &v1alpha1.Match{}, Kinds: []policy.Kind{policy.KindPod}}},
		{"enforcement and match read", celConfigMap("enforcement: Warn\nmatch:\n  namespaceSelector: {matchLabels: {env: prod}}\n  excludedNamespaces: [dev]\nmyApples:\n  allowedColors: 7\n"),
			policy.Coverage{Enforcement: v1alpha1.Warn, Match: &v1alpha1.Match{NamespaceSelector: prod, ExcludedNamespaces: []string{"dev"}}, Kinds: []policy.Kind{policy.KindMyApple}}},
		{"an invalid selector: match unreadable", celConfigMap("match:\n  objectSelector: {matchExpressions: [{key: a, operator: Bogus}]}\npods:\n  forbidPrivileged: true\n"),
			policy.Coverage{Enforcement: v1alpha1.Deny, Kinds: []policy.Kind{policy.KindPod}}},
		{"an unknown match field: match unreadable", celConfigMap("match:\n  kind: [Pod]\npods:\n  forbidPrivileged: true\n"),
			policy.Coverage{Enforcement: v1alpha1.Deny, Kinds: []policy.Kind{policy.KindPod}}},
		{"a misspelt enforcement: Deny", celConfigMap("enforcement: Dney\npods:\n  forbidPrivileged: true\n"),
			policy.Coverage{Enforcement: v1alpha1.Deny, Match: &v1alpha1.Match{}, Kinds: []policy.Kind{policy.KindPod}}},
		{"validations: the kinds of match", celAdmissionPolicy(map[string]any{"match": map[string]any{"kinds": []any{"MyApple"}}, "validations": []any{map[string]any{"expression": "nope("}}}),
			policy.Coverage{Enforcement: v1alpha1.Deny, Match: &v1alpha1.Match{Kinds: []string{policy.KindMyApple}}, Kinds: []policy.Kind{policy.KindMyApple}}},
		{"no rules that can be read: both kinds", celConfigMap("match: {}\npod:\n  forbidPrivileged: true\n"),
			policy.Coverage{Enforcement: v1alpha1.Deny, Match: &v1alpha1.Match{}}},
		{"not YAML: everything", celConfigMap("pods: [\n"), policy.Coverage{Enforcement: v1alpha1.Deny}},
		{"not a mapping: everything", celConfigMap("- pods\n"), policy.Coverage{Enforcement: v1alpha1.Deny}},
		{"too deep: everything", celConfigMap("enforcement: Warn\npods: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"), policy.Coverage{Enforcement: v1alpha1.Deny}},
		{"no policy.yaml: everything", &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "p", "namespace": "team-a", "labels": map[string]any{policy.PolicyLabel: "true"}},
		}}, policy.Coverage{Enforcement: v1alpha1.Deny}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReadCoverage(tc.u); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("coverage\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

// A stand-in refuses what the invalid policy covers, in its carrier's
// scope, on CREATE and UPDATE alike, and nothing else.
func TestStandIn(t *testing.T) {
	u := celConfigMap("match:\n  excludedNamespaces: [team-b]\n  objectSelector: {matchLabels: {tier: web}}\npods:\n  allowedRegistries: [\"https://x/\"]\n")
	u.SetResourceVersion("42")
	msg := func(v1alpha1.Enforcement) string { return "the policy is invalid" }
	set := policy.NewSet([]*policy.Policy{StandIn(u, "policy-system", msg)})
	pod := func(ns string, labels map[string]string) *policy.Pod {
		return &policy.Pod{
			ObjectMeta: policy.ObjectMeta{Namespace: ns, Name: "app", Labels: labels},
			Spec:       policy.PodSpec{Containers: []policy.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
		}
	}
	web := map[string]string{"tier": "web"}
	for _, tc := range []struct {
		name    string
		req     *policy.Request
		allowed bool
	}{
		{"a Pod it covers", &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "team-a", Pod: pod("team-a", web)}, false},
		{"an UPDATE too, though the old object was refused the same", &policy.Request{Kind: policy.KindPod, Operation: policy.Update, Namespace: "team-a", Pod: pod("team-a", web), OldPod: pod("team-a", web)}, false},
		{"a Pod its objectSelector leaves out", &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "team-a", Pod: pod("team-a", nil)}, true},
		{"outside its ConfigMap's namespace", &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "team-c", Pod: pod("team-c", web)}, true},
		{"a MyApple: it has Pod rules only", &policy.Request{Kind: policy.KindMyApple, Operation: policy.Create, Namespace: "team-a",
			MyApple: &policy.MyApple{ObjectMeta: policy.ObjectMeta{Namespace: "team-a", Name: "a", Labels: web}, Spec: policy.MyAppleSpec{Color: "red", Size: "small", Quantity: 1}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := set.Evaluate(tc.req, nil)
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v (%v)", d.Allowed, tc.allowed, d.Violations)
			}
			if !tc.allowed {
				if got, want := d.Message(), "policy violation: ConfigMap team-a/probes invalid: the policy is invalid"; got != want {
					t.Errorf("message %q, want %q", got, want)
				}
				if len(d.Violations) != 1 || d.Violations[0].Rule != policy.RuleInvalid || len(d.Applied) != 1 || d.Applied[0].Version != "42" {
					t.Errorf("violations %v, applied %v: want the stand-in's", d.Violations, d.Applied)
				}
			}
		})
	}

	// A Warn policy stands in with a warning: it never refused anything.
	warn := celAdmissionPolicy(map[string]any{"enforcement": "Warn", "pods": map[string]any{"allowedRegistries": []any{"ftp://x/"}}})
	d := policy.NewSet([]*policy.Policy{StandIn(warn, "policy-system", msg)}).Evaluate(
		&policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: "anywhere", Pod: pod("anywhere", nil)}, nil)
	if !d.Allowed || !reflect.DeepEqual(d.Warnings(), []string{"AdmissionPolicy probes invalid: the policy is invalid"}) {
		t.Errorf("allowed %v, warnings %q", d.Allowed, d.Warnings())
	}
}
