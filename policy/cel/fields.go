package cel

import (
	"slices"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// Fields is what a policy's expressions can read of `object` and
// `oldObject`: the paths they select, found when they compile, so that an
// admission decodes those paths and skips the rest of the object (most of
// a Pod: env, volumes, managed fields). A nil *Fields reads nothing.
//
// Decoding an object to its Fields must give every expression the value it
// would read in the whole object. The rule that keeps that true: a path
// that an expression only selects through (object.spec in
// object.spec.hostNetwork) keeps the members selected and, for a list,
// every element, each cut to what is selected of it; a value used in any
// other way (compared, passed to a function, iterated as a map, tested by
// has(), made part of a new value) is Whole, kept entire. Anything the
// analysis cannot follow makes the value it starts from Whole.
//
// Fields is immutable once Compile returns; a program whose expressions
// read nothing of the object has nil Fields.
type Fields struct {
	whole    bool
	children map[string]*Fields // members of an object, by JSON name
	items    *Fields            // every element of a list
}

// All reads everything: the Fields of a value kept whole.
func All() *Fields { return &Fields{whole: true} }

// Whole says whether f's value is kept entire.
func (f *Fields) Whole() bool { return f != nil && f.whole }

// Child is what is read of the member name of f's object; nil if nothing.
func (f *Fields) Child(name string) *Fields {
	switch {
	case f == nil:
		return nil
	case f.whole:
		return f
	}
	return f.children[name]
}

// Items is what is read of each element of f's list; nil if nothing but
// their number.
func (f *Fields) Items() *Fields {
	switch {
	case f == nil:
		return nil
	case f.whole:
		return f
	}
	return f.items
}

// Expects says what JSON kind expressions read f's value as: '{' when
// they select members of it, '[' when they read its elements, 0 when
// neither or both. A value of the other kind (a malformed object) is kept
// whole, so that expressions meet what they would in the whole object.
func (f *Fields) Expects() byte {
	switch {
	case f == nil || f.whole:
		return 0
	case f.children != nil && f.items == nil:
		return '{'
	case f.items != nil && f.children == nil:
		return '['
	}
	return 0
}

// Union is what f or g read, sharing neither.
func Union(f, g *Fields) *Fields {
	if f == nil && g == nil {
		return nil
	}
	out := &Fields{}
	out.merge(f)
	out.merge(g)
	return out
}

func (f *Fields) merge(g *Fields) {
	switch {
	case g == nil || f.whole:
		return
	case g.whole:
		f.setWhole()
		return
	}
	for name, c := range g.children {
		f.child(name).merge(c)
	}
	if g.items != nil {
		f.item().merge(g.items)
	}
}

func (f *Fields) setWhole() {
	f.whole, f.children, f.items = true, nil, nil
}

func (f *Fields) child(name string) *Fields {
	if f.whole {
		return f
	}
	c := f.children[name]
	if c == nil {
		if f.children == nil {
			f.children = map[string]*Fields{}
		}
		c = &Fields{}
		f.children[name] = c
	}
	return c
}

func (f *Fields) item() *Fields {
	if f.whole {
		return f
	}
	if f.items == nil {
		f.items = &Fields{}
	}
	return f.items
}

// String lists the paths f reads, for tests and logs:
// "metadata.labels spec.containers[].image".
func (f *Fields) String() string {
	if f == nil {
		return ""
	}
	var paths []string
	f.paths("", &paths)
	return strings.Join(paths, " ")
}

func (f *Fields) paths(prefix string, out *[]string) {
	if f.whole || (f.children == nil && f.items == nil) {
		if prefix == "" {
			prefix = "."
		}
		if !f.whole {
			prefix += "?" // its kind and number only
		}
		*out = append(*out, prefix)
		return
	}
	names := make([]string, 0, len(f.children))
	for name := range f.children {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		f.children[name].paths(p, out)
	}
	if f.items != nil {
		f.items.paths(prefix+"[]", out)
	}
}

// fieldAnalysis finds the Fields of one program's expressions.
type fieldAnalysis struct {
	root *Fields
	// vars are the variables whose expression is a path into the object
	// (variables.containers: object.spec.containers), by name.
	vars map[string]*Fields
}

// scope binds comprehension variables, innermost first.
type scope struct {
	name   string
	fields *Fields // nil: the variable is not a path into the object
	up     *scope
}

func (s *scope) lookup(name string) (*Fields, bool) {
	for ; s != nil; s = s.up {
		if s.name == name {
			return s.fields, true
		}
	}
	return nil, false
}

// variable records what a variable's expression reads; when the expression
// is a path into the object, reading the variable reads that path.
func (a *fieldAnalysis) variable(name string, ast *celast.AST) {
	if f := a.path(ast, ast.Expr(), nil); f != nil {
		a.vars[name] = f
	}
}

// expression records what an expression reads.
func (a *fieldAnalysis) expression(ast *celast.AST) {
	a.use(a.path(ast, ast.Expr(), nil))
}

// use is a value read whole.
func (a *fieldAnalysis) use(f *Fields) {
	if f != nil {
		f.setWhole()
	}
}

// path analyses e and returns the Fields whose value e is, when e is a path
// into the object (object.spec, c.image in a loop over containers); nil
// for any other value. Every path e uses otherwise is made Whole.
func (a *fieldAnalysis) path(ast *celast.AST, e celast.Expr, sc *scope) *Fields {
	switch e.Kind() {
	case celast.IdentKind:
		name := e.AsIdent()
		if f, ok := sc.lookup(name); ok {
			return f
		}
		switch name {
		case varObject, varOldObject:
			return a.root
		case varVariables:
			// The variables read as one value (not as variables.name).
			for _, f := range a.vars {
				a.use(f)
			}
		}
		return nil

	case celast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == varVariables {
			if _, shadowed := sc.lookup(varVariables); !shadowed {
				return a.vars[sel.FieldName()]
			}
		}
		f := a.select_(a.path(ast, sel.Operand(), sc), sel.FieldName())
		if sel.IsTestOnly() {
			a.use(f) // has(): its presence, kept simply by keeping it
			return nil
		}
		return f

	case celast.CallKind:
		return a.call(ast, e, sc)

	case celast.ComprehensionKind:
		return a.comprehension(ast, e.AsComprehension(), sc)

	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			a.use(a.path(ast, el, sc))
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			a.use(a.path(ast, me.Key(), sc))
			a.use(a.path(ast, me.Value(), sc))
		}
	case celast.StructKind:
		for _, fe := range e.AsStruct().Fields() {
			a.use(a.path(ast, fe.AsStructField().Value(), sc))
		}
	}
	return nil
}

// select_ is the member name of f. A name holding "__" may be an escaped
// one (x__dash__y for x-y): f is kept whole rather than guess.
func (a *fieldAnalysis) select_(f *Fields, name string) *Fields {
	if f == nil {
		return nil
	}
	if strings.Contains(name, "__") {
		a.use(f)
		return nil
	}
	return f.child(name)
}

func (a *fieldAnalysis) call(ast *celast.AST, e celast.Expr, sc *scope) *Fields {
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.OptSelect: // object.?spec
		if len(args) == 2 && args[1].Kind() == celast.LiteralKind {
			if name, ok := args[1].AsLiteral().(types.String); ok {
				return a.select_(a.path(ast, args[0], sc), string(name))
			}
		}
	case operators.Index, operators.OptIndex: // object.metadata.labels['app'], containers[0]
		if len(args) == 2 {
			f := a.path(ast, args[0], sc)
			if args[1].Kind() == celast.LiteralKind {
				if name, ok := args[1].AsLiteral().(types.String); ok {
					return a.select_(f, string(name))
				}
			}
			a.use(a.path(ast, args[1], sc))
			if f != nil && isList(ast, args[0]) {
				return f.item()
			}
			a.use(f) // a key computed at run time: any member
			return nil
		}
	case "size":
		// The number of elements of a list, which the list keeps whatever
		// is cut of them.
		var operand celast.Expr
		switch {
		case call.IsMemberFunction() && len(args) == 0:
			operand = call.Target()
		case !call.IsMemberFunction() && len(args) == 1:
			operand = args[0]
		}
		if operand != nil && isList(ast, operand) {
			f := a.path(ast, operand, sc)
			if f != nil && !f.whole {
				f.item()
			}
			return nil
		}
	}
	if call.IsMemberFunction() {
		a.use(a.path(ast, call.Target(), sc))
	}
	for _, arg := range args {
		a.use(a.path(ast, arg, sc))
	}
	return nil
}

// comprehension follows a loop over a list (all, exists, map, filter):
// the loop variable is each element. A loop over a map reads its keys, so
// the map is kept whole.
func (a *fieldAnalysis) comprehension(ast *celast.AST, c celast.ComprehensionExpr, sc *scope) *Fields {
	rng := a.path(ast, c.IterRange(), sc)
	var elem *Fields
	if rng != nil {
		if isList(ast, c.IterRange()) {
			elem = rng.item()
		} else {
			a.use(rng)
		}
	}
	inner := sc
	if c.HasIterVar2() {
		// (index, element) over a list, (key, value) over a map.
		inner = &scope{name: c.IterVar(), up: inner}
		inner = &scope{name: c.IterVar2(), fields: elem, up: inner}
	} else {
		inner = &scope{name: c.IterVar(), fields: elem, up: inner}
	}

	// The accumulator changes as the loop runs: not a path.
	a.use(a.path(ast, c.AccuInit(), sc))
	inner = &scope{name: c.AccuVar(), up: inner}
	a.use(a.path(ast, c.LoopCondition(), inner))
	a.use(a.path(ast, c.LoopStep(), inner))
	return a.path(ast, c.Result(), &scope{name: c.AccuVar(), up: sc})
}

// isList says whether the checked type of e is a list.
func isList(ast *celast.AST, e celast.Expr) bool {
	t := ast.GetType(e.ID())
	return t != nil && t.Kind() == types.ListKind
}

// Cut is v, decoded JSON (maps, slices, scalars), cut to f: what a decoder
// reading only f must give (review's does), and so what expressions may
// be given in place of the whole object.
//   - f Whole, or v a scalar: v.
//   - v an object: its members f has a Child for, each cut to it; when f
//     reads elements of a list only (Expects '['), v whole.
//   - v a list: every element cut to f.Items(); when f selects members
//     only (Expects '{'), v whole.
//   - f nil: an empty object or list (only its kind is read).
//
// Cut shares v's scalars and whole values; it does not change v.
func (f *Fields) Cut(v any) any {
	if f.Whole() {
		return v
	}
	switch v := v.(type) {
	case map[string]any:
		if f.Expects() == '[' {
			return v
		}
		out := map[string]any{}
		if f == nil {
			return out
		}
		for name, c := range f.children {
			if m, ok := v[name]; ok {
				out[name] = c.Cut(m)
			}
		}
		return out
	case []any:
		if f.Expects() == '{' {
			return v
		}
		if f == nil {
			return []any{}
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = f.items.Cut(e)
		}
		return out
	}
	return v
}
