package cel

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"k8s.io/apiserver/pkg/cel/common"
)

// The values below are k8s.io/apiserver/pkg/cel/common.UnstructuredToVal's
// objects and lists, typed by the same schemas and holding the same data,
// with the reads expressions do most made cheap: a field of an object
// (object.spec), an element of a list (the containers of a loop).
// UnstructuredToVal's object unescapes every field name read with a regular
// expression and allocates a closure per object; on a loop over containers
// that was a third of the time. Everything else (equality, with the list
// types' semantics, concatenation, conversions, iteration over an object's
// keys) is UnstructuredToVal's own value, built when first needed.

// val wraps v, typed by s, for expressions.
func val(v any, s *cachedSchema) ref.Val {
	switch s.shape {
	case shapeObject:
		if m, ok := v.(map[string]any); ok {
			return &objectVal{value: m, schema: s}
		}
	case shapeObjectList:
		if l, ok := v.([]any); ok {
			return &listVal{elements: l, schema: s}
		}
	}
	return common.UnstructuredToVal(v, s)
}

// objectVal is an object whose schema lists its properties.
type objectVal struct {
	value  map[string]any
	schema *cachedSchema
	full   traits.Mapper
}

var _ traits.Mapper = (*objectVal)(nil)

func (o *objectVal) unstructured() traits.Mapper {
	if o.full == nil {
		o.full = common.UnstructuredToVal(o.value, o.schema).(traits.Mapper)
	}
	return o.full
}

// Find reads a field as UnstructuredToVal's object does: a field the
// schema does not have, or a null, is absent. A name holding "__" may be
// escaped (__dash__, __dot__) and goes the slow way.
func (o *objectVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok || strings.Contains(string(k), "__") {
		return o.unstructured().Find(key)
	}
	v, ok := o.value[string(k)]
	if !ok || v == nil {
		return nil, false
	}
	prop, ok := o.schema.props[string(k)]
	if !ok {
		return nil, false
	}
	return val(v, prop.(*cachedSchema)), true
}

func (o *objectVal) Get(key ref.Val) ref.Val      { return getBy(o, key) }
func (o *objectVal) Contains(key ref.Val) ref.Val { return containsBy(o, key) }

// getBy and containsBy are a map's Get and Contains in terms of its
// Find, as common.UnstructuredToVal's object has them.
func getBy(m interface{ Find(ref.Val) (ref.Val, bool) }, key ref.Val) ref.Val {
	if v, found := m.Find(key); found {
		return v
	}
	return types.ValOrErr(key, "no such key: %v", key)
}

func containsBy(m interface{ Find(ref.Val) (ref.Val, bool) }, key ref.Val) ref.Val {
	v, found := m.Find(key)
	if v != nil && types.IsUnknownOrError(v) {
		return v
	}
	return types.Bool(found)
}

func (o *objectVal) Equal(other ref.Val) ref.Val { return o.unstructured().Equal(unwrap(other)) }
func (o *objectVal) Iterator() traits.Iterator   { return o.unstructured().Iterator() }
func (o *objectVal) Size() ref.Val               { return o.unstructured().Size() }
func (o *objectVal) Type() ref.Type              { return types.MapType }
func (o *objectVal) Value() any                  { return o.value }
func (o *objectVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.MapType {
		return o
	}
	return o.unstructured().ConvertToType(t)
}
func (o *objectVal) ConvertToNative(t reflect.Type) (any, error) {
	return o.unstructured().ConvertToNative(t)
}

// listVal is a list of objects whose schema lists their properties.
type listVal struct {
	elements []any
	schema   *cachedSchema // the list's
	full     traits.Lister
}

var _ traits.Lister = (*listVal)(nil)

func (l *listVal) unstructured() traits.Lister {
	if l.full == nil {
		l.full = common.UnstructuredToVal(l.elements, l.schema).(traits.Lister)
	}
	return l.full
}

func (l *listVal) item(i int) ref.Val { return val(l.elements[i], l.schema.items.(*cachedSchema)) }

func (l *listVal) Get(idx ref.Val) ref.Val {
	i, ok := idx.(types.Int)
	if !ok {
		return types.ValOrErr(idx, "unsupported index: %v", idx)
	}
	if i < 0 || int64(i) >= int64(len(l.elements)) {
		return types.NewErr("index out of bounds: %v", idx)
	}
	return l.item(int(i))
}

func (l *listVal) Size() ref.Val               { return types.Int(len(l.elements)) }
func (l *listVal) Iterator() traits.Iterator   { return &listIterator{list: l} }
func (l *listVal) Contains(v ref.Val) ref.Val  { return l.unstructured().Contains(v) }
func (l *listVal) Add(other ref.Val) ref.Val   { return l.unstructured().Add(unwrap(other)) }
func (l *listVal) Equal(other ref.Val) ref.Val { return l.unstructured().Equal(unwrap(other)) }
func (l *listVal) Type() ref.Type              { return types.ListType }
func (l *listVal) Value() any                  { return l.elements }
func (l *listVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.ListType {
		return l
	}
	return l.unstructured().ConvertToType(t)
}
func (l *listVal) ConvertToNative(t reflect.Type) (any, error) {
	return l.unstructured().ConvertToNative(t)
}

type listIterator struct {
	list *listVal
	i    int
}

func (it *listIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.list.elements)) }
func (it *listIterator) Next() ref.Val {
	if it.i >= len(it.list.elements) {
		return types.NewErr("no more elements")
	}
	v := it.list.item(it.i)
	it.i++
	return v
}
func (it *listIterator) Type() ref.Type        { return types.IteratorType }
func (it *listIterator) Value() any            { return nil }
func (it *listIterator) Equal(ref.Val) ref.Val { return types.NewErr("an iterator has no equality") }
func (it *listIterator) ConvertToType(ref.Type) ref.Val {
	return types.NewErr("an iterator converts to nothing")
}
func (it *listIterator) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("an iterator converts to nothing, not %v", t)
}

// unwrap gives UnstructuredToVal's value for one of ours, which its
// equality and concatenation expect on both sides.
func unwrap(v ref.Val) ref.Val {
	switch v := v.(type) {
	case *objectVal:
		return v.unstructured()
	case *listVal:
		return v.unstructured()
	case *requestVal:
		return v.unstructured()
	}
	return v
}

// requestVal is `request`. Its string and bool fields, which expressions
// read most (request.operation), are read without building the whole
// value, a map of maps that the type adapter builds by reflection; that
// map is built when an expression uses more of it.
type requestVal struct {
	r    *Request
	full traits.Mapper
}

var _ traits.Mapper = (*requestVal)(nil)

func (v *requestVal) unstructured() traits.Mapper {
	if v.full == nil {
		v.full = requestMap(v.r).(traits.Mapper)
	}
	return v.full
}

func (v *requestVal) Find(key ref.Val) (ref.Val, bool) {
	if k, ok := key.(types.String); ok {
		switch k {
		case "name":
			return types.String(v.r.Name), true
		case "namespace":
			return types.String(v.r.Namespace), true
		case "operation":
			return types.String(v.r.Operation), true
		case "subResource":
			return types.String(v.r.SubResource), true
		case "dryRun":
			return types.Bool(v.r.DryRun), true
		}
	}
	return v.unstructured().Find(key)
}

func (v *requestVal) Get(key ref.Val) ref.Val      { return getBy(v, key) }
func (v *requestVal) Contains(key ref.Val) ref.Val { return containsBy(v, key) }

func (v *requestVal) Equal(other ref.Val) ref.Val { return v.unstructured().Equal(unwrap(other)) }
func (v *requestVal) Iterator() traits.Iterator   { return v.unstructured().Iterator() }
func (v *requestVal) Size() ref.Val               { return v.unstructured().Size() }
func (v *requestVal) Type() ref.Type              { return types.MapType }
func (v *requestVal) Value() any                  { return v.unstructured().Value() }
func (v *requestVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.MapType {
		return v
	}
	return v.unstructured().ConvertToType(t)
}
func (v *requestVal) ConvertToNative(t reflect.Type) (any, error) {
	return v.unstructured().ConvertToNative(t)
}
