package cel

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// FuzzCompile feeds the CEL part of a policy arbitrary expressions: Compile
// returns a program or field errors under the field the text came from,
// never panics; a program evaluates to a result with bounded messages on a
// Pod and on a MyApple, never panics.
//
//	go test ./policy/cel -run '^$' -fuzz FuzzCompile -fuzztime 60s
func FuzzCompile(f *testing.F) {
	for _, seed := range []struct{ variable, condition, validation, message string }{
		{"namespaceObject.metadata.?labels.?team.orValue('')", "!has(object.metadata.ownerReferences)", "object.spec.containers.all(c, has(c.readinessProbe))", "'label team must be ' + variables.v"},
		{"object.spec", "true", "size(variables.v.containers) > 0", "string(size(variables.v.containers))"},
		{"cluster.myApples(object.metadata.namespace)", "request.operation == 'CREATE'", "variables.v.all(a, a.quantity > 0)", "'x'"},
		{"1", "oldObject == null", "object.spec.containrs == null", "1"},
		{"params.max", "object.metadata.name.matches('^web')", "object.spec.quantity <= variables.v", "object.spec.color"},
		{"[1, 2, 3].map(x, x * 2)", "", "object.spec.containers.all(c, object.spec.containers.exists(d, d.name == c.name))", ""},
		{"'a'.split(',')", "quantity('1') == quantity('1000m')", "ip('10.0.0.1').family() == 4", "format.dns1123Label().validate('a').hasValue() ? 'a' : 'b'"},
		{"{'a': 1}", "(", "object.spec.containers[0].image.startsWith(", "'\\u00e9'"},
		{"object.spec.containers", "size(variables.v) > 0", "variables.v.exists(c, c.ports.exists(p, p.containerPort == 8080))", "variables.v[0].name"},
		{"object.metadata.labels", "'app' in variables.v", "object.spec.containers[0].resources.limits == {'cpu': '500m'}", "object.metadata.?annotations.orValue({}).size() > 0 ? 'a' : 'b'"},
		{"object.spec.containers + object.spec.?initContainers.orValue([])", "object.spec.?securityContext.?seLinuxOptions.orValue({}).?type.orValue('') == ''", "variables.v.all(c, c.?securityContext.?privileged.orValue(false) == false)", "variables.v.map(c, c.image).join(', ')"},
		{"object.spec.?containers.orValue([])", "has(object.metadata.labels.app)", "object.spec.containers.all(i, c, i == 0 || c.image == object.spec.containers[0].image)", "object.spec.containers.map(c, c.name).join(',')"},
	} {
		f.Add(seed.variable, seed.condition, seed.validation, seed.message)
	}
	c := compiler(f)
	pod := podObject(f, 2)
	apple := appleObject("a", "red", "small", 3)
	cluster := &fakeCluster{apples: map[string][]Apple{"orchard": {{Name: "a", Color: "red", Size: "small", Quantity: 1}}}}
	f.Fuzz(func(t *testing.T, variable, condition, validation, message string) {
		spec := &v1alpha1.PolicySpec{
			Variables:   []v1alpha1.Variable{{Name: "v", Expression: variable}},
			Validations: []v1alpha1.Validation{{Name: "fuzz", Expression: validation, MessageExpression: message}},
		}
		if condition != "" {
			spec.MatchConditions = []v1alpha1.MatchCondition{{Name: "m", Expression: condition}}
		}
		for kind, obj := range map[string]map[string]any{KindPod: pod, KindMyApple: apple} {
			p, errs := c.Compile(kind, spec, map[string]any{"max": int64(3)})
			if len(errs) > 0 {
				if p != nil {
					t.Fatalf("%s: both a program and errors: %v", kind, errs)
				}
				for _, e := range errs {
					if !strings.HasPrefix(e.Field, "variables[0].") && !strings.HasPrefix(e.Field, "matchConditions[0].") && !strings.HasPrefix(e.Field, "validations[0].") {
						t.Fatalf("%s: error under no expression's field: %v", kind, e)
					}
				}
				continue
			}
			if p == nil {
				t.Fatalf("%s: neither a program nor errors", kind)
			}
			res := p.evaluate(&Input{Object: obj, Cluster: cluster})
			for _, v := range res.Violations {
				if len(v.Message) > MaxMessageLength || !utf8.ValidString(v.Message) && utf8.ValidString(validation+message) {
					t.Fatalf("%s: message of %d bytes or broken UTF-8: %q", kind, len(v.Message), v.Message)
				}
				if v.Rule != "validations.fuzz" && v.Rule != "matchConditions.m" {
					t.Fatalf("%s: violation of rule %q", kind, v.Rule)
				}
			}
		}
	})
}
