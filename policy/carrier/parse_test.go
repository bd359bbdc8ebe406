package carrier

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// problems lists the problems of a parse, one string each, as users read them.
func problems(t *testing.T, errs field.ErrorList) []string {
	t.Helper()
	if len(errs) == 0 {
		return nil
	}
	out := make([]string, len(errs))
	for i, fe := range errs {
		out[i] = policy.ErrorLine(fe)
	}
	return out
}

func checkProblems(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := problems(t, errs)
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("problems:\n  %q\nwant:\n  %q", got, want)
	}
}

// parseConfigMapData reads a ConfigMap's policy, as Compile does.
func parseConfigMapData(data map[string]string) (*v1alpha1.PolicySpec, field.ErrorList) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	if data != nil {
		m := map[string]any{}
		for k, v := range data {
			m[k] = v
		}
		u.Object["data"] = m
	}
	doc, errs := configMapDocument(u)
	if len(errs) > 0 {
		return nil, errs
	}
	spec, errs := ParseSpec(doc)
	return spec, policy.Prefixed(errs, policy.ConfigMapDataKey, ": ")
}

// parseAdmissionPolicySpec reads an AdmissionPolicy's spec from its text.
func parseAdmissionPolicySpec(spec []byte) (*v1alpha1.PolicySpec, field.ErrorList) {
	if len(spec) == 0 {
		return nil, field.ErrorList{policy.FieldError("spec", "required")}
	}
	s, errs := ParseSpec(spec)
	return s, policy.Prefixed(errs, "spec", ".")
}

// parseAdmissionPolicyObject reads the spec of an AdmissionPolicy object.
func parseAdmissionPolicyObject(obj map[string]any) (*v1alpha1.PolicySpec, field.ErrorList) {
	doc, errs := admissionPolicyDocument(&unstructured.Unstructured{Object: obj})
	if len(errs) > 0 {
		return nil, errs
	}
	spec, errs := ParseSpec(doc)
	return spec, policy.Prefixed(errs, "spec", ".")
}

const designExample = `enforcement: Deny
match:
  kinds: [Pod, MyApple]
  namespaceSelector: {}
  objectSelector: {}
  excludedNamespaces: []
pods:
  allowedRegistries: [registry.example.com/, ghcr.io/acme/]
  disallowedTags: [latest]
  requireDigest: false
  requiredLabels: [app]
  forbidPrivileged: true
  forbidHostNamespaces: true
  forbidHostPath: true
  requireRunAsNonRoot: true
  requireResourceLimits: [cpu, memory]
myApples:
  allowedColors: [red, green]
  allowedSizes: [small, medium]
  minQuantity: 1
  maxQuantity: 100
  maxTotalQuantityPerNamespace: 500
`

func TestParseDesignExample(t *testing.T) {
	want := &v1alpha1.PolicySpec{
		Enforcement: v1alpha1.Deny,
		Match: v1alpha1.Match{
			Kinds:              []string{"Pod", "MyApple"},
			NamespaceSelector:  &metav1.LabelSelector{},
			ObjectSelector:     &metav1.LabelSelector{},
			ExcludedNamespaces: []string{},
		},
		Pods: &v1alpha1.PodRules{
			AllowedRegistries:     []string{"registry.example.com/", "ghcr.io/acme/"},
			DisallowedTags:        []string{"latest"},
			RequiredLabels:        []string{"app"},
			ForbidPrivileged:      true,
			ForbidHostNamespaces:  true,
			ForbidHostPath:        true,
			RequireRunAsNonRoot:   true,
			RequireResourceLimits: []string{"cpu", "memory"},
		},
		MyApples: &v1alpha1.MyAppleRules{
			AllowedColors:                []string{"red", "green"},
			AllowedSizes:                 []string{"small", "medium"},
			MinQuantity:                  ptr.To[int64](1),
			MaxQuantity:                  ptr.To[int64](100),
			MaxTotalQuantityPerNamespace: ptr.To[int64](500),
		},
	}
	cm, err := parseConfigMapData(map[string]string{policy.ConfigMapDataKey: designExample, "README": "other keys are left alone"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cm, want) {
		t.Errorf("ConfigMap spec:\n%#v\nwant:\n%#v", cm, want)
	}
	ap, err := parseAdmissionPolicySpec([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ap, want) {
		t.Errorf("AdmissionPolicy spec:\n%#v\nwant:\n%#v", ap, want)
	}
	// The same spec as JSON, the way an AdmissionPolicy reaches the webhook.
	obj := map[string]any{"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy", "spec": map[string]any{
		"pods":     map[string]any{"requiredLabels": []any{"app"}},
		"myApples": map[string]any{"maxQuantity": int64(100)},
	}}
	spec, err := parseAdmissionPolicyObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Pods.RequiredLabels[0] != "app" || *spec.MyApples.MaxQuantity != 100 {
		t.Errorf("object spec %+v", spec)
	}
	if _, err := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "x"}, "", cm); err != nil {
		t.Errorf("compiling the design example: %v", err)
	}
}

// TestParseErrors: each problem names its field path under the carrier's
// prefix: "policy.yaml: " for a ConfigMap, "spec." for an AdmissionPolicy.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		cm, spec   []string
	}{
		{"unknown field", "pods:\n  allowedRegistrie: [x]\n",
			[]string{"policy.yaml: pods.allowedRegistrie: unknown field"},
			[]string{"spec.pods.allowedRegistrie: unknown field"}},
		{"unknown top-level field", "Pods:\n  forbidPrivileged: true\n",
			[]string{"policy.yaml: Pods: unknown field"},
			[]string{"spec.Pods: unknown field"}},
		{"string for an integer", "myApples:\n  maxQuantity: ten\n",
			[]string{"policy.yaml: myApples.maxQuantity: must be an integer, not string"},
			[]string{"spec.myApples.maxQuantity: must be an integer, not string"}},
		{"fraction for an integer", "myApples:\n  maxQuantity: 1.5\n",
			[]string{"policy.yaml: myApples.maxQuantity: must be an integer, not number 1.5"},
			[]string{"spec.myApples.maxQuantity: must be an integer, not number 1.5"}},
		{"string for a boolean", "pods:\n  forbidPrivileged: \"true\"\n",
			[]string{"policy.yaml: pods.forbidPrivileged: must be a boolean (true or false), not string"},
			[]string{"spec.pods.forbidPrivileged: must be a boolean (true or false), not string"}},
		{"YAML 1.1 boolean for a string", "enforcement: yes\npods:\n  forbidPrivileged: true\n",
			[]string{"policy.yaml: enforcement: must be a string, not bool"},
			[]string{"spec.enforcement: must be a string, not bool"}},
		{"number for an object", "pods: 3\n",
			[]string{"policy.yaml: pods: must be an object, not number"},
			[]string{"spec.pods: must be an object, not number"}},
		{"invalid enforcement", "enforcement: Block\npods:\n  forbidPrivileged: true\n",
			[]string{`policy.yaml: enforcement: unsupported value "Block": must be one of Deny, Warn, Audit`},
			[]string{`spec.enforcement: unsupported value "Block": must be one of Deny, Warn, Audit`}},
		{"enforcement is case-sensitive", "enforcement: deny\npods:\n  forbidPrivileged: true\n",
			[]string{`policy.yaml: enforcement: unsupported value "deny": must be one of Deny, Warn, Audit`},
			[]string{`spec.enforcement: unsupported value "deny": must be one of Deny, Warn, Audit`}},
		{"invalid selector operator", "match:\n  namespaceSelector:\n    matchExpressions:\n    - {key: env, operator: Foo}\npods:\n  forbidPrivileged: true\n",
			[]string{`policy.yaml: match.namespaceSelector.matchExpressions[0].operator: Invalid value: "Foo": not a valid selector operator`},
			[]string{`spec.match.namespaceSelector.matchExpressions[0].operator: Invalid value: "Foo": not a valid selector operator`}},
		{"In without values", "match:\n  objectSelector:\n    matchExpressions:\n    - {key: env, operator: In}\npods:\n  forbidPrivileged: true\n",
			[]string{`policy.yaml: match.objectSelector.matchExpressions[0].values: Required value: must be specified when ` + "`operator` is 'In' or 'NotIn'"},
			[]string{`spec.match.objectSelector.matchExpressions[0].values: Required value: must be specified when ` + "`operator` is 'In' or 'NotIn'"}},
		{"no rules", "enforcement: Warn\n",
			[]string{"policy.yaml: no rules: set pods, myApples or validations"},
			[]string{"spec: no rules: set pods, myApples or validations"}},
		{"empty", "",
			[]string{"policy.yaml: empty policy: set pods or myApples rules"},
			[]string{"spec: required"}},
		{"only a comment", "# nothing yet\n",
			[]string{"policy.yaml: empty policy: set pods or myApples rules"},
			[]string{"spec: empty policy: set pods or myApples rules"}},
		{"invalid YAML", "pods:\n  forbidPrivileged: true\n  bad: [\n",
			[]string{"policy.yaml: invalid YAML: yaml: line 3: did not find expected node content"},
			[]string{"spec: invalid YAML: yaml: line 3: did not find expected node content"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := parseConfigMapData(map[string]string{policy.ConfigMapDataKey: tt.yaml})
			if spec != nil {
				t.Errorf("ConfigMap: got a spec with the error")
			}
			checkProblems(t, err, tt.cm...)
			spec, err = parseAdmissionPolicySpec([]byte(tt.yaml))
			if spec != nil {
				t.Errorf("AdmissionPolicy: got a spec with the error")
			}
			checkProblems(t, err, tt.spec...)
		})
	}
}

func TestParseConfigMapDataMissingKey(t *testing.T) {
	for _, data := range []map[string]string{nil, {"policy.yml": designExample}} {
		_, err := parseConfigMapData(data)
		checkProblems(t, err, `data: missing key "policy.yaml" holding the policy`)
	}
}

func TestParseAdmissionPolicyObjectErrors(t *testing.T) {
	_, err := parseAdmissionPolicyObject(map[string]any{"kind": "AdmissionPolicy"})
	checkProblems(t, err, "spec: required")
	_, err = parseAdmissionPolicyObject(map[string]any{"spec": nil})
	checkProblems(t, err, "spec: required")
	_, err = parseAdmissionPolicyObject(map[string]any{"spec": map[string]any{"pods": map[string]any{"forbidPrivileged": true, "hostPath": true}}})
	checkProblems(t, err, "spec.pods.hostPath: unknown field")
}

// TestValidationErrors: every problem of a policy is reported at once, in
// the order of the schema.
func TestValidationErrors(t *testing.T) {
	y := `enforcement: Deny
match:
  kinds: [Pod, Deployment, MyApple, Pod]
  namespaceSelector:
    matchLabels: {"bad key!": x}
  excludedNamespaces: [kube-system, Team_A]
pods:
  allowedRegistries: ["https://registry.example.com", "", "ghcr.io/acme:v1", "registry.example.com//x", "/x", "reg istry", "ghcr.io/acme@sha256:x"]
  disallowedTags: [latest, "bad tag", ""]
  requiredLabels: [app, "-x", "example.com/"]
  requireResourceLimits: [cpu, "a b"]
myApples:
  allowedColors: [red, ""]
  allowedSizes: [small, huge]
  minQuantity: 0
  maxQuantity: -1
  maxTotalQuantityPerNamespace: 0
`
	_, err := parseAdmissionPolicySpec([]byte(y))
	got := problems(t, err)
	wantPrefixes := []string{
		`spec.match.kinds[1]: unsupported value "Deployment": must be Pod or MyApple`,
		`spec.match.kinds[3]: duplicate value "Pod"`,
		`spec.match.namespaceSelector.matchLabels: Invalid value: "bad key!"`,
		`spec.match.excludedNamespaces[1]: invalid namespace name "Team_A"`,
		`spec.pods.allowedRegistries[0]: invalid registry prefix "https://registry.example.com": write the registry host without a scheme`,
		`spec.pods.allowedRegistries[1]: invalid registry prefix "": must not be empty`,
		`spec.pods.allowedRegistries[2]: invalid registry prefix "ghcr.io/acme:v1": must not carry a tag`,
		`spec.pods.allowedRegistries[3]: invalid registry prefix "registry.example.com//x": has an empty path component`,
		`spec.pods.allowedRegistries[4]: invalid registry prefix "/x": has an empty path component`,
		`spec.pods.allowedRegistries[5]: invalid registry prefix "reg istry"`,
		`spec.pods.allowedRegistries[6]: invalid registry prefix "ghcr.io/acme@sha256:x"`,
		`spec.pods.disallowedTags[1]: invalid tag "bad tag"`,
		`spec.pods.disallowedTags[2]: invalid tag ""`,
		`spec.pods.requiredLabels[1]: invalid label key "-x"`,
		`spec.pods.requiredLabels[2]: invalid label key "example.com/": name part must be non-empty`,
		`spec.pods.requiredLabels[2]: invalid label key "example.com/": name part must consist of`,
		`spec.pods.requireResourceLimits[1]: invalid resource name "a b"`,
		`spec.myApples.allowedColors[1]: must not be empty`,
		`spec.myApples.allowedSizes[1]: unsupported value "huge": must be one of small, medium, large`,
		`spec.myApples.minQuantity: must be at least 1, not 0`,
		`spec.myApples.maxQuantity: must be at least 1, not -1`,
		`spec.myApples.maxTotalQuantityPerNamespace: must be at least 1, not 0`,
	}
	matchPrefixes(t, got, wantPrefixes)

	_, err = ParseSpec([]byte("myApples:\n  minQuantity: 5\n  maxQuantity: 4\n"))
	checkProblems(t, err, "myApples.maxQuantity: must not be less than minQuantity (5), not 4")
	_, err = ParseSpec([]byte("pods:\n  allowedRegistries: [myregistry/, ghcr.io/Acme/, localhost/, registry.example.com:5000, index.docker.io/, Registry.Example.com]\n"))
	checkProblems(t, err,
		`pods.allowedRegistries[0]: invalid registry prefix "myregistry/": "myregistry" is not a registry host (no dot or port): images such as myregistry/app are pulled from docker.io/myregistry/app; write the registry's full host name, or docker.io/myregistry/ if Docker Hub is meant`,
		`pods.allowedRegistries[1]: invalid registry prefix "ghcr.io/Acme/": repository paths are lowercase`,
	)
	_, err = ParseSpec([]byte("match:\n  kinds: [MyApple]\npods:\n  forbidPrivileged: true\n"))
	checkProblems(t, err, "pods: these rules never apply: match.kinds leaves out Pod")
	_, err = ParseSpec([]byte("match:\n  kinds: [Pod]\npods:\n  forbidPrivileged: true\nmyApples:\n  minQuantity: 1\n"))
	checkProblems(t, err, "myApples: these rules never apply: match.kinds leaves out MyApple")
}

// matchPrefixes checks that got has one problem per prefix, in order, each
// starting with it (the rest is the library's wording).
func matchPrefixes(t *testing.T, got, prefixes []string) {
	t.Helper()
	ok := len(got) == len(prefixes)
	for i := 0; ok && i < len(got); i++ {
		ok = len(got[i]) >= len(prefixes[i]) && got[i][:len(prefixes[i])] == prefixes[i]
	}
	if !ok {
		t.Errorf("problems:\n%s\nwant prefixes:\n%s", lines(got), lines(prefixes))
	}
}

func lines(l []string) string {
	s := ""
	for _, x := range l {
		s += fmt.Sprintf("  %s\n", x)
	}
	return s
}

func TestCompileRejectsInvalidSpec(t *testing.T) {
	if _, err := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "x"}, "", nil); err == nil {
		t.Error("nil spec compiled")
	}
	_, err := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "x"}, "", &v1alpha1.PolicySpec{Enforcement: "Sometimes", Pods: &v1alpha1.PodRules{}})
	checkProblems(t, err, `enforcement: unsupported value "Sometimes": must be one of Deny, Warn, Audit`)
	p, err := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "x"}, "", &v1alpha1.PolicySpec{Pods: &v1alpha1.PodRules{ForbidPrivileged: true}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enforcement != v1alpha1.Deny || p.String() != "AdmissionPolicy x (Deny, cluster-wide)" {
		t.Errorf("compiled %s with enforcement %q", p, p.Enforcement)
	}
}

// TestParseReportsEveryProblem: an author fixes a policy in one go, so
// unknown fields, duplicated keys, values of the wrong type and invalid
// values are all reported together, each at its exact path.
func TestParseReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		// Type errors come in the order of the keys (YAML-to-JSON sorts them).
		{"two wrong types", "pods:\n  forbidPrivileged: true\nmyApples:\n  minQuantity: x\n  maxQuantity: [1]\n", []string{
			"myApples.maxQuantity: must be an integer, not array",
			"myApples.minQuantity: must be an integer, not string",
		}},
		{"wrong types and an unknown field", "pods:\n  forbidPrivileged: \"true\"\n  requiredLabels: app\n  foo: 1\n", []string{
			"pods.forbidPrivileged: must be a boolean (true or false), not string",
			"pods.requiredLabels: must be a list, not string",
			"pods.foo: unknown field",
		}},
		{"unknown field and an invalid value", "enforcement: Block\npods:\n  forbidPrivilegd: true\n  requiredLabels: [app]\n", []string{
			"pods.forbidPrivilegd: unknown field",
			`enforcement: unsupported value "Block": must be one of Deny, Warn, Audit`,
		}},
		{"wrong type and an invalid value", "enforcement: Block\nmyApples:\n  minQuantity: ten\n", []string{
			"myApples.minQuantity: must be an integer, not string",
			`enforcement: unsupported value "Block": must be one of Deny, Warn, Audit`,
		}},
		{"list items of the wrong type", "match:\n  kinds: [Pod, 1, 2]\npods:\n  requiredLabels: [app, true]\n", []string{
			"match.kinds[1]: must be a string, not number",
			"match.kinds[2]: must be a string, not number",
			"pods.requiredLabels[1]: must be a string, not bool",
		}},
		{"label values of the wrong type", "match:\n  namespaceSelector:\n    matchLabels: {example.com/tier: 1, env: prod, version: 2}\npods:\n  requiredLabels: [app]\n", []string{
			"match.namespaceSelector.matchLabels[example.com/tier]: must be a string, not number",
			"match.namespaceSelector.matchLabels[version]: must be a string, not number",
		}},
		{"selector values of the wrong type", "match:\n  objectSelector:\n    matchExpressions:\n    - {key: a, operator: In, values: [x]}\n    - {key: b, operator: In, values: [1]}\npods:\n  requiredLabels: [app]\n", []string{
			"match.objectSelector.matchExpressions[1].values[0]: must be a string, not number",
		}},
		{"the whole policy is a string", `"pods"`, []string{"must be an object holding the policy, not string"}},
		{"the whole policy is a list", "- pods: {}\n", []string{"must be an object holding the policy, not array"}},
		{"duplicate key", "pods:\n  forbidPrivileged: true\n  forbidPrivileged: false\n", []string{
			"pods.forbidPrivileged: duplicate field (lines 2 and 3)",
		}},
		{"duplicate section", "pods:\n  requiredLabels: [app]\nmyApples:\n  minQuantity: 1\npods:\n  forbidPrivileged: true\n", []string{
			"pods: duplicate field (lines 1 and 5)",
		}},
		{"duplicate key in JSON", `{"pods": {"requiredLabels": ["app"]}, "pods": {}}`, []string{
			"pods: duplicate field (line 1, columns 2 and 39)",
		}},
		{"duplicate label key", "match:\n  objectSelector:\n    matchLabels:\n      app.kubernetes.io/name: a\n      app.kubernetes.io/name: b\npods:\n  requiredLabels: [app]\n", []string{
			"match.objectSelector.matchLabels[app.kubernetes.io/name]: duplicate field (lines 4 and 5)",
		}},
		{"duplicate in a list item", "match:\n  namespaceSelector:\n    matchExpressions:\n    - key: env\n      key: tier\n      operator: Exists\npods:\n  requiredLabels: [app]\n", []string{
			"match.namespaceSelector.matchExpressions[0].key: duplicate field (lines 4 and 5)",
		}},
		{"two documents", "pods:\n  requiredLabels: [app]\n---\nmyApples:\n  minQuantity: 0\n", []string{
			"more than one YAML document (---): a policy is a single document",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseSpec([]byte(tt.yaml))
			if spec != nil {
				t.Error("got a spec with the error")
			}
			checkProblems(t, err, tt.want...)
		})
	}
	// A document marker before the policy, or after it, is one document.
	for _, y := range []string{"---\npods:\n  requiredLabels: [app]\n", "pods:\n  requiredLabels: [app]\n---\n", "pods:\n  requiredLabels: [app]\n...\n"} {
		if _, err := ParseSpec([]byte(y)); err != nil {
			t.Errorf("%q: %v", y, err)
		}
	}
	// Carrier prefixes apply to each problem.
	_, err := parseConfigMapData(map[string]string{policy.ConfigMapDataKey: "pods:\n  forbidPrivileged: 1\n  forbidPrivileged: 2\n  x: 1\n"})
	checkProblems(t, err,
		"policy.yaml: pods.forbidPrivileged: duplicate field (lines 2 and 3)",
		"policy.yaml: pods.forbidPrivileged: must be a boolean (true or false), not number",
		"policy.yaml: pods.x: unknown field",
	)
	_, err = parseAdmissionPolicySpec([]byte(`"x"`))
	checkProblems(t, err, "spec: must be an object holding the policy, not string")
}

// TestParseHugePolicy: a policy object can be a megabyte of mistakes (a
// ConfigMap holds up to 1 MiB). Every wrong value is found in one pass, and
// the report stays readable: the first problems, then how many more.
func TestParseHugePolicy(t *testing.T) {
	y := "match:\n  kinds: [" + strings.Repeat("1, ", 20000) + "Pod]\npods:\n  forbidPrivileged: true\n"
	_, err := ParseSpec([]byte(y))
	got := problems(t, err)
	if len(got) != policy.MaxProblems+1 {
		t.Fatalf("%d problems, want %d and a count of the rest", len(got), policy.MaxProblems+1)
	}
	if got[0] != "match.kinds[0]: must be a string, not number" || got[policy.MaxProblems] != "and 19950 more problems" {
		t.Errorf("problems %q ... %q", got[0], got[policy.MaxProblems])
	}
	// Numbers past the int64 range are named as YAML-to-JSON wrote them.
	_, err = ParseSpec([]byte("myApples:\n  maxQuantity: 1e30\n  minQuantity: 99999999999999999999\n"))
	checkProblems(t, err,
		"myApples.maxQuantity: must be an integer, not number 1e+30",
		"myApples.minQuantity: must be an integer, not number 100000000000000000000")
}
