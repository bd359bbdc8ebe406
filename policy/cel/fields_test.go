package cel

import (
	"context"
	"reflect"
	"testing"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// TestFields checks what the analysis finds an expression reads: paths
// selected through are cut, anything used as a value is whole ("?" marks a
// path of which only the kind, or a list's length, is read; "[]" alone,
// every element whole, is the whole list).
func TestFields(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"true", ""},
		{"has(object.spec.hostNetwork)", "spec.hostNetwork"},
		{"!has(object.spec.hostNetwork) || !object.spec.hostNetwork", "spec.hostNetwork"},
		{"object.spec.containers.all(c, has(c.livenessProbe))", "spec.containers[].livenessProbe"},
		{"object.spec.containers.all(c, c.image.startsWith('r/') && c.name != '')", "spec.containers[].image spec.containers[].name"},
		{"object.metadata.?labels.?app.orValue('') != ''", "metadata.labels.app"},
		{"object.metadata.labels['app'] == 'web'", "metadata.labels.app"},
		{"'app' in object.metadata.labels", "metadata.labels"},
		{"object.metadata.labels.all(k, k != '')", "metadata.labels"},
		{"size(object.spec.containers) < 5", "spec.containers[]?"},
		{"object.spec.containers.size() < 5", "spec.containers[]?"},
		{"object.spec.containers[0].image != ''", "spec.containers[].image"},
		{"object.spec.containers[size(object.spec.containers) - 1].image != ''", "spec.containers[].image"},
		{"object.spec.containers.exists(c, c == object.spec.containers[0])", "spec.containers[]"},
		{"object.spec.containers.map(c, c.name).size() > 0", "spec.containers[].name"},
		{"object.spec.containers.filter(c, c.name == 'a').all(c, c.image != '')", "spec.containers[]"},
		{"object.spec.containers.all(i, c, i >= 0 && c.name != '')", "spec.containers[].name"},
		{"object.spec.containers.all(c, c.ports.all(p, p.containerPort > 0))", "spec.containers[].ports[].containerPort"},
		{"[object.spec.containers, []].all(l, size(l) < 5)", "spec.containers"},
		{"object == oldObject", "."},
		{"oldObject == null || oldObject.metadata.name == object.metadata.name", "."},
		{"size(has(object.spec.hostNetwork) ? object.spec.containers : oldObject.spec.containers) > 0", "spec.containers spec.hostNetwork"},
		{"object.metadata.name.matches('^web')", "metadata.name"},
		{"request.operation == 'CREATE' && namespaceObject.metadata.name != ''", ""},
		{"[1, 2].all(object, object > 0)", ""},
		{"object.spec.containers.all(object, has(object.image))", "spec.containers[].image"},
		{"dyn(object.spec).hostNetwork == true", "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			p := mustCompileAny(t, KindPod, validations(tt.expr))
			if got := p.Fields().String(); got != tt.want {
				t.Errorf("fields %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFieldsOfVariables checks a variable that is a path is followed where
// it is read, and that variables read as one value keep their paths whole.
func TestFieldsOfVariables(t *testing.T) {
	spec := &v1alpha1.PolicySpec{
		Variables: []v1alpha1.Variable{
			{Name: "containers", Expression: "object.spec.containers"},
			{Name: "meta", Expression: "object.metadata"},
			{Name: "team", Expression: "namespaceObject.metadata.?labels.?team.orValue('')"},
		},
		MatchConditions: []v1alpha1.MatchCondition{{Name: "m", Expression: "variables.meta.name != ''"}},
		Validations: []v1alpha1.Validation{
			{Expression: "variables.containers.all(c, has(c.readinessProbe))", MessageExpression: "'in ' + object.metadata.namespace"},
			{Expression: "variables.team != ''"},
		},
	}
	if got, want := mustCompileAny(t, KindPod, spec).Fields().String(), "metadata.name metadata.namespace spec.containers[].readinessProbe"; got != want {
		t.Errorf("fields %q, want %q", got, want)
	}
	spec.Validations = append(spec.Validations, v1alpha1.Validation{Expression: "dyn(variables) != null"})
	if got, want := mustCompileAny(t, KindPod, spec).Fields().String(), "metadata spec.containers"; got != want {
		t.Errorf("with variables read whole: fields %q, want %q", got, want)
	}
}

func TestUnion(t *testing.T) {
	a := mustCompile(t, KindPod, validations("has(object.spec.hostNetwork)"), nil).Fields()
	b := mustCompile(t, KindPod, validations("object.spec.containers.all(c, c.image != '')"), nil).Fields()
	w := mustCompile(t, KindPod, validations("object.spec == oldObject.spec"), nil).Fields()
	for _, tt := range []struct {
		f, g *Fields
		want string
	}{
		{a, b, "spec.containers[].image spec.hostNetwork"},
		{a, nil, "spec.hostNetwork"},
		{b, w, "spec"},
		{nil, nil, ""},
	} {
		if got := Union(tt.f, tt.g).String(); got != tt.want {
			t.Errorf("Union(%q, %q) = %q, want %q", tt.f, tt.g, got, tt.want)
		}
	}
	if a.String() != "spec.hostNetwork" || b.String() != "spec.containers[].image" {
		t.Errorf("Union changed its operands: %q, %q", a, b)
	}
}

// TestCutKeepsVerdicts is the promise Fields makes: every expression gives
// the same result on the objects cut to the program's fields as on the
// whole ones, messages included, on well-formed and malformed objects.
func TestCutKeepsVerdicts(t *testing.T) {
	exprs := []string{
		"has(object.spec.hostNetwork)",
		"object.spec.containers.all(c, has(c.readinessProbe))",
		"object.spec.containers.exists(c, c.image.endsWith(':latest'))",
		"object.metadata.?labels.?app.orValue('') == 'web'",
		"object.metadata.labels.team == 'payments'",
		"'team' in object.metadata.labels",
		"size(object.spec.containers) == 2",
		"object.spec.containers[1].name == 'app-1'",
		"object.spec.containers.all(c, c.ports.all(p, p.containerPort == 8080))",
		"object.spec.containers.map(c, c.name) == ['app-0', 'app-1']",
		"object.spec.containers.filter(c, has(c.readinessProbe)).all(c, c.name == 'app-0')",
		"object.spec.serviceAccountName == 'web'",
		"request.operation != 'UPDATE' || oldObject.spec.containers.size() <= object.spec.containers.size()",
		"object.spec.containers[0].resources.limits['cpu'] == '500m'",
		"object.metadata.ownerReferences.exists(o, o.kind == 'ReplicaSet')",
		"object.spec.?securityContext.?runAsNonRoot.orValue(false)",
		"object.spec.containers.all(i, c, i < 1 || !has(c.readinessProbe))",
		"object.spec.volumes.all(v, has(v.configMap))",
		"object.spec.containers[0].env[0].value == 'production'",
		"object.metadata.labels.all(k, k != 'x')",
		"object.metadata.annotations.exists(k, object.metadata.annotations[k] == 'web')",
		"object.spec.containers[0].resources.limits == {'cpu': '500m', 'memory': '256Mi'}",
		"object.spec.containers[0].securityContext in [object.spec.containers[1].securityContext]",
		"object.spec.containers.exists(c, c.volumeMounts.size() == 1)",
	}
	// Each expression alone (its own fields), and all in one policy.
	var programs []*Program
	all := &v1alpha1.PolicySpec{}
	for _, e := range exprs {
		v := v1alpha1.Validation{Expression: e, MessageExpression: "'object: ' + object.metadata.?name.orValue('none')"}
		all.Validations = append(all.Validations, v)
		programs = append(programs, mustCompileAny(t, KindPod, &v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{v}}))
	}
	programs = append(programs, mustCompileAny(t, KindPod, all))
	if f := programs[len(programs)-1].Fields(); f.Whole() {
		t.Fatalf("the policy reads the whole object: nothing is cut")
	} else {
		t.Logf("fields: %s", f)
	}

	malformed := func(edit func(m map[string]any)) map[string]any {
		m := podObject(t, 2)
		edit(m)
		return m
	}
	spec_ := func(m map[string]any) map[string]any { return m["spec"].(map[string]any) }
	objects := map[string]map[string]any{
		"pod":                  podObject(t, 2),
		"one container":        podObject(t, 1),
		"no containers":        malformed(func(m map[string]any) { delete(spec_(m), "containers") }),
		"containers an object": malformed(func(m map[string]any) { spec_(m)["containers"] = map[string]any{"name": "x"} }),
		"containers a string":  malformed(func(m map[string]any) { spec_(m)["containers"] = "x" }),
		"labels a list":        malformed(func(m map[string]any) { m["metadata"].(map[string]any)["labels"] = []any{"team"} }),
		"null spec":            malformed(func(m map[string]any) { m["spec"] = nil }),
		"container null":       malformed(func(m map[string]any) { spec_(m)["containers"].([]any)[1] = nil }),
	}
	for name, obj := range objects {
		for _, old := range []map[string]any{nil, podObject(t, 1)} {
			for i, p := range programs {
				in := &Input{Object: obj, OldObject: old}
				cut := &Input{Object: cutObject(p.Fields(), obj), OldObject: cutObject(p.Fields(), old)}
				if old != nil {
					in.Request.Operation, cut.Request.Operation = "UPDATE", "UPDATE"
				}
				want := p.Evaluate(context.Background(), in)
				got := p.Evaluate(context.Background(), cut)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("program %d (fields %s), %s (old %v): on the cut object\n%+v\nwant, as on the whole one,\n%+v", i, p.Fields(), name, old != nil, got, want)
				}
			}
		}
	}
}

func cutObject(f *Fields, obj map[string]any) map[string]any {
	if obj == nil {
		return nil
	}
	return f.Cut(obj).(map[string]any)
}

// mustCompileAny compiles whatever the estimated cost: the analysis is
// the same for expressions the limit refuses.
func mustCompileAny(tb testing.TB, kind string, spec *v1alpha1.PolicySpec) *Program {
	tb.Helper()
	c := *compiler(tb)
	c.estimatedCostLimit = ^uint64(0)
	p, errs := c.Compile(kind, spec, nil)
	if len(errs) > 0 {
		tb.Fatalf("compile: %v", errs.ToAggregate())
	}
	return p
}
