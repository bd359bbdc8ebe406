package cel

import (
	"fmt"
	"testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// tenExpressions is a policy of 10 expressions: 2 variables, a
// matchCondition, 6 validations and a messageExpression.
func tenExpressions() *v1alpha1.PolicySpec {
	return &v1alpha1.PolicySpec{
		Variables: []v1alpha1.Variable{
			{Name: "team", Expression: "namespaceObject.metadata.?labels.?team.orValue('')"},
			{Name: "containers", Expression: "object.spec.containers"},
		},
		MatchConditions: []v1alpha1.MatchCondition{
			{Name: "not-a-job", Expression: "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(o, o.kind == 'Job')"},
		},
		Validations: []v1alpha1.Validation{
			{Name: "probes", Expression: "object.spec.containers.all(c, has(c.readinessProbe))", Message: "every container needs a readinessProbe"},
			{Name: "team-label", Expression: "object.metadata.?labels.?team.orValue('') == variables.team", MessageExpression: "'label team must be ' + variables.team"},
			{Expression: "object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"},
			{Expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"},
			{Expression: "size(object.spec.containers) <= params.maxContainers"},
			{Expression: "request.operation != 'UPDATE' || oldObject.metadata.name == object.metadata.name"},
		},
	}
}

var benchParams = map[string]any{"maxContainers": int64(5)}

func BenchmarkCompile10Expressions(b *testing.B) {
	c := compiler(b)
	spec := tenExpressions()
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := c.Compile(KindPod, spec, benchParams); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

func BenchmarkNewCompiler(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCompiler(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEvaluate(b *testing.B, spec *v1alpha1.PolicySpec, in *Input, wantViolations int) {
	p := mustCompile(b, KindPod, spec, benchParams)
	if res := p.evaluate(in); len(res.Violations) != wantViolations {
		b.Fatalf("got %+v, want %d violations", res, wantViolations)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.evaluate(in)
	}
}

// BenchmarkEvaluateHas is one simple validation on a decoded Pod.
func BenchmarkEvaluateHas(b *testing.B) {
	benchEvaluate(b, validations("has(object.spec.securityContext)"), &Input{Object: podObject(b, 2)}, 0)
}

// BenchmarkEvaluate5 is five validations on a decoded Pod.
func BenchmarkEvaluate5(b *testing.B) {
	spec := tenExpressions()
	spec.Variables, spec.MatchConditions = spec.Variables[:1], nil
	spec.Validations = spec.Validations[:5]
	in := podInput(b)
	benchEvaluate(b, spec, in, 1) // the second container has no readinessProbe
}

// BenchmarkEvaluateLoop is a loop over containers, per container.
func BenchmarkEvaluateLoop(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			benchEvaluate(b, validations("object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"), &Input{Object: podObject(b, n)}, 0)
		})
	}
}
