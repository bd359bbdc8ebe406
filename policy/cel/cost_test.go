package cel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// registries is the allowed-registries rule as VAP users write it (issue 22).
func registries() *v1alpha1.PolicySpec {
	return &v1alpha1.PolicySpec{
		Variables: []v1alpha1.Variable{
			{Name: "images", Expression: "object.spec.containers.map(c, c.image) + (has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.image) : [])"},
			{Name: "bad", Expression: "variables.images.filter(i, !params.allowed.exists(p, i.startsWith(p)))"},
		},
		Validations: []v1alpha1.Validation{{
			Name:              "registries",
			Expression:        "size(variables.bad) == 0",
			MessageExpression: "'denied: images not from an allowed registry: ' + variables.bad.join(', ')",
		}},
	}
}

var registriesParams = map[string]any{"allowed": []any{"registry.example.com/", "ghcr.io/acme/"}}

// items is a param list of n equal strings: nothing ends a loop over it early.
func items(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = "same"
	}
	return l
}

// TestCostAccepts holds what the in-tree VAP accepts for Pods and MyApples:
// whatever the object's lists could hold, the runtime limits bound it.
func TestCostAccepts(t *testing.T) {
	many := make([]any, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("registry-%d.example.com/", i)
	}
	tests := []struct {
		name   string
		kind   string
		spec   *v1alpha1.PolicySpec
		params any
	}{
		{"issue 22's registries rule", KindPod, registries(), registriesParams},
		{"Pod Security Standards, baseline host ports", KindPod, validations(
			"object.spec.containers.all(c, !has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))",
			"!has(object.spec.initContainers) || object.spec.initContainers.all(c, !has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))",
		), nil},
		{"Pod Security Standards, restricted capabilities", KindPod, validations(
			"object.spec.containers.all(c, has(c.securityContext) && has(c.securityContext.capabilities) && has(c.securityContext.capabilities.drop) && c.securityContext.capabilities.drop.exists(d, d == 'ALL'))",
			"object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.capabilities) || !has(c.securityContext.capabilities.add) || c.securityContext.capabilities.add.all(a, a == 'NET_BIND_SERVICE'))",
		), nil},
		{"a loop over the containers in a loop over them", KindPod, validations(nested), nil},
		{"environment variables of every container", KindPod, validations(
			"object.spec.containers.all(c, !has(c.env) || c.env.all(e, !e.name.startsWith('SECRET_') || has(e.valueFrom)))",
		), nil},
		{"a long allowlist in params, per container", KindPod, validations(
			"object.spec.containers.all(c, params.allowed.exists(p, c.image.startsWith(p)))",
		), map[string]any{"allowed": many}},
		{"params read once each", KindPod, validations(
			"params.allowed.exists(p, object.metadata.name.startsWith(p)) || true",
			"size(params.allowed) > 0",
		), map[string]any{"allowed": many}},
		{"MyApple against params and cluster state", KindMyApple, validations(
			"object.spec.color in params.colors",
			"cluster.myApples(object.metadata.namespace).all(a, a.name == object.metadata.name || a.color != object.spec.color)",
			"cluster.myApples(object.metadata.namespace).map(a, a.quantity).sum() + object.spec.quantity <= params.max",
		), map[string]any{"colors": []any{"red", "green"}, "max": int64(500)}},
		{"a loop over params under the limit", KindPod, validations(
			"params.l.all(x, params.l.all(y, x == y))",
		), map[string]any{"l": items(30)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCompile(t, tt.kind, tt.spec, tt.params)
		})
	}
}

// TestCostRefuses holds that an expression certain to exceed its limit with
// the params it has, whatever the object, is refused, naming its estimate.
func TestCostRefuses(t *testing.T) {
	square := "params.l.all(x, params.l.all(y, x == y))"
	tests := []struct {
		name       string
		spec       *v1alpha1.PolicySpec
		params     any
		namespaced bool
		want       string
	}{
		{"issue 22's loop over 300 params in a loop over them, in a namespace's policy",
			validations(square), map[string]any{"l": items(300)}, true,
			"validations[0].expression: estimated cost 541502, with these params and whatever the object, exceeds the limit of 100000 per expression of a namespace's own policy"},
		{"the same over 1,000 params, cluster-wide",
			validations(square), map[string]any{"l": items(1000)}, false,
			"exceeds the limit of 1000000 per expression of a cluster-wide policy"},
		{"through a variable naming the params",
			&v1alpha1.PolicySpec{
				Variables:   []v1alpha1.Variable{{Name: "l", Expression: "params.l"}},
				Validations: []v1alpha1.Validation{{Expression: "variables.l.all(x, variables.l.all(y, x == y))"}},
			}, map[string]any{"l": items(300)}, true,
			"validations[0].expression: estimated cost 5418"},
		{"in a variable",
			&v1alpha1.PolicySpec{
				Variables:   []v1alpha1.Variable{{Name: "same", Expression: square}},
				Validations: []v1alpha1.Validation{{Expression: "variables.same == true"}},
			}, map[string]any{"l": items(300)}, true,
			"variables[0].expression: estimated cost 541502"},
		{"in a message",
			&v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{{
				Expression: "false", MessageExpression: "params.l.map(x, params.l.filter(y, x == y).join(',')).join(';')",
			}}}, map[string]any{"l": items(300)}, true,
			"validations[0].messageExpression: estimated cost"},
		{"whatever the object: a loop over the params beside one over the object",
			validations("object.spec.containers.all(c, c.name != '') && " + square), map[string]any{"l": items(300)}, true,
			"estimated cost 5415"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := compiler(t).Compile(KindPod, tt.spec, tt.params, Namespaced(tt.namespaced))
			if p != nil || len(errs) != 1 {
				t.Fatalf("got %v, want one error", errs)
			}
			if got := formatErrors(errs); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCostEstimate holds that the estimate with params is the cost
// evaluation finds, when nothing depends on the object.
func TestCostEstimate(t *testing.T) {
	c := limitedCompiler(t, Limits{ExpressionCost: 10_000_000, NamespaceExpressionCost: 10_000_000})
	p, errs := c.Compile(KindPod, validations("params.l.all(x, params.l.all(y, x == y))"), map[string]any{"l": items(300)})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := costOf(t, p, &Input{Object: podObject(t, 1)})
	// The estimate, 541502, counts the loops as running to the end; the
	// evaluation also counts reading params.l each time.
	if got < 541502 || got > 541502*11/10 {
		t.Errorf("evaluation costs %d, want about the estimate, 541502", got)
	}
}

func TestRegistriesRule(t *testing.T) {
	p := mustCompile(t, KindPod, registries(), registriesParams)
	for _, tt := range []struct {
		images []string
		want   string
	}{
		{[]string{"registry.example.com/shop/web:1.0", "ghcr.io/acme/sidecar:2"}, ""},
		{[]string{"registry.example.com/shop/web:1.0", "docker.io/library/envoy:v1.31.0"}, "denied: images not from an allowed registry: docker.io/library/envoy:v1.31.0"},
	} {
		obj := podObject(t, len(tt.images))
		for i, c := range obj["spec"].(map[string]any)["containers"].([]any) {
			c.(map[string]any)["image"] = tt.images[i]
		}
		res := p.evaluate(&Input{Object: obj})
		var got string
		if len(res.Violations) > 0 {
			got = res.Violations[0].Message
		}
		if got != tt.want || len(res.Violations) > 1 || res.Exhausted != "" {
			t.Errorf("%v: got %+v, want %q", tt.images, res, tt.want)
		}
	}
}
