package cel

import (
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types/ref"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
)

// The cost limits, in CEL cost units, are Kubernetes' own.
const (
	// PerExpressionCostLimit is VAP's per-call limit
	// (k8s.io/apiserver/pkg/apis/cel.PerCallLimit): an evaluation of one
	// expression that reaches it is stopped.
	PerExpressionCostLimit = celconfig.PerCallLimit
	// EstimatedCostLimit refuses, at compile time, an expression whose
	// estimated worst case is higher. VAP estimates nothing; this is the
	// limit the API server applies when CRD validation rules are written
	// (k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation.
	// StaticEstimatedCostLimit), with the same estimator. The worst case is
	// a 3 MiB object (celconfig.MaxRequestSizeBytes): about 262,000
	// containers for a Pod, so that object.spec.containers.all(c,
	// has(c.readinessProbe)) estimates at 4.2 million, above the per-call
	// limit although a real Pod costs a few dozen units, while a loop
	// nested in another over containers estimates at about 10^17.
	EstimatedCostLimit = 10_000_000
	// RuntimeCostBudget is what all expressions of a policy may cost
	// together in one admission, VAP's budget per policy binding.
	RuntimeCostBudget = celconfig.RuntimeCELCostBudget
)

// sizeEstimator bounds the size of what a path from a variable reaches
// (object.spec.containers, namespaceObject.metadata.labels), from the
// variable's DeclType, as CRD validation does for `self`
// (k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel). A type that
// does not bound its size (the hand-made request and namespaceObject, a
// variable's string) is as large as a whole request may be; anything
// under params is at most as large as the largest string, list or map of
// the policy's params, which are known when the policy is compiled. A
// path it cannot follow is left to cel-go's worst case.
type sizeEstimator struct {
	roots      map[string]*apiservercel.DeclType
	paramsSize uint64
}

func (e *sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	path := element.Path()
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

// costEstimator is the Kubernetes libraries' estimator (library.CostEstimator)
// plus cluster.myApples: it costs one per MyApple listed, and lists at most
// maxApplesEstimate.
type costEstimator struct {
	lib *library.CostEstimator
}

func newCostEstimator(roots map[string]*apiservercel.DeclType, params any) *costEstimator {
	return &costEstimator{lib: &library.CostEstimator{SizeEstimator: &sizeEstimator{roots: roots, paramsSize: maxSize(params)}}}
}

func (e *costEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	return e.lib.EstimateSize(element)
}

func (e *costEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if function == myApplesFunction {
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: 1 + maxApplesEstimate},
			ResultSize:   &checker.SizeEstimate{Min: 0, Max: maxApplesEstimate},
		}
	}
	switch overloadID {
	case overloads.IntToString, overloads.UintToString, overloads.DoubleToString, overloads.BoolToString:
		// cel-go leaves the size of string(n) unknown, so that
		// 'count: ' + string(n) would estimate as unbounded; a number is
		// at most 32 characters.
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: 1},
			ResultSize:   &checker.SizeEstimate{Min: 1, Max: 32},
		}
	}
	return e.lib.EstimateCallCost(function, overloadID, target, args)
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
