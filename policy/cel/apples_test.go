package cel

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

func TestApplesTallies(t *testing.T) {
	s := NewApples()
	s.Set(Apple{Name: "a", Color: "red", Size: "small", Quantity: 4})
	s.Set(Apple{Name: "b", Color: "red", Size: "large", Quantity: 3})
	s.Set(Apple{Name: "c", Color: "green", Size: "small", Quantity: 9})
	s.Set(Apple{Name: "b", Color: "green", Size: "large", Quantity: 5}) // an update moves b
	if _, ok := s.Remove("c"); !ok {
		t.Fatal("Remove(c) found nothing")
	}
	if _, ok := s.Remove("c"); ok {
		t.Fatal("Remove(c) twice found it")
	}
	for _, tt := range []struct {
		by            GroupBy
		value, except string
		want          Tally
	}{
		{ByNamespace, "", "", Tally{2, 9}},
		{ByNamespace, "", "a", Tally{1, 5}},
		{ByNamespace, "", "nobody", Tally{2, 9}},
		{ByColor, "red", "", Tally{1, 4}},
		{ByColor, "red", "b", Tally{1, 4}}, // b is not red: nothing to leave out
		{ByColor, "green", "b", Tally{}},
		{BySize, "small", "", Tally{1, 4}},
		{BySize, "huge", "", Tally{}},
	} {
		if got := s.Tally(tt.by, tt.value, tt.except); got != tt.want {
			t.Errorf("Tally(%d, %q, except %q) = %+v, want %+v", tt.by, tt.value, tt.except, got, tt.want)
		}
	}
	if got, want := s.Groups(ByColor), []string{"green", "red"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Groups(ByColor) = %v, want %v (c's green left with c, b's red with its update)", got, want)
	}
	want := []Apple{{"a", "red", "small", 4}, {"b", "green", "large", 5}}
	if got := s.List().Apples(); !reflect.DeepEqual(got, want) {
		t.Errorf("List() = %+v, want %+v", got, want)
	}
}

func TestMyAppleStats(t *testing.T) {
	cluster := &fakeCluster{apples: map[string][]Apple{"orchard": {
		{Name: "a", Color: "red", Size: "small", Quantity: 4},
		{Name: "b", Color: "red", Size: "large", Quantity: 3},
		{Name: "c", Color: "green", Size: "small", Quantity: 9},
	}}}
	obj := appleObject("b", "red", "large", 3)
	for _, expr := range []string{
		"cluster.myAppleStats('orchard').count == 3 && cluster.myAppleStats('orchard').quantity == 16",
		"cluster.myAppleStats('orchard', 'b').count == 2 && cluster.myAppleStats('orchard', object.metadata.name).quantity == 13",
		"cluster.myAppleStats('orchard').byColor['red'].count == 2 && cluster.myAppleStats('orchard').byColor['red'].quantity == 7",
		"cluster.myAppleStats('orchard', 'b').byColor.red.count == 1",
		"cluster.myAppleStats('orchard').byColor['blue'].count == 0",  // a color no MyApple has reads as zero
		"cluster.myAppleStats('orchard').byColor[?'blue'].hasValue()", // ... with ? too
		"!('blue' in cluster.myAppleStats('orchard').byColor)",        // but is not in it
		"cluster.myAppleStats('orchard').bySize.small.quantity == 13",
		"cluster.myAppleStats('orchard').byColor.size() == 2",
		"cluster.myAppleStats('orchard', 'c').byColor.size() == 1", // c is the only green one
		"cluster.myAppleStats('orchard').bySize.all(s, s in ['small', 'large'])",
		"cluster.myAppleStats('orchard').byColor.map(c, c) == ['green', 'red']",
		"cluster.myAppleStats('empty').count == 0 && cluster.myAppleStats('empty').byColor.size() == 0",
	} {
		p := mustCompile(t, KindMyApple, validations(expr), nil)
		if res := p.Evaluate(NewBudget(context.Background(), compiler(t).Limits()), &Input{Object: obj, Cluster: cluster}); len(res.Violations) != 0 {
			t.Errorf("%s: %+v", expr, res.Violations)
		}
	}
	p := mustCompile(t, KindMyApple, validations("cluster.myAppleStats('orchard').count == 3"), nil)
	res := p.Evaluate(NewBudget(context.Background(), compiler(t).Limits()), &Input{Object: obj})
	if len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, "cluster state is not available") {
		t.Errorf("without a cluster: %+v, want a violation saying so", res.Violations)
	}
}

// TestQuotaByColorExample is the README's and docs/cel.md's example.
func TestQuotaByColorExample(t *testing.T) {
	spec := &v1alpha1.PolicySpec{Validations: []v1alpha1.Validation{{
		Name: "maxPerColor",
		Expression: "cluster.myAppleStats(object.metadata.namespace, object.metadata.name)" +
			".byColor[object.spec.color].count < params.maxPerColor",
		Message:   "at most 2 MyApples of one color per namespace",
		FieldPath: "spec.color",
	}}}
	p := mustCompile(t, KindMyApple, spec, map[string]any{"maxPerColor": int64(2)})
	cluster := &fakeCluster{apples: map[string][]Apple{"orchard": {
		{Name: "a", Color: "red", Quantity: 1},
		{Name: "b", Color: "red", Quantity: 1},
		{Name: "c", Color: "green", Quantity: 1},
	}}}
	for _, tt := range []struct {
		name, color string
		allowed     bool
	}{
		{"new", "red", false},
		{"new", "green", true},
		{"new", "blue", true},
		{"a", "red", true},  // updating a leaves a out
		{"c", "red", false}, // c turning red would make three
	} {
		res := p.Evaluate(NewBudget(context.Background(), compiler(t).Limits()), &Input{Object: appleObject(tt.name, tt.color, "small", 1), Cluster: cluster})
		if got := len(res.Violations) == 0; got != tt.allowed {
			t.Errorf("%s %s: allowed %v, want %v (%+v)", tt.name, tt.color, got, tt.allowed, res.Violations)
		}
	}
}

func TestScanPerElementRefused(t *testing.T) {
	for _, tt := range []struct {
		kind, expr string
		refused    bool
	}{
		{KindMyApple, "cluster.myApples(object.metadata.namespace).all(a, cluster.myApples(object.metadata.namespace).exists(b, b.name == a.name))", true},
		{KindMyApple, "params.l.all(x, cluster.myApples(object.metadata.namespace).exists(a, a.color == x))", true},
		{KindPod, "object.spec.containers.all(c, cluster.myApples(object.metadata.namespace).size() < 3)", true},
		{KindMyApple, "[1, 2].map(x, cluster.myApples('a').size()).sum() > 0", true},
		// Listed once: the loop's range, a loop's result, a variable.
		{KindMyApple, "cluster.myApples(object.metadata.namespace).all(a, a.quantity < 10)", false},
		{KindMyApple, "params.l.all(x, cluster.myAppleStats(object.metadata.namespace).byColor[x].count < 3)", false},
	} {
		_, errs := compiler(t).Compile(tt.kind, validations(tt.expr), map[string]any{"l": []any{"red"}})
		refused := len(errs) > 0 && strings.Contains(errs.ToAggregate().Error(), "once per element")
		if refused != tt.refused {
			t.Errorf("%s: refused %v, want %v (%v)", tt.expr, refused, tt.refused, errs)
		}
	}
	// A variable is evaluated once per admission, wherever it is read.
	spec := &v1alpha1.PolicySpec{
		Variables:   []v1alpha1.Variable{{Name: "apples", Expression: "cluster.myApples(object.metadata.namespace)"}},
		Validations: []v1alpha1.Validation{{Expression: "params.l.all(x, variables.apples.exists(a, a.color == x))"}},
	}
	mustCompile(t, KindMyApple, spec, map[string]any{"l": []any{"red"}})
}

// The estimate knows the namespaces the cache holds. As with the object,
// what a scan costs depends on the namespace it meets, so it is held by the
// runtime budget rather than refused at apply: accepted at 2,000,000, where
// it is evaluated under a timer.
func TestMyApplesEstimatedAtWhatTheCacheHolds(t *testing.T) {
	spec := validations("cluster.myApples(object.metadata.namespace).filter(a, a.quantity > 1 && a.quantity < 100 && a.color == 'red').size() < 3")
	c := compiler(t)
	if _, errs := c.Compile(KindMyApple, spec, nil); len(errs) > 0 {
		t.Fatalf("at 10,000: %v", errs)
	}
	held := 500
	small := c.WithMyApplesBound(func() int { return held })
	if _, errs := small.Compile(KindMyApple, spec, nil); len(errs) > 0 {
		t.Fatalf("at 500 (estimated at 10,000 still): %v", errs)
	}
	held = 2_000_000
	p, errs := small.Compile(KindMyApple, spec, nil)
	if len(errs) > 0 {
		t.Fatalf("at 2,000,000: %v, want it accepted and held by the runtime budget", errs)
	}
	if !p.validations[0].prog.timed {
		t.Error("at 2,000,000: evaluated without a timer")
	}
	// cluster.myAppleStats costs the same at any size.
	stats := validations("cluster.myAppleStats(object.metadata.namespace).byColor[object.spec.color].count < 3")
	if _, errs := small.Compile(KindMyApple, stats, nil); len(errs) > 0 {
		t.Errorf("myAppleStats at 2,000,000: %v", errs)
	}
}
