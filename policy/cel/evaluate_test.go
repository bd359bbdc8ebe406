package cel

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

func podInput(tb testing.TB) *Input {
	return &Input{
		Object: podObject(tb, 2),
		Request: Request{
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      "web-7d4b9c8f6d-x2x9q",
			Namespace: "shop",
			Operation: "CREATE",
			UserInfo: authenticationv1.UserInfo{
				Username: "system:serviceaccount:kube-system:replicaset-controller",
				Groups:   []string{"system:serviceaccounts"},
				Extra:    map[string]authenticationv1.ExtraValue{"scopes": {"a", "b"}},
			},
		},
		Namespace: Namespace{
			Name:        "shop",
			Labels:      map[string]string{"team": "payments", "env": "prod"},
			Annotations: map[string]string{"apples.example.com/colors": "red,green"},
		},
	}
}

// TestVariables checks each variable expressions see, by a validation that
// holds only if it has the value the input gives.
func TestVariables(t *testing.T) {
	in := podInput(t)
	update := podInput(t)
	update.Request.Operation = "UPDATE"
	update.OldObject = podObject(t, 1)
	update.Request.DryRun = true
	update.Request.SubResource = "status"

	tests := []struct {
		name string
		in   *Input
		expr string
	}{
		{"object", in, "object.metadata.name == 'web-7d4b9c8f6d-x2x9q' && size(object.spec.containers) == 2 && object.spec.containers[0].ports[0].containerPort == 8080"},
		{"object quantities", in, "quantity(object.spec.containers[0].resources.limits['cpu']).isLessThan(quantity('1'))"},
		{"object int-or-string", in, "object.spec.containers[0].readinessProbe.httpGet.port == 8080"},
		{"object absent optional field", in, "!has(object.spec.hostNetwork) && !has(object.spec.containers[1].readinessProbe)"},
		{"oldObject null on CREATE", in, "oldObject == null"},
		{"oldObject on UPDATE", update, "oldObject != null && size(oldObject.spec.containers) == 1"},
		{"request", in, "request.kind.kind == 'Pod' && request.kind.version == 'v1' && request.kind.group == '' && request.resource.resource == 'pods' && request.operation == 'CREATE' && request.name == 'web-7d4b9c8f6d-x2x9q' && request.namespace == 'shop' && !request.dryRun && request.subResource == ''"},
		{"request userInfo", in, "request.userInfo.username.startsWith('system:serviceaccount:') && 'system:serviceaccounts' in request.userInfo.groups && request.userInfo.extra['scopes'] == ['a', 'b'] && request.userInfo.uid == ''"},
		{"request on UPDATE", update, "request.operation == 'UPDATE' && request.dryRun && request.subResource == 'status'"},
		{"namespaceObject", in, "namespaceObject.metadata.name == 'shop' && namespaceObject.metadata.labels['team'] == 'payments' && 'red' in namespaceObject.metadata.annotations['apples.example.com/colors'].split(',')"},
		{"namespaceObject without labels", &Input{Object: podObject(t, 1)}, "namespaceObject.metadata.?labels.?team.orValue('none') == 'none'"},
		{"params", in, "size(object.spec.containers) <= params.maxContainers && params.registries.exists(r, object.spec.containers[0].image.startsWith(r))"},
		{"cluster", &Input{Object: podObject(t, 1), Cluster: &fakeCluster{apples: map[string][]Apple{"shop": {{Name: "a", Color: "red", Size: "small", Quantity: 3}}}}},
			"cluster.myApples('shop').map(a, [a.name, a.color, a.size, string(a.quantity)]) == [['a', 'red', 'small', '3']] && cluster.myApples('empty').size() == 0"},
	}
	params := map[string]any{"maxContainers": int64(3), "registries": []any{"registry.example.com/"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, KindPod, validations(tt.expr), params)
			res := p.evaluate(tt.in)
			if !res.Judged || len(res.Violations) != 0 {
				t.Fatalf("got %+v, want the expression to hold", res)
			}
			// The same expression negated must fail: the test cannot pass by
			// an evaluation that always says true.
			p = mustCompile(t, KindPod, validations("!("+tt.expr+")"), params)
			if res := p.evaluate(tt.in); len(res.Violations) != 1 {
				t.Fatalf("negated: got %+v, want one violation", res)
			}
		})
	}
}

func TestMyAppleWithCluster(t *testing.T) {
	spec := &v1alpha1.PolicySpec{
		Params: nil,
		Validations: []v1alpha1.Validation{{
			Name:              "crates-per-color",
			Expression:        "cluster.myApples(object.metadata.namespace).filter(a, a.color == object.spec.color && a.name != object.metadata.name).map(a, a.quantity).sum() + object.spec.quantity <= params.max",
			MessageExpression: "'at most ' + string(params.max) + ' ' + object.spec.color + ' apples per namespace'",
			FieldPath:         "spec.quantity",
		}},
	}
	p := mustCompile(t, KindMyApple, spec, map[string]any{"max": int64(10)})
	cluster := &fakeCluster{apples: map[string][]Apple{"orchard": {
		{Name: "a", Color: "red", Size: "small", Quantity: 4},
		{Name: "b", Color: "red", Size: "large", Quantity: 3},
		{Name: "c", Color: "green", Size: "small", Quantity: 9},
	}}}
	tests := []struct {
		obj  map[string]any
		want []Violation
	}{
		{appleObject("new", "red", "small", 3), nil},
		{appleObject("new", "red", "small", 4), []Violation{{Rule: "validations.crates-per-color", Field: "spec.quantity", Message: "at most 10 red apples per namespace"}}},
		{appleObject("new", "green", "small", 1), nil},
		{appleObject("a", "red", "small", 7), nil}, // an update of a leaves a's own quantity out
	}
	for _, tt := range tests {
		res := p.evaluate(&Input{Object: tt.obj, Cluster: cluster})
		if !reflect.DeepEqual(res.Violations, tt.want) {
			t.Errorf("%v: got %+v, want %+v", tt.obj["spec"], res.Violations, tt.want)
		}
	}
}

func TestMyApplesCluster(t *testing.T) {
	cluster := &fakeCluster{apples: map[string][]Apple{"orchard": {
		{Name: "a", Color: "red", Size: "small", Quantity: 4},
		{Name: "b", Color: "green", Size: "large", Quantity: 3},
	}}}
	spec := validations(
		"cluster.myApples(object.metadata.namespace).filter(a, a.color == 'red').map(a, a.quantity).sum() + object.spec.quantity <= 10",
		"cluster.myApples(object.metadata.namespace).all(a, a.size != 'huge')",
	)
	p := mustCompile(t, KindMyApple, spec, nil)
	if res := p.evaluate(&Input{Object: appleObject("n", "red", "small", 6), Cluster: cluster}); len(res.Violations) != 0 {
		t.Errorf("6 more: got %+v", res)
	}
	res := p.evaluate(&Input{Object: appleObject("n", "red", "small", 7), Cluster: cluster})
	want := []Violation{{Rule: "validations[0]", Message: "failed expression: " + spec.Validations[0].Expression}}
	if !reflect.DeepEqual(res.Violations, want) {
		t.Errorf("7 more: got %+v, want %+v", res.Violations, want)
	}
	// Without a cluster the call fails, and fails closed.
	res = p.evaluate(&Input{Object: appleObject("n", "red", "small", 1)})
	if len(res.Violations) != 2 || !strings.Contains(res.Violations[0].Message, "cluster state is not available") {
		t.Errorf("no cluster: got %+v", res)
	}
}

func TestVariablesLazyOnce(t *testing.T) {
	spec := &v1alpha1.PolicySpec{
		Variables: []v1alpha1.Variable{
			{Name: "apples", Expression: "cluster.myApples('shop')"},
			{Name: "count", Expression: "size(variables.apples)"},
			{Name: "unused", Expression: "cluster.myApples('other')"},
		},
		Validations: []v1alpha1.Validation{
			{Expression: "variables.count < 5"},
			{Expression: "variables.apples.all(a, a.quantity > 0)"},
			{Expression: "variables.count == 0 || variables.apples[0].name != ''", MessageExpression: "'count ' + string(variables.count)"},
		},
	}
	p := mustCompile(t, KindPod, spec, nil)
	cluster := &fakeCluster{apples: map[string][]Apple{"shop": {{Name: "a", Quantity: 1}}}}
	res := p.evaluate(&Input{Object: podObject(t, 1), Cluster: cluster})
	if len(res.Violations) != 0 {
		t.Fatalf("got %+v", res)
	}
	if cluster.calls != 1 {
		t.Errorf("myApples called %d times, want once: variables.apples is evaluated at most once and variables.unused never", cluster.calls)
	}
	// Each admission evaluates afresh.
	p.evaluate(&Input{Object: podObject(t, 1), Cluster: cluster})
	if cluster.calls != 2 {
		t.Errorf("after a second admission: %d calls, want 2", cluster.calls)
	}
	// A policy whose validations read no variable evaluates none.
	cluster.calls = 0
	spec.Validations = []v1alpha1.Validation{{Expression: "true"}}
	mustCompile(t, KindPod, spec, nil).evaluate(&Input{Object: podObject(t, 1), Cluster: cluster})
	if cluster.calls != 0 {
		t.Errorf("unread variables evaluated: %d calls", cluster.calls)
	}
}

func TestMatchConditions(t *testing.T) {
	ignore := v1alpha1.Ignore
	job := podObject(t, 1)
	job["metadata"].(map[string]any)["ownerReferences"] = []any{map[string]any{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}}
	spec := func(fp *v1alpha1.FailurePolicy, cond string) *v1alpha1.PolicySpec {
		return &v1alpha1.PolicySpec{
			FailurePolicy: fp,
			MatchConditions: []v1alpha1.MatchCondition{
				{Name: "not-a-job", Expression: "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(o, o.kind == 'Job')"},
				{Name: "second", Expression: cond},
			},
			Validations: []v1alpha1.Validation{{Expression: "false", Message: "judged"}},
		}
	}
	judged := Result{Judged: true, Violations: []Violation{{Rule: "validations[0]", Message: "judged"}}}
	tests := []struct {
		name string
		spec *v1alpha1.PolicySpec
		obj  map[string]any
		want Result
	}{
		{"all true", spec(nil, "true"), podObject(t, 1), judged},
		{"first false", spec(nil, "true"), job, Result{}},
		{"second false", spec(nil, "object.metadata.name == 'other'"), podObject(t, 1), Result{}},
		{"error fails closed", spec(nil, "object.spec.containers[3].name == 'x'"), podObject(t, 1), Result{Judged: true, Violations: []Violation{{
			Rule: "matchConditions.second", Message: "match condition resulted in error: index out of bounds: 3",
		}}}},
		{"error under Ignore", spec(&ignore, "object.spec.containers[3].name == 'x'"), podObject(t, 1), Result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustCompile(t, KindPod, tt.spec, nil).evaluate(&Input{Object: tt.obj})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMessages(t *testing.T) {
	long := strings.Repeat("é", MaxMessageLength) // two bytes each
	tests := []struct {
		name string
		v    v1alpha1.Validation
		want string
	}{
		{"default", v1alpha1.Validation{Expression: "  object.metadata.name == 'x'  "}, "failed expression: object.metadata.name == 'x'"},
		{"message", v1alpha1.Validation{Expression: "false", Message: "no"}, "no"},
		{"messageExpression", v1alpha1.Validation{Expression: "false", Message: "no", MessageExpression: "'pod ' + object.metadata.name + ' has ' + string(size(object.spec.containers)) + ' containers'"}, "pod web-7d4b9c8f6d-x2x9q has 1 containers"},
		{"messageExpression empty", v1alpha1.Validation{Expression: "false", Message: "no", MessageExpression: "'  '"}, "no"},
		{"messageExpression with a line break", v1alpha1.Validation{Expression: "false", Message: "no", MessageExpression: "'a\\nb'"}, "no"},
		{"messageExpression error", v1alpha1.Validation{Expression: "false", MessageExpression: "object.spec.containers[9].name"}, "failed expression: false"},
		{"messageExpression cut", v1alpha1.Validation{Expression: "false", MessageExpression: "'" + long[:MaxExpressionLength/2-2] + "'"}, long[:MaxMessageLength-3-1] + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, KindPod, &v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{tt.v}}, nil)
			res := p.evaluate(&Input{Object: podObject(t, 1)})
			if len(res.Violations) != 1 || res.Violations[0].Message != tt.want {
				t.Errorf("got %+v, want message %q", res.Violations, tt.want)
			}
			if n := len(res.Violations[0].Message); n > MaxMessageLength {
				t.Errorf("message of %d bytes", n)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	ignore, fail := v1alpha1.Ignore, v1alpha1.Fail
	spec := func(fp *v1alpha1.FailurePolicy) *v1alpha1.PolicySpec {
		return &v1alpha1.PolicySpec{FailurePolicy: fp, Validations: []v1alpha1.Validation{
			{Name: "broken", Expression: "object.spec.containers[5].name == 'x'", FieldPath: "spec.containers"},
			{Name: "false", Expression: "false", Message: "always"},
		}}
	}
	want := []Violation{
		{Rule: "validations.broken", Field: "spec.containers", Message: "expression 'object.spec.containers[5].name == 'x'' resulted in error: index out of bounds: 5"},
		{Rule: "validations.false", Message: "always"},
	}
	for _, fp := range []*v1alpha1.FailurePolicy{nil, &fail} {
		res := mustCompile(t, KindPod, spec(fp), nil).evaluate(&Input{Object: podObject(t, 1)})
		if !reflect.DeepEqual(res.Violations, want) {
			t.Errorf("failurePolicy %v: got %+v, want %+v", fp, res.Violations, want)
		}
	}
	res := mustCompile(t, KindPod, spec(&ignore), nil).evaluate(&Input{Object: podObject(t, 1)})
	if !reflect.DeepEqual(res.Violations, want[1:]) {
		t.Errorf("Ignore: got %+v, want %+v", res.Violations, want[1:])
	}
}

// limitedCompiler is the test compiler with other limits.
func limitedCompiler(t *testing.T, l Limits) *Compiler {
	c := *compiler(t)
	c.limits = l.WithDefaults()
	if err := c.limits.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

const nested = "object.spec.containers.all(c, object.spec.containers.exists(d, d.name == c.name))"

// costOf is what one evaluation of p's first validation costs on in.
func costOf(t *testing.T, p *Program, in *Input) int64 {
	t.Helper()
	b := NewBudget(context.Background(), Limits{AdmissionCost: math.MaxInt64 / 2, AdmissionTime: time.Hour})
	defer b.Stop()
	a := &activation{p: p, in: in, b: b}
	if _, err := a.eval(p.validations[0].prog); err != nil {
		t.Fatal(err)
	}
	return b.Spent()
}

func TestPerExpressionLimit(t *testing.T) {
	// Accepted, as VAP accepts it, and stopped at runtime by the limit of
	// one expression: 5,000 containers make 12.5 million comparisons.
	p := mustCompile(t, KindPod, validations(nested, "false"), nil)
	res := p.evaluate(&Input{Object: podObject(t, 5000)})
	if len(res.Violations) != 2 || !strings.Contains(res.Violations[0].Message, "cost limit exceeded") || res.Exhausted != "" {
		// On a starved machine the admission's time may run out first.
		if !strings.Contains(res.Exhausted, "time budget") {
			t.Fatalf("got %+v, want the nested loop stopped by its cost limit, and the next validation evaluated", res)
		}
	}

	// A namespace's own policy is stopped at its tighter limit.
	c := limitedCompiler(t, Limits{AdmissionTime: time.Hour, NamespaceTime: time.Hour})
	p, errs := c.Compile(KindPod, validations(nested), nil, Namespaced(true))
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

func TestAdmissionBudget(t *testing.T) {
	big := &Input{Object: podObject(t, 1000)}
	each := "object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"
	exprs := []string{"true"}
	for i := range 5 {
		exprs = append(exprs, fmt.Sprintf("%s && %d >= 0", each, i))
	}
	one := costOf(t, mustCompile(t, KindPod, validations(exprs[1]), nil), big)
	t.Logf("one loop over 1,000 containers costs %d", one)

	ignore := v1alpha1.Ignore
	for _, tt := range []struct {
		name       string
		limits     Limits
		namespaced bool
		want       string
	}{
		{"the admission's cost", Limits{AdmissionCost: 2*one + one/2, AdmissionTime: time.Hour}, false,
			fmt.Sprintf("the CEL cost budget of one admission (%d)", 2*one+one/2)},
		{"a namespace's cost", Limits{NamespaceCost: 2*one + one/2, AdmissionTime: time.Hour, NamespaceTime: time.Hour}, true,
			fmt.Sprintf("the CEL cost budget of a namespace's own policies in one admission (%d)", 2*one+one/2)},
		{"a namespace's time", Limits{NamespaceTime: time.Nanosecond}, true,
			"the CEL time budget of a namespace's own policies in one admission (1ns)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := limitedCompiler(t, tt.limits)
			for _, fp := range []*v1alpha1.FailurePolicy{nil, &ignore} {
				spec := validations(exprs...)
				spec.FailurePolicy = fp
				// Three programs sharing one budget, as the policies of one
				// admission do: the budget runs out in the second, and the
				// third runs nothing.
				half := validations(exprs[:3]...)
				half.FailurePolicy = fp
				p1, errs := c.Compile(KindPod, half, nil, Namespaced(tt.namespaced))
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				p2, _ := c.Compile(KindPod, spec, nil, Namespaced(tt.namespaced))
				b := NewBudget(context.Background(), c.Limits())
				defer b.Stop()
				res1 := p1.Evaluate(b, big)
				res2 := p2.Evaluate(b, big)
				res3 := p1.Evaluate(b, big)
				if tt.limits.NamespaceTime == time.Nanosecond {
					// Out before anything runs.
					if res1.Exhausted != tt.want || len(res1.Violations) != 0 {
						t.Errorf("failurePolicy %v: got %+v, want out of %q", fp, res1, tt.want)
					}
					continue
				}
				if res1.Exhausted != "" || len(res1.Violations) != 0 {
					t.Errorf("failurePolicy %v: first program: got %+v, want it judged within the budget", fp, res1)
				}
				if res2.Exhausted != tt.want || !res2.Judged || len(res2.Violations) != 0 {
					t.Errorf("failurePolicy %v: second program: got %+v, want out of %q whatever the failurePolicy", fp, res2, tt.want)
				}
				if res3.Exhausted != tt.want {
					t.Errorf("failurePolicy %v: third program: got %+v, want nothing run", fp, res3)
				}
			}
		})
	}

	// A namespace's part is its own: cluster-wide programs still run once
	// it is spent, within the admission's budget.
	c := limitedCompiler(t, Limits{NamespaceCost: one / 2, AdmissionTime: time.Hour, NamespaceTime: time.Hour})
	team, _ := c.Compile(KindPod, validations(exprs[1]), nil, Namespaced(true))
	cluster, _ := c.Compile(KindPod, validations(exprs[2]), nil)
	b := NewBudget(context.Background(), c.Limits())
	defer b.Stop()
	if res := cluster.Evaluate(b, big); res.Exhausted != "" {
		t.Fatalf("cluster-wide: %+v", res)
	}
	if res := team.Evaluate(b, big); !strings.Contains(res.Exhausted, "namespace's own policies") {
		t.Fatalf("namespace: got %+v, want its budget spent", res)
	}
}

func TestTimeout(t *testing.T) {
	// Only expressions that can run long are timed, and cheap ones once
	// those before them could.
	cheap := "has(object.spec.securityContext) && object.metadata.name.startsWith('web')"
	for _, tt := range []struct {
		exprs []string
		timed []bool
	}{
		{[]string{cheap}, []bool{false}},
		{[]string{"object.spec.containers.all(c, c.name != '')"}, []bool{true}},
		{[]string{"cluster.myApples('shop').size() < 3"}, []bool{true}},
		{[]string{cheap, "cluster.myApples('shop').size() < 3", cheap}, []bool{false, true, false}},
		{[]string{cheap, "size(object.spec.containers) < 3", "size(object.spec.volumes) < 3", cheap}, []bool{false, false, false, false}},
		{[]string{"object.spec.containers.all(c, c.name != '')", cheap, "object.spec.volumes.all(v, v.name != '')", cheap}, []bool{true, false, true, false}},
	} {
		p := mustCompile(t, KindPod, validations(tt.exprs...), nil)
		var got []bool
		for _, v := range p.validations {
			got = append(got, v.prog.timed)
		}
		if !reflect.DeepEqual(got, tt.timed) {
			t.Errorf("%q: timed %v, want %v", tt.exprs, got, tt.timed)
		}
	}

	// A request whose own time is up stops the timed expressions.
	p := mustCompile(t, KindPod, validations("object.spec.containers.all(c, c.name != '')"), nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	b := NewBudget(ctx, p.Limits())
	defer b.Stop()
	res := p.Evaluate(b, &Input{Object: podObject(t, 500)})
	if want := "the time of the request (context deadline exceeded)"; res.Exhausted != want {
		t.Fatalf("got %+v, want out of %q", res, want)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	spec := &v1alpha1.PolicySpec{
		Variables:   []v1alpha1.Variable{{Name: "n", Expression: "size(object.spec.containers)"}},
		Validations: []v1alpha1.Validation{{Expression: "variables.n < 2", MessageExpression: "'too many: ' + string(variables.n)"}},
	}
	p := mustCompile(t, KindPod, spec, nil)
	done := make(chan string)
	for i := range 8 {
		go func() {
			res := p.evaluate(&Input{Object: podObject(t, 1+i%2)})
			if i%2 == 0 {
				done <- fmt.Sprint(len(res.Violations) == 0)
			} else {
				done <- fmt.Sprint(len(res.Violations) == 1 && res.Violations[0].Message == "too many: 2")
			}
		}()
	}
	for range 8 {
		if ok := <-done; ok != "true" {
			t.Error("wrong result under concurrency")
		}
	}
}

func TestNamespaceTurns(t *testing.T) {
	c, err := NewCompilerWithLimits(Limits{NamespaceTime: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p, errs := c.Compile(KindPod, validations("object.metadata.name != ''"), nil, Namespaced(true))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	in := func(ns string) *Input {
		return &Input{Object: podObject(t, 1), Request: Request{Namespace: ns}}
	}
	holder := p.NewBudget(context.Background())
	if res := p.Evaluate(holder, in("team-b")); res.Exhausted != "" || len(res.Violations) != 0 {
		t.Fatalf("first: %+v", res)
	}
	// team-b's turn is taken until the holder's admission ends: another
	// waits within its namespace's time, then is refused saying why.
	waiter := p.NewBudget(context.Background())
	res := p.Evaluate(waiter, in("team-b"))
	waiter.Stop()
	if !strings.Contains(res.Exhausted, "spent waiting for its turn (1 admissions of a namespace at a time evaluate its policies)") {
		t.Fatalf("second in team-b: got %+v, want refused waiting for its turn", res)
	}
	// Another namespace has turns of its own.
	other := p.NewBudget(context.Background())
	if res := p.Evaluate(other, in("team-a")); res.Exhausted != "" {
		t.Fatalf("team-a: %+v", res)
	}
	other.Stop()
	holder.Stop()
	next := p.NewBudget(context.Background())
	defer next.Stop()
	if res := p.Evaluate(next, in("team-b")); res.Exhausted != "" {
		t.Fatalf("team-b after the holder: %+v", res)
	}
	if n := len(c.gate.turns); n != 1 {
		t.Errorf("%d namespaces hold turns, want 1 (team-b's next)", n)
	}
}
