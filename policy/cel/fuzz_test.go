package cel

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// FuzzCompile feeds the CEL part of a policy arbitrary expressions: Compile
// returns a program or field errors under the field the text came from,
// never panics; a program evaluates to a result with bounded messages on a
// Pod and on a MyApple, never panics, and to the same result on the object
// cut to the program's Fields.
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
			res := p.Evaluate(context.Background(), &Input{Object: obj, Cluster: cluster})
			cut := p.Evaluate(context.Background(), &Input{Object: p.Fields().Cut(obj).(map[string]any), Cluster: cluster})
			if !reflect.DeepEqual(cut, res) && !timedOut(res) && !timedOut(cut) {
				t.Fatalf("%s: on the object cut to %q:\n%+v\nwant, as on the whole object,\n%+v", kind, p.Fields(), cut, res)
			}
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

// timedOut says whether an evaluation ran out of time, which a loaded
// machine decides, not the object.
func timedOut(r Result) bool {
	for _, v := range r.Violations {
		if strings.Contains(v.Message, "timed out after") {
			return true
		}
	}
	return false
}

// FuzzCutKeepsVerdicts: for any expression that compiles and any JSON
// object, evaluating on the object cut to the program's Fields gives what
// evaluating on the whole object gives, messages included.
//
//	go test ./policy/cel -run '^$' -fuzz FuzzCutKeepsVerdicts -fuzztime 60s
func FuzzCutKeepsVerdicts(f *testing.F) {
	pod, err := json.Marshal(testPod(2))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct{ expr, obj string }{
		{"object.spec.containers.all(c, has(c.readinessProbe))", string(pod)},
		{"object.metadata.?labels.?app.orValue('') == 'web' && !has(object.spec.hostNetwork)", string(pod)},
		{"size(object.spec.containers) == 2 && object.spec.containers[1].name == 'app-1'", `{"spec":{"containers":{"name":"x"}}}`},
		{"'team' in object.metadata.labels", `{"metadata":{"labels":["team"]}}`},
		{"object.spec.containers.exists(c, c.ports.size() == 1)", `{"spec":{"containers":[null,1,{"ports":[{}]}]}}`},
		{"object.spec.containers[0].resources.limits == {'cpu': '1'}", `{"spec":{"containers":[{"resources":{"limits":{"cpu":"1"}}}]}}`},
		{"object.spec.quantity <= 10 && object.spec.color.startsWith('r')", `{"spec":{"quantity":3,"color":"red","size":"small"}}`},
	} {
		f.Add(seed.expr, []byte(seed.obj))
	}
	c := compiler(f)
	f.Fuzz(func(t *testing.T, expr string, raw []byte) {
		var obj map[string]any
		if err := utiljson.Unmarshal(raw, &obj); err != nil || obj == nil {
			return
		}
		for _, kind := range []string{KindPod, KindMyApple} {
			p, errs := c.Compile(kind, &v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{{Expression: expr, MessageExpression: "'on ' + object.metadata.?name.orValue('?')"}}}, nil)
			if len(errs) > 0 {
				continue
			}
			whole := p.Evaluate(context.Background(), &Input{Object: obj})
			cut := p.Evaluate(context.Background(), &Input{Object: p.Fields().Cut(obj).(map[string]any)})
			if !reflect.DeepEqual(cut, whole) && !timedOut(whole) && !timedOut(cut) {
				t.Fatalf("%s %q on %s cut to %q:\n%+v\nwant, as on the whole object,\n%+v", kind, expr, raw, p.Fields(), cut, whole)
			}
		}
	})
}
