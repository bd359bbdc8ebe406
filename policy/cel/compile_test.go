package cel

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

func TestCompileErrors(t *testing.T) {
	ignore := v1alpha1.Ignore
	bogus := v1alpha1.FailurePolicy("Sometimes")
	tests := []struct {
		name   string
		kind   string
		spec   *v1alpha1.PolicySpec
		params any
		// want is every error, as "field: detail substring".
		want []string
	}{
		{
			name: "syntax error",
			kind: KindPod,
			spec: validations("object.spec.containers.all(c, "),
			want: []string{"validations[0].expression: Syntax error: mismatched input '<EOF>'"},
		},
		{
			name: "unknown variable",
			kind: KindPod,
			spec: validations("objet.metadata.name == 'x'"),
			want: []string{"validations[0].expression: undeclared reference to 'objet' (in container '') (1:1)"},
		},
		{
			name: "unknown field on a Pod",
			kind: KindPod,
			spec: validations("size(object.spec.containers) > 0", "object.spec.containrs.all(c, has(c.readinessProbe))"),
			want: []string{"validations[1].expression: undefined field 'containrs' (1:12)"},
		},
		{
			name: "unknown field deep in a Pod",
			kind: KindPod,
			spec: validations("object.spec.containers.all(c, has(c.readinessProbe.httpGet.pth))"),
			want: []string{"validations[0].expression: undefined field 'pth'"},
		},
		{
			name: "unknown field on a MyApple",
			kind: KindMyApple,
			spec: validations("object.spec.colour == 'red'"),
			want: []string{"validations[0].expression: undefined field 'colour' (1:12)"},
		},
		{
			name: "a Pod field on a MyApple",
			kind: KindMyApple,
			spec: validations("size(object.spec.containers) > 0"),
			want: []string{"validations[0].expression: undefined field 'containers'"},
		},
		{
			name: "request field this webhook does not fill",
			kind: KindPod,
			spec: validations("request.requestKind.kind == 'Pod'"),
			want: []string{"validations[0].expression: undefined field 'requestKind'"},
		},
		{
			name: "validation not a bool",
			kind: KindPod,
			spec: validations("object.metadata.name"),
			want: []string{"validations[0].expression: must evaluate to bool, not string"},
		},
		{
			name: "messageExpression not a string",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{{
				Expression: "true", MessageExpression: "size(object.spec.containers)",
			}}},
			want: []string{"validations[0].messageExpression: must evaluate to string, not int"},
		},
		{
			name: "matchCondition not a bool",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{
				MatchConditions: []v1alpha1.MatchCondition{{Name: "m", Expression: "object.metadata.labels"}},
				Validations:     []v1alpha1.Validation{{Expression: "true"}},
			},
			want: []string{"matchConditions[0].expression: must evaluate to bool, not map(string, string)"},
		},
		{
			name: "variable used before it is defined",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{
				Variables: []v1alpha1.Variable{
					{Name: "a", Expression: "variables.b + 1"},
					{Name: "b", Expression: "1"},
				},
				Validations: []v1alpha1.Validation{{Expression: "variables.a > 0"}},
			},
			want: []string{"variables[0].expression: undefined field 'b'"},
		},
		{
			name: "variables keep their schema type",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{
				Variables:   []v1alpha1.Variable{{Name: "spec", Expression: "object.spec"}},
				Validations: []v1alpha1.Validation{{Expression: "size(variables.spec.containrs) > 0"}},
			},
			want: []string{"validations[0].expression: undefined field 'containrs'"},
		},
		{
			name: "bad and duplicate names",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{
				Variables: []v1alpha1.Variable{
					{Name: "team-label", Expression: "1"},
					{Name: "x", Expression: "1"},
					{Name: "x", Expression: "2"},
				},
				MatchConditions: []v1alpha1.MatchCondition{{Name: "", Expression: "true"}},
				Validations: []v1alpha1.Validation{
					{Name: "v", Expression: "true"},
					{Name: "v", Expression: "true", Message: "two\nlines"},
				},
			},
			want: []string{
				"variables[0].name: must be a CEL identifier",
				"variables[2].name: Duplicate value",
				"matchConditions[0].name: Required value",
				"validations[1].name: Duplicate value",
				"validations[1].message: must be one line",
			},
		},
		{
			name: "empty and too long expressions",
			kind: KindPod,
			spec: validations(" ", "true && "+strings.Repeat("true && ", MaxExpressionLength/8)+"true"),
			want: []string{"validations[0].expression: Required value", "validations[1].expression: Too long"},
		},
		{
			name: "failurePolicy",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{FailurePolicy: &bogus, Validations: []v1alpha1.Validation{{Expression: "true"}}},
			want: []string{`failurePolicy: Unsupported value: "Sometimes"`},
		},
		{
			name: "too many validations",
			kind: KindPod,
			spec: validations(make([]string, MaxEntries+1)...),
			want: []string{"validations: Too many: 65: must have at most 64 items"},
		},
		{
			name: "unknown kind",
			kind: "Deployment",
			spec: validations("true"),
			want: []string{`match.kinds: Unsupported value: "Deployment"`},
		},
		{
			name:   "params that are no CEL value",
			kind:   KindPod,
			spec:   validations("true"),
			params: map[string]any{"c": make(chan int)},
			want:   []string{"params: c: a chan int is not a JSON value"},
		},
		{
			name: "every problem at once",
			kind: KindPod,
			spec: &v1alpha1.PolicySpec{
				FailurePolicy: &ignore,
				Validations: []v1alpha1.Validation{
					{Expression: "object.spec.containrs == null"},
					{Expression: "1 + 1"},
				},
			},
			want: []string{"validations[0].expression: undefined field 'containrs'", "validations[1].expression: must evaluate to bool, not int"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := compiler(t).Compile(tt.kind, tt.spec, tt.params)
			if p != nil {
				t.Errorf("got a program, want errors")
			}
			if len(errs) != len(tt.want) {
				t.Errorf("got %d errors, want %d: %v", len(errs), len(tt.want), errs.ToAggregate())
			}
			got := formatErrors(errs)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors %q do not contain %q", got, w)
				}
			}
		})
	}
}

// formatErrors gives errors as a policy reader would show them: the field
// path, then the detail without the repeated value.
func formatErrors(errs field.ErrorList) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Field + ": ")
		switch e.Type {
		case field.ErrorTypeInvalid, field.ErrorTypeForbidden:
			b.WriteString(e.Detail)
		default:
			b.WriteString(e.ErrorBody())
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestCompileAccepts(t *testing.T) {
	tests := []struct {
		name string
		kind string
		spec *v1alpha1.PolicySpec
	}{
		{"the issue's Pod policy", KindPod, &v1alpha1.PolicySpec{
			Params: nil,
			Variables: []v1alpha1.Variable{
				{Name: "team", Expression: "namespaceObject.metadata.?labels.?team.orValue('')"},
			},
			MatchConditions: []v1alpha1.MatchCondition{
				{Name: "not-a-job", Expression: "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(o, o.kind == 'Job')"},
			},
			Validations: []v1alpha1.Validation{
				{Name: "probes", Expression: "object.spec.containers.all(c, has(c.readinessProbe))", Message: "every container needs a readinessProbe", FieldPath: "spec.containers"},
				{Name: "team-label", Expression: "object.metadata.?labels.?team.orValue('') == variables.team", MessageExpression: "'label team must be ' + variables.team"},
			},
		}},
		{"Kubernetes libraries", KindPod, validations(
			"object.metadata.name.matches('^web-')",
			"isURL('https://example.com') && url('https://example.com').getHost() == 'example.com'",
			"quantity('500m').isLessThan(quantity('1'))",
			"isIP('10.0.0.1') && cidr('10.0.0.0/8').containsIP(ip('10.0.0.1'))",
			"!format.dns1123Label().validate('web').hasValue()",
			"semver('1.2.3').isLessThan(semver('1.10.0'))",
			"[1, 2, 3].isSorted() && sets.contains([1, 2, 3], [1])",
			"'a,b'.split(',').size() == 2",
		)},
		{"request and oldObject", KindPod, validations(
			"request.operation != 'UPDATE' || oldObject.metadata.name == object.metadata.name",
			"request.userInfo.username != '' || request.dryRun || request.kind.kind == 'Pod' || request.resource.resource == 'pods' || request.subResource == '' || request.name == '' || request.namespace == ''",
		)},
		{"MyApple with cluster state", KindMyApple, validations(
			"object.spec.quantity <= 10 && object.spec.size in ['small', 'medium', 'large']",
			"cluster.myApples(object.metadata.namespace).filter(a, a.color == 'red').map(a, a.quantity).sum() + object.spec.quantity <= 100",
			"object.metadata.?labels.?team.orValue('') != ''",
		)},
		{"variables iterated as the paths they name", KindPod, &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{
				{Name: "containers", Expression: "object.spec.containers"},
				{Name: "spec", Expression: "object.spec"},
				{Name: "apples", Expression: "cluster.myApples(object.metadata.namespace)"},
			},
			Validations: []v1alpha1.Validation{
				{Expression: "variables.containers.all(c, has(c.readinessProbe))"},
				{Expression: "variables.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"},
				{Expression: "variables.apples.all(a, a.quantity < 100)"},
			},
		}},
		{"labels read in a loop or a message, with and without ?", KindPod, &v1alpha1.PolicySpec{
			Validations: []v1alpha1.Validation{
				{
					Expression:        "cluster.myApples(object.metadata.namespace).exists(a, a.color == object.metadata.?labels.?color.orValue(''))",
					MessageExpression: "'no MyApple in ' + namespaceObject.metadata.name + ' is ' + object.metadata.?labels.?color.orValue('colorless')",
				},
				{
					Expression:        "object.metadata.labels.app != ''",
					MessageExpression: "'app ' + object.metadata.labels.app + ' ' + namespaceObject.metadata.?annotations[?'team'].orValue('') + object.metadata.?labels.?team.value()",
				},
			},
		}},
		{"params of any shape", KindPod, validations(
			"size(object.spec.containers) <= params.maxContainers",
			"object.metadata.namespace in params.namespaces",
		)},
	}
	params := map[string]any{"maxContainers": int64(5), "namespaces": []any{"shop"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.kind, tt.spec, params)
			if p.Kind() != tt.kind {
				t.Errorf("Kind() = %q", p.Kind())
			}
		})
	}
}

func TestCompileWithoutValidations(t *testing.T) {
	spec := &v1alpha1.PolicySpec{Variables: []v1alpha1.Variable{{Name: "a", Expression: "1"}}}
	p, errs := compiler(t).Compile(KindPod, spec, nil)
	if p != nil || errs != nil {
		t.Fatalf("got %v, %v; want no program and no error", p, errs)
	}
	if !HasCEL(spec) || HasCEL(&v1alpha1.PolicySpec{}) {
		t.Error("HasCEL is wrong")
	}
}
