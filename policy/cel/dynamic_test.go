package cel

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// allContainers is how VAP policies (Kyverno's CEL library, the Pod
// Security Standards as CEL) gather a Pod's containers: two list types of
// the schema added, which type-checks only with object dyn.
const allContainers = "object.spec.containers + object.spec.?initContainers.orValue([]) + object.spec.?ephemeralContainers.orValue([])"

// vapPod is testPod(2) with an init container, SELinux options on the Pod
// and on its first container, and images by tag.
func vapPod(t *testing.T) map[string]any {
	pod := testPod(2)
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "docker.io/library/busybox:1.36"}}
	pod.Spec.Containers[0].Image = "registry.example.com/shop/web:v1"
	pod.Spec.Containers[1].Image = "docker.io/library/envoy:v1.31.0"
	pod.Spec.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_t"}
	pod.Spec.Containers[0].SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"}
	return unstructured(t, pod)
}

// TestCompileVAPIdioms: what VAP accepts because it types object dyn is
// accepted, and judges as VAP judges it: on plain JSON values.
func TestCompileVAPIdioms(t *testing.T) {
	params := map[string]any{"allowed": []any{"registry.example.com/", "ghcr.io/acme/"}}
	tests := []struct {
		name string
		spec *v1alpha1.PolicySpec
		// want is the violations' messages on vapPod, in order.
		want []string
	}{
		{"every container, init and ephemeral ones too", &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{{Name: "containers", Expression: allContainers}},
			Validations: []v1alpha1.Validation{
				{Expression: "variables.containers.all(c, c.image.startsWith('registry.example.com/'))", MessageExpression: "'images: ' + variables.containers.map(c, c.image).join(', ')"},
				{Expression: "size(variables.containers) == 3", Message: "not 3"},
				{Expression: "(object.spec.containers + object.spec.?initContainers.orValue([])).exists(c, c.name == 'init')", Message: "no init"},
			},
		}, []string{"images: registry.example.com/shop/web:v1, docker.io/library/envoy:v1.31.0, docker.io/library/busybox:1.36"}},
		{"orValue({}) on a field of the schema", &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{{
				Name:       "types",
				Expression: "([object.spec.?securityContext.?seLinuxOptions.orValue({})] + (object.spec.containers + object.spec.?initContainers.orValue([])).map(c, c.?securityContext.?seLinuxOptions.orValue({}))).map(o, o.?type.orValue(''))",
			}},
			Validations: []v1alpha1.Validation{{
				Expression:        "variables.types.all(t, t in ['', 'container_t', 'container_init_t', 'container_kvm_t'])",
				MessageExpression: "'seLinuxOptions.type: ' + variables.types.join(',')",
			}},
		}, []string{"seLinuxOptions.type: container_t,spc_t,,"}},
		{"a conditional of an object and a map", validations(
			"(has(object.spec.securityContext) ? object.spec.securityContext : {}).?runAsNonRoot.orValue(false) == false",
		), []string{"failed expression: (has(object.spec.securityContext) ? object.spec.securityContext : {}).?runAsNonRoot.orValue(false) == false"}},
		{"variables from paths of a dyn object are dyn", &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{
				{Name: "c", Expression: "object.spec.containers"},
				{Name: "i", Expression: "object.spec.?initContainers.orValue([])"},
			},
			Validations: []v1alpha1.Validation{{Expression: "(variables.c + variables.i).all(c, c.name != 'init')", Message: "init"}},
		}, []string{"init"}},
		{"an unknown field under the idiom is VAP's runtime error", validations(
			"(object.spec.containers + object.spec.?initContainers.orValue([])).all(c, c.imag != '')",
		), []string{"expression '(object.spec.containers + object.spec.?initContainers.orValue([])).all(c, c.imag != '')' resulted in error: no such key: imag"}},
		{"oldObject too", validations(
			"oldObject == null || (oldObject.spec.containers + oldObject.spec.?initContainers.orValue([])).size() > 0",
		), nil},
		{"the issue's registries rule, written with ?", &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{
				{Name: "images", Expression: "(object.spec.containers + object.spec.?initContainers.orValue([])).map(c, c.image)"},
				{Name: "bad", Expression: "variables.images.filter(i, !params.allowed.exists(p, i.startsWith(p)))"},
			},
			Validations: []v1alpha1.Validation{{
				Name:              "registries",
				Expression:        "size(variables.bad) == 0",
				MessageExpression: "'denied: images not from an allowed registry: ' + variables.bad.join(', ')",
			}},
		}, []string{"denied: images not from an allowed registry: docker.io/library/envoy:v1.31.0, docker.io/library/busybox:1.36"}},
	}
	obj := vapPod(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ns := range []bool{false, true} {
				p, errs := compiler(t).Compile(KindPod, tt.spec, params, Namespaced(ns))
				if len(errs) > 0 {
					t.Fatalf("namespaced %v: %v", ns, errs.ToAggregate())
				}
				if !p.dynamic {
					t.Fatal("typed by the schema; want dyn (does the test still need it?)")
				}
				res := p.evaluate(&Input{Object: obj})
				var got []string
				for _, v := range res.Violations {
					got = append(got, v.Message)
				}
				if !res.Judged || res.Exhausted != "" || strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("namespaced %v: got %+v, want violations %q", ns, res, tt.want)
				}
			}
		})
	}
}

// TestCompileVAPIdiomsRefused: the dyn compilation is no way around the
// schema's check of real mistakes; what fails dyn as well gives the dyn
// compilation's errors.
func TestCompileVAPIdiomsRefused(t *testing.T) {
	tests := []struct {
		name string
		spec *v1alpha1.PolicySpec
		want []string
	}{
		{"an unknown field beside a mismatch of object types", validations(
			"(object.spec.containers + object.spec.?initContainers.orValue([])).all(c, c.image != '')",
			"object.spec.containrs.all(c, c.image != '')",
		), []string{
			"validations[0].expression: found no matching overload for '_+_'",
			"validations[1].expression: undefined field 'containrs'",
		}},
		{"an unknown field in the same expression", validations(
			"(object.spec.containers + object.spec.?initContainerz.orValue([])).all(c, c.image != '')",
		), []string{"validations[0].expression: undefined field 'initContainerz'"}},
		{"scalars of the schema mismatched", validations(
			"object.metadata.name + 1 == 'x'",
		), []string{"validations[0].expression: found no matching overload for '_+_' applied to '(string, int)'"}},
		{"a validation that is no bool, dyn or not", validations(
			"object.spec.containers + object.spec.?initContainers.orValue([])",
		), []string{"validations[0].expression: must evaluate to bool, not dyn"}},
		{"a mismatch of object types beside another error", &v1alpha1.PolicySpec{
			Variables: []v1alpha1.Variable{{Name: "c", Expression: "object.spec.containers + object.spec.?initContainers.orValue([])"}},
			Validations: []v1alpha1.Validation{
				{Expression: "size(variables.c) > 0"},
				{Expression: "1 + 1"},
			},
		}, []string{
			"variables[0].expression: found no matching overload for '_+_'",
			"validations[1].expression: must evaluate to bool, not int",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := compiler(t).Compile(KindPod, tt.spec, nil)
			if p != nil {
				t.Fatal("got a program, want errors")
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

// TestDynamicCost: the dyn form keeps celcost's model: what params alone
// make an expression cost is refused at apply, what the object makes it
// cost is held at runtime.
func TestDynamicCost(t *testing.T) {
	l := make([]any, 1000)
	for i := range l {
		l[i] = int64(i)
	}
	spec := validations(
		"params.l.all(x, params.l.all(y, x == y)) || (object.spec.containers + object.spec.?initContainers.orValue([])).size() > 0",
	)
	_, errs := compiler(t).Compile(KindPod, spec, map[string]any{"l": l})
	if got := formatErrors(errs); len(errs) != 1 || !strings.Contains(got, "validations[0].expression: estimated cost") {
		t.Fatalf("got %q, want the params' nested loop refused with its estimated cost", got)
	}

	loop := "(object.spec.containers + object.spec.?initContainers.orValue([])).all(c, object.spec.containers.exists(d, d.name == c.name))"
	p := mustCompile(t, KindPod, validations(loop, "false"), nil)
	if !p.dynamic || !p.validations[0].prog.timed {
		t.Fatalf("dynamic %v, timed %v: want a dyn program under the admission's deadline", p.dynamic, p.validations[0].prog.timed)
	}
	res := p.evaluate(&Input{Object: podObject(t, 5000)})
	if len(res.Violations) != 2 || !strings.Contains(res.Violations[0].Message, "cost limit exceeded") || res.Exhausted != "" {
		if !strings.Contains(res.Exhausted, "time budget") { // a starved machine
			t.Fatalf("got %+v, want the nested loop stopped by its cost limit, and the next validation evaluated", res)
		}
	}
	// A namespace's own policy, at its tighter limit.
	c := limitedCompiler(t, Limits{AdmissionTime: 3600e9, NamespaceTime: 3600e9})
	p, errs = c.Compile(KindPod, validations(loop), nil, Namespaced(true))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b := NewBudget(context.Background(), c.Limits())
	defer b.Stop()
	res = p.Evaluate(b, &Input{Object: podObject(t, 5000)})
	if len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, "cost limit exceeded") ||
		b.Spent() > int64(DefaultNamespaceExpressionCost)*11/10 {
		t.Fatalf("got %+v after spending %d, want the loop stopped at %d", res, b.Spent(), DefaultNamespaceExpressionCost)
	}
}
