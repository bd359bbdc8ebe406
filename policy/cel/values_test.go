package cel

import (
	"context"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"k8s.io/apiserver/pkg/cel/common"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// TestValuesAsUnstructured evaluates expressions over the fast values and
// over common.UnstructuredToVal's, which they stand for: the results must
// be the same.
func TestValuesAsUnstructured(t *testing.T) {
	pod := podObject(t, 3)
	spec := pod["spec"].(map[string]any)
	spec["nodeName"] = nil // a null field reads as absent
	exprs := []string{
		"object.spec.containers[0] == object.spec.containers[0]",
		"object.spec.containers[0] == object.spec.containers[1]",
		"object.spec.containers == object.spec.containers",
		"object.spec.containers + object.spec.containers == object.spec.containers",
		"size(object.spec.containers + object.spec.containers) == 6",
		"object.spec.containers[0] in object.spec.containers",
		"object.spec == oldObject.spec",
		"object.metadata == object.metadata",
		"dyn(object.spec.containers[0]).exists(k, k == 'readinessProbe')",
		"size(dyn(object.spec.containers[0])) == 10",
		"dyn(object.spec.containers[0]) == dyn(object.spec.containers[0])",
		"object.spec.containers.map(c, c.name) == ['app-0', 'app-1', 'app-2']",
		"object.spec.containers.exists_one(c, has(c.readinessProbe))",
		"object.spec.containers.all(i, c, i < 3 && c.name.startsWith('app-'))",
		"!has(object.spec.nodeName) && !has(object.spec.containers[0].command)",
		"object.spec.containers[5].name == 'x'",
		"object.spec.containers[0].resources.limits['cpu'] == '500m'",
		"object.metadata.labels.all(k, k != '') && object.metadata.labels.size() == 3",
		"object.spec.containers[0].ports[0].containerPort + 1 == 8081",
		"object.spec.containers.filter(c, c.name == 'app-1')[0].image.contains('@sha256:')",
		"object.spec.?containers[?0].?name.orValue('') == 'app-0'",
		"object.spec.volumes[0].configMap.name == 'web-config'",
	}
	root := mustCompile(t, KindPod, validations("true"), nil).schema.val(pod)
	if _, ok := root.(*objectVal); !ok {
		t.Fatalf("a Pod is wrapped as %T", root)
	}
	if _, ok := root.(*objectVal).Get(types.String("spec")).(*objectVal).Get(types.String("containers")).(*listVal); !ok {
		t.Fatal("containers are not a listVal")
	}
	for _, e := range exprs {
		t.Run(e, func(t *testing.T) {
			p := mustCompile(t, KindPod, validations("true"), nil)
			p.validations[0].prog = compileAny(t, e)
			in := &Input{Object: pod, OldObject: podObject(t, 3)}
			fast := evalOne(t, p, in, nil)
			slow := evalOne(t, p, in, func(a *activation) {
				a.object = common.UnstructuredToVal(in.Object, p.schema.wrapped)
				a.oldObject = common.UnstructuredToVal(in.OldObject, p.schema.wrapped)
			})
			sameError := types.IsError(fast) && types.IsError(slow) && fast.(*types.Err).String() == slow.(*types.Err).String()
			if fast.Equal(slow) != types.True && !sameError {
				t.Errorf("fast %v, UnstructuredToVal %v", fast, slow)
			}
		})
	}
}

// compileAny plans e whatever its type, as a variable is.
func compileAny(t *testing.T, e string) program {
	t.Helper()
	c := *compiler(t)
	c.estimatedCostLimit = ^uint64(0)
	p, errs := c.Compile(KindPod, &v1alpha1.PolicySpec{
		Variables:   []v1alpha1.Variable{{Name: "e", Expression: e}},
		Validations: []v1alpha1.Validation{{Expression: "true"}},
	}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return p.variables[0].prog
}

func evalOne(t *testing.T, p *Program, in *Input, prepare func(*activation)) ref.Val {
	t.Helper()
	a := p.activation(context.Background(), in)
	defer a.stopTimer()
	if prepare != nil {
		prepare(a)
	}
	v, err := a.eval(p.validations[0].prog)
	if err != nil {
		return types.NewErr("%v", err)
	}
	return v
}

// TestRequestAsMap evaluates expressions over `request` as it is read
// field by field and as the whole map it stands for: the same results.
func TestRequestAsMap(t *testing.T) {
	exprs := []string{
		"request.operation",
		"request.name + '/' + request.namespace + '/' + request.subResource",
		"request.dryRun",
		"request.?operation.orValue('none')",
		"has(request.namespace) && has(request.userInfo)",
		"request.kind",
		"request.userInfo.groups",
		"request == request",
		"dyn(request).size()",
		"'operation' in dyn(request)",
		"dyn(request).exists(k, k == 'dryRun')",
		"[request][0].namespace",
		"dyn(request)['operation']",
		"dyn(request).nope",
	}
	in := podInput(t)
	in.Request.SubResource, in.Request.DryRun = "ephemeralcontainers", true
	for _, e := range exprs {
		t.Run(e, func(t *testing.T) {
			p := mustCompile(t, KindPod, validations("true"), nil)
			p.validations[0].prog = compileAny(t, e)
			lazy := evalOne(t, p, in, nil)
			whole := evalOne(t, p, in, func(a *activation) { a.request = requestMap(&in.Request) })
			sameError := types.IsError(lazy) && types.IsError(whole) && lazy.(*types.Err).String() == whole.(*types.Err).String()
			if lazy.Equal(whole) != types.True && !sameError {
				t.Errorf("read by field %v, as a map %v", lazy, whole)
			}
		})
	}
}
