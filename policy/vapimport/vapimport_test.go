package vapimport_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/policy/vapimport"
)

const vapHeader = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: p}
spec:
`

const podRules = `  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}
`

const validation = `  validations:
  - expression: "object.metadata.name != 'x'"
`

func bindingOf(spec string) string {
	return "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: b}\nspec:\n  policyName: p\n" + spec
}

const denyBinding = "  validationActions: [Deny]\n"

func convert(t *testing.T, in string) *vapimport.Result {
	t.Helper()
	docs, err := check.ReadDocuments("in.yaml", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	res, err := vapimport.Convert(toImport(docs))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func toImport(docs []check.Document) []vapimport.Document {
	out := make([]vapimport.Document, len(docs))
	for i, d := range docs {
		out[i] = vapimport.Document{Where: d.Where, Raw: d.Raw}
	}
	return out
}

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		// policies is how many are converted; notCarried and notes hold a
		// substring of each message expected, in order.
		policies   int
		notCarried []string
		notes      []string
		check      func(t *testing.T, p []vapimport.Policy)
	}{{
		name: "params from a ConfigMap, whole, without what the API server writes",
		in: vapHeader + "  paramKind: {apiVersion: v1, kind: ConfigMap}\n" + podRules + validation +
			bindingOf(denyBinding+"  paramRef: {name: limits, namespace: ns, parameterNotFoundAction: Deny}\n") +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits, namespace: ns, resourceVersion: '7', uid: u, labels: {a: b}}\ndata: {max: '3'}\n" +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits, namespace: other}\ndata: {max: '9'}\n",
		policies: 1,
		check: func(t *testing.T, p []vapimport.Policy) {
			var params map[string]any
			if err := json.Unmarshal(p[0].Spec.Params.Raw, &params); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"max": "3"},
				"metadata": map[string]any{"name": "limits", "namespace": "ns", "labels": map[string]any{"a": "b"}}}
			if got, _ := json.Marshal(params); !bytes.Equal(got, must(json.Marshal(want))) {
				t.Errorf("params %s, want %s", got, must(json.Marshal(want)))
			}
			if p[0].Name != "p" || p[0].Spec.Enforcement != v1alpha1.Deny || strings.Join(p[0].Spec.Match.Kinds, ",") != "Pod" {
				t.Errorf("got %s %s %v", p[0].Name, p[0].Spec.Enforcement, p[0].Spec.Match.Kinds)
			}
		},
	}, {
		name:     "Warn",
		in:       vapHeader + podRules + validation + bindingOf("  validationActions: [Warn, Audit]\n"),
		policies: 1,
		check:    enforcement(v1alpha1.Warn),
	}, {
		name:     "Audit",
		in:       vapHeader + podRules + validation + bindingOf("  validationActions: [Audit]\n"),
		policies: 1,
		check:    enforcement(v1alpha1.Audit),
	}, {
		name:     "Deny and Audit",
		in:       vapHeader + podRules + validation + bindingOf("  validationActions: [Audit, Deny]\n"),
		policies: 1,
		check:    enforcement(v1alpha1.Deny),
	}, {
		name: "CREATE only becomes a matchCondition after the policy's own",
		in: vapHeader + `  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["*"], operations: [CREATE], resources: [pods]}
  matchConditions:
  - {name: operations, expression: "true"}
` + validation + bindingOf(denyBinding),
		policies: 1,
		check: func(t *testing.T, p []vapimport.Policy) {
			mc := p[0].Spec.MatchConditions
			if len(mc) != 2 || mc[0].Name != "operations" || mc[1].Name != "operations2" || mc[1].Expression != "request.operation == 'CREATE'" {
				t.Errorf("matchConditions %+v", mc)
			}
		},
	}, {
		name: "Pods on CREATE, MyApples on CREATE and UPDATE",
		in: vapHeader + `  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
    - {apiGroups: [stable.example.com], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [myapples]}
` + validation + bindingOf(denyBinding),
		policies: 1,
		check: func(t *testing.T, p []vapimport.Policy) {
			want := "(request.kind.kind == 'Pod' && request.operation == 'CREATE') || (request.kind.kind == 'MyApple' && true)"
			if k := strings.Join(p[0].Spec.Match.Kinds, ","); k != "Pod,MyApple" || len(p[0].Spec.MatchConditions) != 1 || p[0].Spec.MatchConditions[0].Expression != want {
				t.Errorf("kinds %s, matchConditions %+v", k, p[0].Spec.MatchConditions)
			}
		},
	}, {
		name: "other resources and operations are named",
		in: vapHeader + `  matchConstraints:
    resourceRules:
    - {apiGroups: ["", apps], apiVersions: [v1], operations: ["*"], resources: [pods, deployments]}
` + validation + bindingOf(denyBinding),
		policies:   1,
		notCarried: []string{`deployments in API group ""`, `pods in API group "apps"`, `deployments in API group "apps"`, "operations DELETE and CONNECT"},
	}, {
		name: "every resource",
		in: vapHeader + `  matchConstraints:
    resourceRules:
    - {apiGroups: ["*"], apiVersions: ["*"], operations: [CREATE], resources: ["*"]}
` + validation + bindingOf(denyBinding),
		policies:   1,
		notCarried: []string{`every resource of API group "*"`},
		check: func(t *testing.T, p []vapimport.Policy) {
			if k := strings.Join(p[0].Spec.Match.Kinds, ","); k != "Pod,MyApple" {
				t.Errorf("kinds %s", k)
			}
		},
	}, {
		name: "only Deployments: nothing to convert",
		in: vapHeader + `  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
` + validation + bindingOf(denyBinding),
		notCarried: []string{"deployments", "matches neither Pods"},
	}, {
		name:       "auditAnnotations and a validation's reason",
		in:         vapHeader + podRules + validation + "    reason: Invalid\n  auditAnnotations:\n  - {key: k, valueExpression: \"'v'\"}\n" + bindingOf(denyBinding),
		policies:   1,
		notCarried: []string{"auditAnnotations"},
		notes:      []string{"reason Invalid"},
	}, {
		name: "a param selector matching two objects",
		in: vapHeader + "  paramKind: {apiVersion: v1, kind: ConfigMap}\n" + podRules + validation +
			bindingOf(denyBinding+"  paramRef: {namespace: ns, selector: {matchLabels: {app: x}}, parameterNotFoundAction: Deny}\n") +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns, labels: {app: x}}\n" +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns, labels: {app: x}}\n",
		notCarried: []string{"paramRef selects 2 objects"},
	}, {
		name: "params from each object's namespace",
		in: vapHeader + "  paramKind: {apiVersion: v1, kind: ConfigMap}\n" + podRules + validation +
			bindingOf(denyBinding+"  paramRef: {name: a, parameterNotFoundAction: Deny}\n") +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\n",
		notCarried: []string{"namespace of each object"},
	}, {
		name:       "params not given",
		in:         vapHeader + "  paramKind: {apiVersion: v1, kind: ConfigMap}\n" + podRules + validation + bindingOf(denyBinding+"  paramRef: {name: a, namespace: ns}\n"),
		notCarried: []string{"not among the input"},
	}, {
		name:       "a policy without a binding, a binding without its policy",
		in:         vapHeader + podRules + validation + "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: b}\nspec: {policyName: q, validationActions: [Deny]}\n",
		notCarried: []string{"has no binding", `binds ValidatingAdmissionPolicy "q"`},
	}, {
		name: "two bindings, two policies; selectors of policy and binding both hold",
		in: vapHeader + `  matchConstraints:
    namespaceSelector: {matchLabels: {env: prod}}
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}
` + validation + bindingOf(denyBinding+"  matchResources: {namespaceSelector: {matchLabels: {team: a}, matchExpressions: [{key: x, operator: Exists}]}}\n") +
			"---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: c}\nspec: {policyName: p, validationActions: [Warn]}\n",
		policies: 2,
		check: func(t *testing.T, p []vapimport.Policy) {
			if p[0].Name != "p-b" || p[1].Name != "p-c" {
				t.Errorf("names %s, %s", p[0].Name, p[1].Name)
			}
			sel, err := metav1.LabelSelectorAsSelector(p[0].Spec.Match.NamespaceSelector)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sel.String(), "env=prod,team in (a),x"; got != want {
				t.Errorf("namespaceSelector %q, want %q", got, want)
			}
			if got := metav1.FormatLabelSelector(p[1].Spec.Match.NamespaceSelector); got != "env=prod" {
				t.Errorf("second namespaceSelector %q", got)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res := convert(t, tc.in)
			if len(res.Policies) != tc.policies {
				t.Fatalf("%d policies, want %d (not carried: %q)", len(res.Policies), tc.policies, res.NotCarried)
			}
			matches(t, "not carried", res.NotCarried, tc.notCarried)
			matches(t, "notes", res.Notes, tc.notes)
			if tc.check != nil {
				tc.check(t, res.Policies)
			}
			// What is converted is a valid policy of either carrier.
			for _, p := range res.Policies {
				for _, out := range [][]byte{must(p.AdmissionPolicy()), must(p.ConfigMap("team-a"))} {
					assertCompiles(t, out)
				}
			}
		})
	}
}

func enforcement(want v1alpha1.Enforcement) func(t *testing.T, p []vapimport.Policy) {
	return func(t *testing.T, p []vapimport.Policy) {
		if p[0].Spec.Enforcement != want {
			t.Errorf("enforcement %s, want %s", p[0].Spec.Enforcement, want)
		}
	}
}

func matches(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %q, want %d matching %q", what, got, len(want), want)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("%s[%d] = %q, want it to contain %q", what, i, got[i], want[i])
		}
	}
}

func assertCompiles(t *testing.T, out []byte) {
	t.Helper()
	docs, err := check.ReadDocuments("out", bytes.NewReader(out))
	if err != nil || len(docs) != 1 {
		t.Fatalf("%d documents, %v:\n%s", len(docs), err, out)
	}
	u := object(t, docs[0].Raw)
	if _, err := carrier.New().Compile(u, "policy-system"); err != nil {
		t.Errorf("the output does not compile: %v\n%s", err, out)
	}
}

// Malformed input is an error naming the document, never a panic.
func TestConvertRefusesMalformed(t *testing.T) {
	for _, in := range []string{
		vapHeader + "  matchConstraint: {}\n",
		vapHeader + "  validations: {expression: x}\n",
		"apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: b}\nspec: {policyName: [a]}\n",
		vapHeader + podRules + "---\n" + vapHeader + podRules,
	} {
		docs, err := check.ReadDocuments("in.yaml", strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vapimport.Convert(toImport(docs)); err == nil || !strings.Contains(err.Error(), "in.yaml: document") {
			t.Errorf("%q: got %v, want an error naming the document", in, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func object(t *testing.T, raw []byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}
