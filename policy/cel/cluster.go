package cel

import (
	"errors"
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// Apple is a MyApple as cluster.myApples(namespace) gives it.
type Apple struct {
	Name     string
	Color    string
	Size     string
	Quantity int64
}

// Cluster is the cluster state expressions read through `cluster`, held in
// memory by the caller (the informer cache); it is never an API call.
type Cluster interface {
	// MyApples lists the MyApples of a namespace. The slice is the
	// caller's to give; expressions only read it.
	MyApples(namespace string) []Apple
}

const (
	clusterTypeName  = "policywebhook.Cluster"
	myApplesFunction = "myApples"
	// maxApplesEstimate is how many MyApples a namespace is assumed to hold
	// for cost estimation; more are evaluated all the same.
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

// clusterLib declares cluster.myApples(string) and binds it to the Cluster
// of the admission.
func clusterLib(apple *cel.Type) cel.EnvOption {
	return cel.Function(myApplesFunction,
		cel.MemberOverload("cluster_myApples_string",
			[]*cel.Type{clusterCELType, cel.StringType}, cel.ListType(apple),
			cel.BinaryBinding(myApples)))
}

func myApples(lhs, rhs ref.Val) ref.Val {
	cv, ok := lhs.(clusterVal)
	if !ok {
		return types.NewErr("myApples: no cluster")
	}
	ns, ok := rhs.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(rhs)
	}
	if cv.c == nil {
		return types.NewErr("cluster state is not available")
	}
	apples := cv.c.MyApples(string(ns))
	vals := make([]ref.Val, len(apples))
	for i, a := range apples {
		vals[i] = appleVal(a)
	}
	return types.NewRefValList(types.DefaultTypeAdapter, vals)
}

// appleVal is a MyApple as a CEL map with the appleType fields.
func appleVal(a Apple) ref.Val {
	return types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{
		types.String("name"):     types.String(a.Name),
		types.String("color"):    types.String(a.Color),
		types.String("size"):     types.String(a.Size),
		types.String("quantity"): types.Int(a.Quantity),
	})
}
