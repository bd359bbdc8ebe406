package carrier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// ParseSpec reads a policy spec from YAML or JSON, strictly: an unknown or
// duplicated field and a value of the wrong type are errors with their field
// path, because a typo silently ignored is a rule silently not enforced.
// The spec is also validated; all problems come back together.
func ParseSpec(data []byte) (*v1alpha1.PolicySpec, field.ErrorList) {
	if err := checkBounds(data); err != nil {
		return nil, field.ErrorList{err}
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, field.ErrorList{policy.FieldError("", "invalid YAML: "+strings.TrimPrefix(err.Error(), "error converting YAML to JSON: yaml: "))}
	}
	if t := strings.TrimSpace(string(js)); t == "null" || t == "" {
		return nil, field.ErrorList{policy.FieldError("", "empty policy: set pods or myApples rules")}
	}
	// YAMLToJSON keeps the last of duplicated keys and drops every document
	// after the first, so the strict decoder never sees either: look at the
	// YAML itself.
	errs := yamlStructure(data)
	spec := &v1alpha1.PolicySpec{}
	decodeErrs, typed, complete := decodeStrict(js, spec)
	errs = append(errs, decodeErrs...)
	if complete {
		for _, e := range policy.ValidateSpec(spec) {
			switch {
			case e.Field == "" && len(errs) > 0:
				// "no rules": they may well sit under a misspelt key.
			case underAny(e.Field, typed):
				// The value was replaced after its type error was reported.
			default:
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, policy.Capped(errs, policy.MaxProblems)
	}
	return spec, nil
}

// yamlStructure reports what YAML-to-JSON conversion would silently lose: a
// key set twice in one mapping, and documents after the first.
func yamlStructure(data []byte) field.ErrorList {
	var errs field.ErrorList
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	var doc yaml3.Node
	if err := dec.Decode(&doc); err != nil {
		return nil // the syntax was judged by YAMLToJSON already
	}
	duplicateKeys(&doc, "", &errs)
	for {
		var next yaml3.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !emptyDocument(&next) {
			errs = append(errs, policy.FieldError("", "more than one YAML document (---): a policy is a single document"))
			break
		}
	}
	return errs
}

func emptyDocument(n *yaml3.Node) bool {
	for n.Kind == yaml3.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return n.Kind == 0 || n.Kind == yaml3.DocumentNode && len(n.Content) == 0 || n.Kind == yaml3.ScalarNode && n.Tag == "!!null"
}

func duplicateKeys(n *yaml3.Node, path string, errs *field.ErrorList) {
	switch n.Kind {
	case yaml3.DocumentNode:
		for _, c := range n.Content {
			duplicateKeys(c, path, errs)
		}
	case yaml3.MappingNode:
		seen := map[string]*yaml3.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml3.ScalarNode || k.Tag == "!!merge" {
				continue
			}
			p := childPath(path, k.Value)
			if first, ok := seen[k.Value]; ok {
				where := fmt.Sprintf("lines %d and %d", first.Line, k.Line)
				if first.Line == k.Line {
					where = fmt.Sprintf("line %d, columns %d and %d", k.Line, first.Column, k.Column)
				}
				*errs = append(*errs, policy.FieldError(p, "duplicate field ("+where+")"))
			} else {
				seen[k.Value] = k
			}
			duplicateKeys(v, p, errs)
		}
	case yaml3.SequenceNode:
		for i, c := range n.Content {
			duplicateKeys(c, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
	// Aliases are not followed: what they point to was walked where it stands.
}

// childPath names a field the way the schema does (pods.requiredLabels)
// and a map key the way Kubernetes does (matchLabels[example.com/team]).
func childPath(path, key string) string {
	if !isIdentifier(key) {
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// decodeStrict decodes js into spec and reports unknown fields and values of
// the wrong type, each with its path from the spec root. typed holds the
// paths of the values of the wrong type; complete says whether spec holds
// the rest of the document.
func decodeStrict(js []byte, spec *v1alpha1.PolicySpec) (errs field.ErrorList, typed map[string]bool, complete bool) {
	strict, err := kjson.UnmarshalStrict(js, spec)
	if err != nil {
		// The strict decoder stops at the first value of the wrong type,
		// before it reports unknown fields: replace every such value by a
		// zero of the right type, and decode that instead.
		var tree any
		d := json.NewDecoder(bytes.NewReader(js))
		d.UseNumber()
		if d.Decode(&tree) != nil {
			return field.ErrorList{otherDecodeError(err)}, nil, false
		}
		c := typeChecker{paths: map[string]bool{}}
		tree = c.check(reflect.TypeFor[v1alpha1.PolicySpec](), tree, "")
		errs, typed = c.errs, c.paths
		fixed, merr := json.Marshal(tree)
		if merr != nil {
			return append(errs, otherDecodeError(merr)), typed, false
		}
		*spec = v1alpha1.PolicySpec{}
		if strict, err = kjson.UnmarshalStrict(fixed, spec); err != nil {
			return append(errs, otherDecodeError(err)), typed, false
		}
	}
	for _, se := range strict {
		var fe kjson.FieldError
		if errors.As(se, &fe) {
			kind, _, _ := strings.Cut(se.Error(), " \"")
			errs = append(errs, policy.FieldError(fe.FieldPath(), kind))
			continue
		}
		errs = append(errs, policy.FieldError("", se.Error()))
	}
	return errs, typed, true
}

func otherDecodeError(err error) *field.Error {
	if ok, off := kjson.SyntaxErrorOffset(err); ok {
		return policy.FieldError("", fmt.Sprintf("invalid JSON at offset %d: %v", off, err))
	}
	return policy.FieldError("", strings.TrimPrefix(err.Error(), "json: "))
}

// typeChecker walks a generic JSON document along a Go type, as
// encoding/json would decode it, replacing every value of the wrong type by
// the zero value of the right one. Unknown fields are left to the strict
// decoder.
type typeChecker struct {
	errs  field.ErrorList
	paths map[string]bool
}

func (c *typeChecker) check(t reflect.Type, v any, path string) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // null decodes into anything, as nothing
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return c.wrong(t, v, path)
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if ft, ok := fields[k]; ok {
				m[k] = c.check(ft, m[k], childPath(path, k))
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return c.wrong(t, v, path)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			m[k] = c.check(t.Elem(), m[k], path+"["+k+"]")
		}
	case reflect.Slice, reflect.Array:
		l, ok := v.([]any)
		if !ok {
			return c.wrong(t, v, path)
		}
		for i := range l {
			l[i] = c.check(t.Elem(), l[i], fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return c.wrong(t, v, path)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return c.wrong(t, v, path)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return c.wrong(t, v, path)
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return c.wrong(t, v, path)
		}
	}
	return v
}

// wrong records a value of the wrong type and returns its replacement.
func (c *typeChecker) wrong(t reflect.Type, v any, path string) any {
	got := jsonKind(v)
	if n, ok := v.(json.Number); ok && t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64 {
		got += " " + string(n)
	}
	detail := fmt.Sprintf("must be %s, not %s", typeName(t.Kind()), got)
	if path == "" {
		detail = "must be an object holding the policy, not " + got
	}
	c.errs = append(c.errs, policy.FieldError(path, detail))
	c.paths[path] = true
	return zeroJSON(t)
}

// jsonFields maps the JSON names of a struct's fields to their types,
// fields of embedded structs included, as encoding/json sees them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// jsonKind names a generic JSON value the way json.UnmarshalTypeError does.
func jsonKind(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "null"
}

func zeroJSON(t reflect.Type) any {
	switch t.Kind() {
	case reflect.String:
		return ""
	case reflect.Bool:
		return false
	case reflect.Slice, reflect.Array:
		return []any{}
	case reflect.Struct, reflect.Map:
		return map[string]any{}
	}
	return json.Number("0")
}

// underAny reports whether field is one of paths or lies under one,
// looking up its ancestors: a policy can hold thousands of wrong values.
func underAny(field string, paths map[string]bool) bool {
	for {
		if paths[field] {
			return true
		}
		i := strings.LastIndexAny(field, ".[")
		if i <= 0 {
			return false
		}
		field = field[:i]
	}
}

func typeName(k reflect.Kind) string {
	switch {
	case k >= reflect.Int && k <= reflect.Uint64:
		return "an integer"
	case k == reflect.Float32, k == reflect.Float64:
		return "a number"
	case k == reflect.Bool:
		return "a boolean (true or false)"
	case k == reflect.String:
		return "a string"
	case k == reflect.Slice, k == reflect.Array:
		return "a list"
	case k == reflect.Struct, k == reflect.Map, k == reflect.Pointer:
		return "an object"
	}
	return "a " + k.String()
}
