package cel

import (
	"slices"
	"unicode/utf8"

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

// sizeEstimator bounds the size of what a path from a variable reaches.
// Params are known: a path under them (or a variable naming one) has the
// exact sizes of what it reaches. Anything else depends on the object: sure
// estimates take it empty; the others size it from its DeclType, as CRD
// validation sizes `self`, unbounded types as large as a whole request.
type sizeEstimator struct {
	roots   map[string]*apiservercel.DeclType
	params  any                 // the policy's params, nil for none
	aliases map[string][]string // variables whose expression is a path under params, to it
	sure    bool
}

func (e *sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	return e.sizeOf(element.Path())
}

// sizeOf is nil when it cannot tell.
func (e *sizeEstimator) sizeOf(path []string) *checker.SizeEstimate {
	if len(path) == 0 {
		if e.sure {
			// A computed value of unknown size: what its parts cost is
			// counted where they are computed.
			return &checker.SizeEstimate{}
		}
		return nil
	}
	if len(path) > 1 && path[0] == varVariables {
		if alias, ok := e.aliases[path[1]]; ok {
			path = append(slices.Clone(alias), path[2:]...)
		}
	}
	if path[0] == varParams {
		if size := paramsSize(e.params, path[1:]); size != nil {
			return size
		}
		// Nothing sized there: reading it fails, or yields a scalar.
		return &checker.SizeEstimate{}
	}
	if e.sure {
		return &checker.SizeEstimate{}
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
			// An element of a list typed dyn, as object's are in a
			// dyn compilation (see paramsSize).
			if t.IsList() {
				t = t.ElemType
			} else {
				t = t.KeyType
			}
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

// paramsSize is the exact size range of what path reaches in params: the
// smallest and largest of the strings, lists or maps it may be (a path
// through @items reaches every element). Nil when it reaches nothing sized.
func paramsSize(params any, path []string) *checker.SizeEstimate {
	vals := []any{params}
	for _, step := range path {
		var next []any
		for _, v := range vals {
			switch v := v.(type) {
			case []any:
				// cel-go names the elements of a dyn list @keys, as
				// if it were a map.
				if step == "@items" || step == "@keys" {
					next = append(next, v...)
				}
			case map[string]any:
				switch step {
				case "@items", "@values":
					for _, e := range v {
						next = append(next, e)
					}
				case "@keys":
					for k := range v {
						next = append(next, k)
					}
				default:
					if e, ok := v[step]; ok {
						next = append(next, e)
					}
				}
			}
		}
		vals = next
	}
	var est *checker.SizeEstimate
	for _, v := range vals {
		var lo, hi uint64
		switch v := v.(type) {
		case string:
			lo, hi = uint64(utf8.RuneCountInString(v)), uint64(len(v))
		case []any:
			lo, hi = uint64(len(v)), uint64(len(v))
		case map[string]any:
			lo, hi = uint64(len(v)), uint64(len(v))
		default:
			continue
		}
		if est == nil {
			est = &checker.SizeEstimate{Min: lo, Max: hi}
			continue
		}
		est.Min, est.Max = min(est.Min, lo), max(est.Max, hi)
	}
	return est
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

func newCostEstimator(roots map[string]*apiservercel.DeclType, params any, aliases map[string][]string, sure bool, apples uint64) *costEstimator {
	sizes := &sizeEstimator{roots: roots, params: params, aliases: aliases, sure: sure}
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
		if e.sizes.sure {
			return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 1}, ResultSize: &checker.SizeEstimate{}}
		}
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
