package cel

import (
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
)

// The cost limits, in CEL cost units, are Kubernetes' own.
const (
	// PerExpressionCostLimit is VAP's per-call limit: an evaluation of one
	// expression that reaches it is stopped.
	PerExpressionCostLimit = celconfig.PerCallLimit
	// EstimatedCostLimit refuses, at compile time, an expression whose
	// estimated worst case (a 3 MiB object) is higher: the API server's
	// limit for CRD validation rules, with the same estimator.
	EstimatedCostLimit = 10_000_000
	// RuntimeCostBudget is what all expressions of a policy may cost
	// together in one admission, VAP's budget per policy binding.
	RuntimeCostBudget = celconfig.RuntimeCELCostBudget
)

// sizeEstimator bounds the size of what a path from a variable reaches,
// from the variable's DeclType, as CRD validation does for `self`. Unbounded
// types are as large as a whole request; anything under params is at most
// as large as the largest value in the policy's params.
type sizeEstimator struct {
	roots      map[string]*apiservercel.DeclType
	paramsSize uint64
}

func (e *sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	return e.sizeOf(element.Path())
}

// sizeOf is nil when it cannot tell.
func (e *sizeEstimator) sizeOf(path []string) *checker.SizeEstimate {
	if len(path) == 0 {
		return nil
	}
	if path[0] == varParams {
		return &checker.SizeEstimate{Min: 0, Max: e.paramsSize}
	}
	t := e.roots[path[0]]
	if t == nil {
		return nil
	}
	for _, name := range path[1:] {
		switch name {
		case "@items", "@values":
			t = t.ElemType
		case "@keys":
			t = t.KeyType
		default:
			if t.IsMap() {
				// labels.team selects a value of the map.
				t = t.ElemType
				break
			}
			f, ok := t.Fields[name]
			if !ok {
				return nil
			}
			t = f.Type
		}
		if t == nil {
			return nil
		}
	}
	if t.MaxElements <= 0 {
		return &checker.SizeEstimate{Min: 0, Max: uint64(celconfig.MaxRequestSizeBytes)}
	}
	return &checker.SizeEstimate{Min: 0, Max: uint64(t.MaxElements)}
}

// maxSize is the size of the largest string, list or map in v.
func maxSize(v any) uint64 {
	switch v := v.(type) {
	case string:
		return uint64(len(v))
	case []any:
		n := uint64(len(v))
		for _, e := range v {
			n = max(n, maxSize(e))
		}
		return n
	case map[string]any:
		n := uint64(len(v))
		for k, e := range v {
			n = max(n, uint64(len(k)), maxSize(e))
		}
		return n
	}
	return 0
}

func (e *sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// costEstimator is library.CostEstimator plus cluster.myApples, which costs
// one per MyApple listed, estimated at apples per namespace.
type costEstimator struct {
	lib    *library.CostEstimator
	sizes  *sizeEstimator
	apples uint64
}

func newCostEstimator(roots map[string]*apiservercel.DeclType, params any, apples uint64) *costEstimator {
	sizes := &sizeEstimator{roots: roots, paramsSize: maxSize(params)}
	return &costEstimator{lib: &library.CostEstimator{SizeEstimator: sizes}, sizes: sizes, apples: apples}
}

// cel-go optional library overloads yielding the value or the default.
const (
	overloadOptionalValue   = "optional_value"
	overloadOptionalOrValue = "optional_orValue_value"
)

func (e *costEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	if t := element.Type(); t != nil && t.Kind() == types.MapKind && t.Parameters()[1].TypeName() == appleTallyTypeName {
		// cluster.myAppleStats' byColor and bySize: no more colors or
		// sizes than MyApples.
		return &checker.SizeEstimate{Min: 0, Max: e.apples}
	}
	return e.lib.EstimateSize(element)
}

func (e *costEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if function == myApplesFunction {
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: 1 + e.apples},
			ResultSize:   &checker.SizeEstimate{Min: 0, Max: e.apples},
		}
	}
	if (function == operators.OptSelect || function == operators.OptIndex) && len(args) == 2 {
		// cel-go follows no path through ?. and [?]: size them as the
		// same path without ?, not as unbounded.
		if size := e.sizes.sizeOf(selectedPath(function, args[0].Expr(), args[1].Expr())); size != nil {
			return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 1}, ResultSize: size}
		}
	}
	switch overloadID {
	case overloadOptionalValue, overloadOptionalOrValue:
		// As large as the larger of the optional's value and the default.
		if target == nil {
			break
		}
		size := (*target).ComputedSize()
		if size != nil && overloadID == overloadOptionalOrValue {
			if len(args) != 1 || args[0].ComputedSize() == nil {
				break
			}
			u := size.Union(*args[0].ComputedSize())
			size = &u
		}
		if size != nil {
			return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 1}, ResultSize: size}
		}
	case overloads.IntToString, overloads.UintToString, overloads.DoubleToString, overloads.BoolToString:
		// cel-go leaves the size of string(n) unknown (unbounded); a number
		// is at most 32 characters.
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: 1},
			ResultSize:   &checker.SizeEstimate{Min: 1, Max: 32},
		}
	}
	return e.lib.EstimateCallCost(function, overloadID, target, args)
}

// exprPath is the path from a variable that e reaches through selects,
// indexes and their optional forms (an element or map value is @items); nil
// when e is anything else.
func exprPath(e celast.Expr) []string {
	switch e.Kind() {
	case celast.IdentKind:
		return []string{e.AsIdent()}
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil
		}
		if p := exprPath(sel.Operand()); p != nil {
			return append(p, sel.FieldName())
		}
	case celast.CallKind:
		call := e.AsCall()
		if args := call.Args(); len(args) == 2 {
			return selectedPath(call.FunctionName(), args[0], args[1])
		}
	}
	return nil
}

// selectedPath is exprPath of operand?.field (OptSelect) or operand[key]
// and operand[?key] (Index, OptIndex).
func selectedPath(function string, operand, key celast.Expr) []string {
	p := exprPath(operand)
	if p == nil {
		return nil
	}
	switch function {
	case operators.OptSelect:
		if key.Kind() == celast.LiteralKind {
			if name, ok := key.AsLiteral().Value().(string); ok {
				return append(p, name)
			}
		}
	case operators.OptIndex, operators.Index:
		return append(p, "@items")
	}
	return nil
}

// CallCost is the runtime side of the same estimate.
func (e *costEstimator) CallCost(function, overloadID string, args []ref.Val, result ref.Val) *uint64 {
	if function == myApplesFunction {
		c := uint64(1)
		if l, ok := result.(interface{ Size() ref.Val }); ok {
			if n, ok := l.Size().Value().(int64); ok && n > 0 {
				c += uint64(n)
			}
		}
		return &c
	}
	return e.lib.CallCost(function, overloadID, args, result)
}
