package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restfake "k8s.io/client-go/rest/fake"

	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// quotaByColorYAML is the quota-by-colour example of README.md and
// docs/cel.md.
const quotaByColorYAML = `match: {kinds: [MyApple]}
params: {maxPerColor: 2}
validations:
- name: maxPerColor
  expression: >-
    cluster.myAppleStats(object.metadata.namespace, object.metadata.name)
      .byColor[object.spec.color].count < params.maxPerColor
  message: "at most 2 MyApples of one color per namespace"
  fieldPath: spec.color
`

// appleListClient serves the MyApples of one namespace, in one page, and
// no Pods.
func appleListClient(t *testing.T, ns string, n int) rest.Interface {
	t.Helper()
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{
			"apiVersion": "stable.example.com/v1", "kind": "MyApple",
			"metadata": map[string]any{"name": fmt.Sprintf("apple-%05d", i), "namespace": ns, "uid": fmt.Sprintf("uid-%d", i)},
			"spec":     map[string]any{"color": []string{"red", "green", "blue", "yellow"}[i%4], "size": "small", "quantity": 1},
		}
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "stable.example.com/v1", "kind": "MyAppleList", "metadata": map[string]any{}, "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client: restfake.CreateHTTPClient(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path != "/apis/stable.example.com/v1/namespaces/"+ns+"/myapples" {
				return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(body))}, nil
		}),
	}
}

// The impact warning of the quota-by-colour example over a namespace of
// 10,000 MyApples checks every one within the real budget: each reads
// tallies the cache keeps, not the namespace.
func TestImpactCountsEveryMyAppleOfABusyNamespace(t *testing.T) {
	const ns, n = "orchard", 10_000
	cluster := check.NewCluster()
	cluster.SetNamespace(ns, nil, nil)
	for i := range n {
		cluster.SetMyApple(ns, cel.Apple{Name: fmt.Sprintf("apple-%05d", i), Color: []string{"red", "green", "blue", "yellow"}[i%4], Size: "small", Quantity: 1})
	}
	im := &Impact{lister: &audit.Lister{Client: appleListClient(t, ns, n)}, cluster: cluster, budget: impactBudget}
	p := compileSet(t, testPolicyNamespace, testPolicy{ns, "colors", quotaByColorYAML}).Policies()[0]
	begun := time.Now()
	got := im.warnings(context.Background(), p)
	t.Logf("%d MyApples checked in %s", n, time.Since(begun).Round(time.Millisecond))
	want := fmt.Sprintf("this policy would deny %d MyApples among existing objects: MyApple %s/apple-00000 (validations.maxPerColor)", n, ns)
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Fatalf("warnings %q, want one starting %q", got, want)
	}
}
