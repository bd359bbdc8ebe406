package cel

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// Apple is a MyApple as cluster.myApples(namespace) gives it.
type Apple struct {
	Name     string
	Color    string
	Size     string
	Quantity int64
}

// Tally is how many MyApples a group holds and the sum of their quantities.
type Tally struct {
	Count    int64
	Quantity int64
}

// GroupBy says which MyApples a tally counts: all those of a namespace, or
// those of one color or one size.
type GroupBy int

// The groupings of cluster.myAppleStats.
const (
	ByNamespace GroupBy = iota
	ByColor
	BySize
)

// key is the value of the field a grouping groups by.
func (g GroupBy) key(a *Apple) string {
	switch g {
	case ByColor:
		return a.Color
	case BySize:
		return a.Size
	}
	return ""
}

// AppleList is the MyApples of a namespace sorted by name, with the CEL
// value of each built once: cluster.myApples hands it out without copying.
// It is immutable.
type AppleList struct {
	apples []Apple
	vals   []ref.Val
}

// Len is the number of MyApples listed.
func (l AppleList) Len() int { return len(l.apples) }

// Apples is the list as Go values; callers must not modify it.
func (l AppleList) Apples() []Apple { return l.apples }

// Apples is the MyApples of one namespace kept ready for cluster.*: the CEL
// value of each is built when it is set, and the counts and quantity sums
// (in all, by color, by size) are kept up to date as MyApples are set and
// removed, so that an expression reading them costs the same at 10 or
// 10,000 MyApples. It is not safe for concurrent use: its holder (the
// informer cache, check's Cluster) guards it.
type Apples struct {
	byName  map[string]*appleObj
	all     Tally
	byColor map[string]Tally
	bySize  map[string]Tally
	// list is built on the first read after a change and shared by the
	// reads until the next; nil when stale.
	list *AppleList
}

// NewApples returns an empty set.
func NewApples() *Apples {
	return &Apples{byName: map[string]*appleObj{}, byColor: map[string]Tally{}, bySize: map[string]Tally{}}
}

// Set adds a MyApple or replaces the one of the same name.
func (s *Apples) Set(a Apple) {
	if old, ok := s.byName[a.Name]; ok {
		if old.Apple == a {
			return // a resync: nothing to rebuild
		}
		s.count(&old.Apple, -1)
	}
	s.byName[a.Name] = &appleObj{Apple: a}
	s.count(&a, 1)
	s.list = nil
}

// Remove forgets a MyApple, returning it.
func (s *Apples) Remove(name string) (Apple, bool) {
	old, ok := s.byName[name]
	if !ok {
		return Apple{}, false
	}
	delete(s.byName, name)
	s.count(&old.Apple, -1)
	s.list = nil
	return old.Apple, true
}

// count adds a MyApple to its tallies (sign 1) or takes it out (-1).
func (s *Apples) count(a *Apple, sign int64) {
	add := func(t Tally) Tally {
		return Tally{Count: t.Count + sign, Quantity: t.Quantity + sign*a.Quantity}
	}
	s.all = add(s.all)
	for _, g := range []struct {
		m   map[string]Tally
		key string
	}{{s.byColor, a.Color}, {s.bySize, a.Size}} {
		if t := add(g.m[g.key]); t.Count > 0 {
			g.m[g.key] = t
		} else {
			delete(g.m, g.key)
		}
	}
}

// Get is the MyApple of that name.
func (s *Apples) Get(name string) (Apple, bool) {
	e, ok := s.byName[name]
	return e.Apple, ok
}

// Len is the number of MyApples.
func (s *Apples) Len() int { return len(s.byName) }

// List is the MyApples sorted by name, shared until the next change.
func (s *Apples) List() AppleList {
	if s.list == nil {
		entries := slices.SortedFunc(maps.Values(s.byName), func(a, b *appleObj) int { return strings.Compare(a.Name, b.Name) })
		l := AppleList{apples: make([]Apple, len(entries)), vals: make([]ref.Val, len(entries))}
		for i, e := range entries {
			l.apples[i], l.vals[i] = e.Apple, e
		}
		s.list = &l
	}
	return *s.list
}

// BuiltList is List when it needs no building (nothing changed since the
// last List), so that a holder guarding Apples with a RWMutex reads it
// under the read lock.
func (s *Apples) BuiltList() (AppleList, bool) {
	if s.list == nil {
		return AppleList{}, false
	}
	return *s.list, true
}

// Tally is the count and quantity of the MyApples whose field by is value
// (all of them for ByNamespace), leaving out the one named except.
func (s *Apples) Tally(by GroupBy, value, except string) Tally {
	var t Tally
	switch by {
	case ByNamespace:
		t = s.all
	case ByColor:
		t = s.byColor[value]
	case BySize:
		t = s.bySize[value]
	}
	if e, ok := s.byName[except]; ok && except != "" && by.key(&e.Apple) == value {
		t.Count--
		t.Quantity -= e.Quantity
	}
	return t
}

// Groups lists the colors or sizes the MyApples have, sorted.
func (s *Apples) Groups(by GroupBy) []string {
	switch by {
	case ByColor:
		return slices.Sorted(maps.Keys(s.byColor))
	case BySize:
		return slices.Sorted(maps.Keys(s.bySize))
	}
	return nil
}

// appleObj is a MyApple as CEL reads it, an object of the appleType
// fields. It is its own CEL value, so that keeping it ready costs no more
// memory than the Apple; it is never modified once made.
type appleObj struct{ Apple }

var (
	_ traits.Indexer     = (*appleObj)(nil)
	_ traits.FieldTester = (*appleObj)(nil)
)

func (a *appleObj) Get(field ref.Val) ref.Val {
	name, ok := field.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(field)
	}
	switch name {
	case "name":
		return types.String(a.Name)
	case "color":
		return types.String(a.Color)
	case "size":
		return types.String(a.Size)
	case "quantity":
		return types.Int(a.Quantity)
	}
	return types.NewErr("no such key: %s", name)
}

func (a *appleObj) IsSet(field ref.Val) ref.Val {
	return types.Bool(!types.IsError(a.Get(field)))
}

func (a *appleObj) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("a MyApple has no native form")
}

func (a *appleObj) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return appleObjType
	}
	return types.NewErr("a MyApple cannot be converted to %s", t.TypeName())
}

func (a *appleObj) Equal(other ref.Val) ref.Val {
	o, ok := other.(*appleObj)
	return types.Bool(ok && o.Apple == a.Apple)
}

func (a *appleObj) Type() ref.Type { return appleObjType }
func (a *appleObj) Value() any     { return a.Apple }

var appleObjType = types.NewObjectType(appleTypeName)
