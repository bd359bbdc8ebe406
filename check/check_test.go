package check

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

const testPolicies = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: baseline
  namespace: policy-system
  labels: {policy.example.com/policy: "true"}
data:
  policy.yaml: |
    pods:
      allowedRegistries: [registry.example.com/]
    myApples:
      maxTotalQuantityPerNamespace: 10
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: team-a-only
  namespace: team-a
  labels: {policy.example.com/policy: "true"}
data:
  policy.yaml: |
    match: {kinds: [Pod]}
    pods:
      requireDigest: true
---
apiVersion: policy.example.com/v1alpha1
kind: AdmissionPolicy
metadata: {name: prod-labels}
spec:
  enforcement: Warn
  match:
    namespaceSelector: {matchLabels: {env: prod}}
  pods:
    requiredLabels: [app]
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {env: prod}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: team-a}
data: {x: y}
`

func newChecker(t testing.TB, notes io.Writer) *Checker {
	t.Helper()
	docs, err := ReadDocuments("policies.yaml", strings.NewReader(testPolicies))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(docs, Options{PolicyNamespace: "policy-system", Notes: notes})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func judgeAll(t *testing.T, c *Checker, input string) []*Result {
	t.Helper()
	docs, err := ReadDocuments("input.yaml", strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	var out []*Result
	for _, d := range docs {
		r, err := c.Judge(d)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

func TestLoadPolicies(t *testing.T) {
	var notes bytes.Buffer
	c := newChecker(t, &notes)
	if got := c.Policies(); got != 3 {
		t.Errorf("loaded %d policies, want 3", got)
	}
	if !strings.Contains(notes.String(), "skipping ConfigMap team-a/unrelated: it lacks the label policy.example.com/policy=true") {
		t.Errorf("notes do not explain the unlabelled ConfigMap: %q", notes.String())
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // verdict kind ns/name, then violation rules
	}{{
		name: "allowed pod in default namespace",
		input: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"ok"},
			"spec":{"containers":[{"name":"a","image":"registry.example.com/app:1"}]}}`,
		want: []string{"ALLOW Pod default/ok"},
	}, {
		name: "cluster-wide ConfigMap policy denies, namespaced one applies in its namespace, warn via namespaceSelector",
		input: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec:
  containers: [{name: a, image: nginx}]`,
		want: []string{"DENY Pod team-a/web", "pods.requiredLabels", "pods.allowedRegistries", "pods.requireDigest"},
	}, {
		name: "warn only",
		input: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec:
  containers: [{name: a, image: "registry.example.com/app@sha256:0123456789012345678901234567890123456789012345678901234567890123"}]`,
		want: []string{"WARN Pod team-a/web", "pods.requiredLabels"},
	}, {
		name: "quota counts MyApples admitted earlier in the input, and not the refused ones",
		input: `
apiVersion: stable.example.com/v1
kind: MyApple
metadata: {name: a}
spec: {color: red, size: small, quantity: 6}
---
apiVersion: stable.example.com/v1
kind: MyApple
metadata: {name: b}
spec: {color: red, size: small, quantity: 6}
---
apiVersion: stable.example.com/v1
kind: MyApple
metadata: {name: c}
spec: {color: red, size: small, quantity: 4}
---
apiVersion: stable.example.com/v1
kind: MyApple
metadata: {name: a}
spec: {color: red, size: small, quantity: 5}`,
		want: []string{"ALLOW MyApple default/a", "DENY MyApple default/b", "myApples.maxTotalQuantityPerNamespace",
			"ALLOW MyApple default/c", "ALLOW MyApple default/a"},
	}, {
		name: "AdmissionReview UPDATE does not count the old quantity twice",
		input: `
apiVersion: stable.example.com/v1
kind: MyApple
metadata: {name: a, namespace: team-b}
spec: {quantity: 8}
---
apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  uid: "1"
  kind: {group: stable.example.com, version: v1, kind: MyApple}
  resource: {group: stable.example.com, version: v1, resource: myapples}
  namespace: team-b
  name: a
  operation: UPDATE
  object: {apiVersion: stable.example.com/v1, kind: MyApple, metadata: {name: a, namespace: team-b}, spec: {quantity: 10}}
  oldObject: {apiVersion: stable.example.com/v1, kind: MyApple, metadata: {name: a, namespace: team-b}, spec: {quantity: 8}}`,
		want: []string{"ALLOW MyApple team-b/a", "ALLOW MyApple team-b/a"},
	}, {
		name: "AdmissionReview for a subresource the webhook does not judge is skipped",
		input: `
apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  uid: "3"
  kind: {group: "", version: v1, kind: Pod}
  resource: {group: "", version: v1, resource: pods}
  subResource: status
  namespace: team-b
  name: p
  operation: UPDATE
  object: {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: team-b}, spec: {containers: [{name: a, image: nginx}]}}`,
		want: nil,
	}, {
		name: "AdmissionReview for ephemeral containers",
		input: `
apiVersion: admission.k8s.io/v1
kind: AdmissionReview
request:
  uid: "2"
  kind: {group: "", version: v1, kind: Pod}
  resource: {group: "", version: v1, resource: pods}
  subResource: ephemeralcontainers
  namespace: team-b
  name: p
  operation: UPDATE
  object:
    apiVersion: v1
    kind: Pod
    metadata: {name: p, namespace: team-b}
    spec:
      containers: [{name: a, image: registry.example.com/app:1}]
      ephemeralContainers: [{name: debug, image: busybox}]
  oldObject:
    apiVersion: v1
    kind: Pod
    metadata: {name: p, namespace: team-b}
    spec:
      containers: [{name: a, image: registry.example.com/app:1}]`,
		want: []string{"DENY Pod team-b/p", "pods.allowedRegistries"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChecker(t, io.Discard)
			var got []string
			for _, r := range judgeAll(t, c, tt.input) {
				got = append(got, r.Verdict()+" "+r.Kind+" "+r.Namespace+"/"+r.Name)
				for _, v := range r.Violations {
					got = append(got, v.Rule)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestInvalidPolicyNamesFileDocumentAndField(t *testing.T) {
	input := "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n" +
		"apiVersion: policy.example.com/v1alpha1\nkind: AdmissionPolicy\nmetadata: {name: typo}\nspec:\n  myApples:\n    maxQuantity: lots\n"
	docs, err := ReadDocuments("p.yaml", strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(docs, Options{})
	want := "p.yaml: document 2: AdmissionPolicy typo is not a valid policy: spec.myApples.maxQuantity"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want prefix %q", err, want)
	}
}

func TestReadDocuments(t *testing.T) {
	tests := []struct {
		name, input string
		want        []string // Where + kind
		wantErr     string
	}{
		{"yaml stream with empty document", "kind: Pod\napiVersion: v1\n---\n# nothing\n---\nkind: Namespace\napiVersion: v1\n",
			[]string{"f: document 1 Pod", "f: document 3 Namespace"}, ""},
		{"json stream", `{"kind":"Pod","apiVersion":"v1"} {"kind":"Namespace","apiVersion":"v1"}`,
			[]string{"f: document 1 Pod", "f: document 2 Namespace"}, ""},
		{"list", "apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, apiVersion: v1}\n- {kind: Namespace, apiVersion: v1}\n",
			[]string{"f: document 1: items[0] Pod", "f: document 1: items[1] Namespace"}, ""},
		{"json array", `[{"kind":"Pod","apiVersion":"v1"}]`, []string{"f: document 1: items[0] Pod"}, ""},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", nil, "f: document 1: kind: required field is missing"},
		{"bad yaml", "kind: Pod\n  bad: [\n", nil, "f: document 1: invalid YAML"},
		{"bad json", `{"kind":`, nil, "f: document 1: invalid JSON"},
		{"scalar", "just a string\n", nil, "f: document 1: not a Kubernetes object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := ReadDocuments("f", strings.NewReader(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range docs {
				got = append(got, d.Where+" "+d.Kind)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriteJSONShape(t *testing.T) {
	c := newChecker(t, io.Discard)
	rs := judgeAll(t, c, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"team-a"},"spec":{"containers":[{"name":"a","image":"nginx"}]}}`)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rs); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results []struct {
			Kind, Namespace, Name string
			Allowed               bool
			Warnings              []string
			Violations            []map[string]string
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	r := got.Results[0]
	if r.Kind != "Pod" || r.Namespace != "team-a" || r.Name != "x" || r.Allowed || len(r.Warnings) != 1 || len(r.Violations) != 3 {
		t.Fatalf("unexpected result: %+v", r)
	}
	for _, v := range r.Violations {
		for _, k := range []string{"source", "rule", "enforcement", "field", "message"} {
			if v[k] == "" {
				t.Errorf("violation %v lacks %q", v, k)
			}
		}
	}
	if r.Violations[0]["enforcement"] != "Warn" || !strings.HasPrefix(r.Warnings[0], "AdmissionPolicy prod-labels pods.requiredLabels") {
		t.Errorf("warn violation not reported as both: %+v", r)
	}
}
