package cel

import (
	"errors"
	"reflect"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// Cluster is the cluster state expressions read through `cluster`, held in
// memory by the caller (the informer cache); it is never an API call. Each
// method answers from what the caller keeps ready (see Apples), without
// work in proportion to the MyApples of the namespace.
type Cluster interface {
	// MyApples lists the MyApples of a namespace, sorted by name.
	MyApples(namespace string) AppleList
	// MyAppleTally counts the MyApples of a namespace whose field by is
	// value (all of them for ByNamespace) and sums their quantities,
	// leaving out the one named except ("" for none).
	MyAppleTally(namespace string, by GroupBy, value, except string) Tally
	// MyAppleGroups lists the colors or sizes the MyApples of a namespace
	// have.
	MyAppleGroups(namespace string, by GroupBy) []string
}

const (
	clusterTypeName      = "policywebhook.Cluster"
	myApplesFunction     = "myApples"
	myAppleStatsFunction = "myAppleStats"
	// maxApplesEstimate is how many MyApples a namespace is assumed to hold
	// for cost estimation, at least (Compiler.WithMyApplesBound raises it
	// to what the cache holds); more are evaluated all the same.
	maxApplesEstimate = 10_000
)

var clusterCELType = cel.OpaqueType(clusterTypeName)

// clusterVal is the `cluster` variable's value.
type clusterVal struct{ c Cluster }

func (v clusterVal) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("cluster has no native form")
}
func (v clusterVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return clusterCELType
	}
	return types.NewErr("cluster cannot be converted to %s", t.TypeName())
}
func (v clusterVal) Equal(other ref.Val) ref.Val { return types.MaybeNoSuchOverloadErr(other) }
func (v clusterVal) Type() ref.Type              { return clusterCELType }
func (v clusterVal) Value() any                  { return v.c }

// clusterLib declares cluster.myApples(string) and
// cluster.myAppleStats(string[, string]) and binds them to the Cluster of
// the admission.
func clusterLib(apple, stats *cel.Type) cel.EnvOption {
	return cel.Lib(clusterLibrary{apple: apple, stats: stats})
}

type clusterLibrary struct{ apple, stats *cel.Type }

func (l clusterLibrary) CompileOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function(myApplesFunction,
			cel.MemberOverload("cluster_myApples_string",
				[]*cel.Type{clusterCELType, cel.StringType}, cel.ListType(l.apple),
				cel.BinaryBinding(myApples))),
		cel.Function(myAppleStatsFunction,
			cel.MemberOverload("cluster_myAppleStats_string",
				[]*cel.Type{clusterCELType, cel.StringType}, l.stats,
				cel.BinaryBinding(func(c, ns ref.Val) ref.Val { return myAppleStats(c, ns, types.String("")) })),
			cel.MemberOverload("cluster_myAppleStats_string_string",
				[]*cel.Type{clusterCELType, cel.StringType, cel.StringType}, l.stats,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val { return myAppleStats(args[0], args[1], args[2]) }))),
	}
}

func (clusterLibrary) ProgramOptions() []cel.ProgramOption { return nil }

// clusterOf is the Cluster of a call's target.
func clusterOf(v ref.Val) (Cluster, ref.Val) {
	cv, ok := v.(clusterVal)
	if !ok {
		return nil, types.NewErr("no cluster")
	}
	if cv.c == nil {
		return nil, types.NewErr("cluster state is not available")
	}
	return cv.c, nil
}

func myApples(lhs, rhs ref.Val) ref.Val {
	c, errVal := clusterOf(lhs)
	if errVal != nil {
		return errVal
	}
	ns, ok := rhs.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(rhs)
	}
	// The values were built when the MyApples changed: wrapping them
	// copies nothing.
	return types.NewRefValList(types.DefaultTypeAdapter, c.MyApples(string(ns)).vals)
}

// myAppleStats is {count, quantity, byColor, bySize} of a namespace; the
// groups are read from the Cluster by key, so that the call costs the same
// however many MyApples and colors there are.
func myAppleStats(target, nsVal, exceptVal ref.Val) ref.Val {
	c, errVal := clusterOf(target)
	if errVal != nil {
		return errVal
	}
	ns, ok := nsVal.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(nsVal)
	}
	except, ok := exceptVal.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(exceptVal)
	}
	all := c.MyAppleTally(string(ns), ByNamespace, "", string(except))
	return types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{
		types.String("count"):    types.Int(all.Count),
		types.String("quantity"): types.Int(all.Quantity),
		types.String("byColor"):  &groupVal{c: c, ns: string(ns), except: string(except), by: ByColor},
		types.String("bySize"):   &groupVal{c: c, ns: string(ns), except: string(except), by: BySize},
	})
}

func tallyVal(t Tally) ref.Val {
	return types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{
		types.String("count"):    types.Int(t.Count),
		types.String("quantity"): types.Int(t.Quantity),
	})
}

// groupVal is byColor or bySize: a map from each color (size) to its
// tally, read from the Cluster one key at a time. A key no MyApple has
// reads as a zero tally, so that byColor[object.spec.color] needs no
// guard; `in`, size() and iteration see the keys some MyApple has.
type groupVal struct {
	c          Cluster
	ns, except string
	by         GroupBy
}

var _ traits.Mapper = (*groupVal)(nil)

func (g *groupVal) tally(key ref.Val) (Tally, ref.Val) {
	k, ok := key.(types.String)
	if !ok {
		return Tally{}, types.MaybeNoSuchOverloadErr(key)
	}
	return g.c.MyAppleTally(g.ns, g.by, string(k), g.except), nil
}

func (g *groupVal) Find(key ref.Val) (ref.Val, bool) {
	t, errVal := g.tally(key)
	if errVal != nil {
		return errVal, false
	}
	return tallyVal(t), true
}

func (g *groupVal) Get(key ref.Val) ref.Val {
	v, _ := g.Find(key)
	return v
}

func (g *groupVal) Contains(key ref.Val) ref.Val {
	t, errVal := g.tally(key)
	if errVal != nil {
		return errVal
	}
	return types.Bool(t.Count > 0)
}

// keys are the groups some MyApple (but except) is in.
func (g *groupVal) keys() []string {
	all := g.c.MyAppleGroups(g.ns, g.by)
	keys := all[:0:0]
	for _, k := range all {
		if g.c.MyAppleTally(g.ns, g.by, k, g.except).Count > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

func (g *groupVal) Size() ref.Val { return types.Int(len(g.keys())) }

func (g *groupVal) Iterator() traits.Iterator {
	return types.NewStringList(types.DefaultTypeAdapter, g.keys()).Iterator()
}

func (g *groupVal) ConvertToNative(t reflect.Type) (any, error) {
	return nil, errors.New("a MyApple grouping has no native form")
}

func (g *groupVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	return types.NewErr("a MyApple grouping cannot be converted to %s", t.TypeName())
}

func (g *groupVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(*groupVal)
	return types.Bool(ok && *o == *g)
}

func (g *groupVal) Type() ref.Type { return types.MapType }
func (g *groupVal) Value() any     { return g }

// scanInLoop finds a cluster.myApples call inside the body of a loop (a
// comprehension's condition or step): it would list the namespace
// once per element. Reading it once, in the loop's range or a variable, or
// reading cluster.myAppleStats, costs the same per element at any size.
func scanInLoop(e celast.Expr) bool {
	found := false
	var visit func(e celast.Expr, inLoop bool)
	visit = func(e celast.Expr, inLoop bool) {
		if found {
			return
		}
		switch e.Kind() {
		case celast.CallKind:
			call := e.AsCall()
			if inLoop && call.FunctionName() == myApplesFunction {
				found = true
				return
			}
			if call.IsMemberFunction() {
				visit(call.Target(), inLoop)
			}
			for _, a := range call.Args() {
				visit(a, inLoop)
			}
		case celast.SelectKind:
			visit(e.AsSelect().Operand(), inLoop)
		case celast.ListKind:
			for _, el := range e.AsList().Elements() {
				visit(el, inLoop)
			}
		case celast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				visit(me.Key(), inLoop)
				visit(me.Value(), inLoop)
			}
		case celast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				visit(f.AsStructField().Value(), inLoop)
			}
		case celast.ComprehensionKind:
			c := e.AsComprehension()
			visit(c.IterRange(), inLoop)
			visit(c.AccuInit(), inLoop)
			visit(c.LoopCondition(), true)
			visit(c.LoopStep(), true)
			visit(c.Result(), inLoop)
		}
	}
	visit(e, false)
	return found
}
