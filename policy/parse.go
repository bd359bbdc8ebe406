package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// ConfigMapDataKey is the ConfigMap data key that carries a policy spec.
const ConfigMapDataKey = "policy.yaml"

// maxTypeErrors bounds how many values of the wrong type one parse reports;
// past it the author has enough to fix.
const maxTypeErrors = 32

// ParseSpec reads a policy spec from YAML or JSON, strictly: an unknown or
// duplicated field and a value of the wrong type are errors with their field
// path, because a typo silently ignored is a rule silently not enforced.
// The spec is also validated; all problems come back together as FieldErrors.
func ParseSpec(data []byte) (*v1alpha1.PolicySpec, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, FieldErrors{{Detail: "invalid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: yaml: ")}}
	}
	if t := strings.TrimSpace(string(js)); t == "null" || t == "" {
		return nil, FieldErrors{{Detail: "empty policy: set pods or myApples rules"}}
	}
	// YAMLToJSON keeps the last of duplicated keys and drops every document
	// after the first, so the strict decoder never sees either: look at the
	// YAML itself.
	errs := yamlStructure(data)
	spec := &v1alpha1.PolicySpec{}
	decodeErrs, typed, complete := decodeStrict(js, spec)
	errs = append(errs, decodeErrs...)
	if complete {
		for _, e := range ValidateSpec(spec) {
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
		return nil, errs
	}
	return spec, nil
}

// yamlStructure reports what YAML-to-JSON conversion would silently lose: a
// key set twice in one mapping, and documents after the first.
func yamlStructure(data []byte) FieldErrors {
	var errs FieldErrors
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
			errs.add("", "more than one YAML document (---): a policy is a single document")
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

func duplicateKeys(n *yaml3.Node, path string, errs *FieldErrors) {
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
				errs.add(p, "duplicate field ("+where+")")
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
// the wrong type, each with its path from the spec root. To report every
// wrong value, not only the first, each one is replaced by the zero value of
// the right type and the document decoded again. typed lists the paths of
// the replaced values; complete says whether spec now holds the document.
func decodeStrict(js []byte, spec *v1alpha1.PolicySpec) (errs FieldErrors, typed []string, complete bool) {
	var tree any
	for range maxTypeErrors {
		*spec = v1alpha1.PolicySpec{}
		strict, err := kjson.UnmarshalStrict(js, spec)
		if err == nil {
			for _, se := range strict {
				var fe kjson.FieldError
				if errors.As(se, &fe) {
					kind, _, _ := strings.Cut(se.Error(), " \"")
					errs.add(fe.FieldPath(), kind)
					continue
				}
				errs.add("", se.Error())
			}
			return errs, typed, true
		}
		var te *json.UnmarshalTypeError
		if err2 := json.Unmarshal(js, &v1alpha1.PolicySpec{}); !errors.As(err2, &te) {
			return append(errs, otherDecodeError(err)), typed, false
		}
		if tree == nil {
			d := json.NewDecoder(bytes.NewReader(js))
			d.UseNumber()
			if d.Decode(&tree) != nil {
				return append(errs, otherDecodeError(err)), typed, false
			}
		}
		paths := replaceWrongType(&tree, te)
		if len(paths) == 0 {
			// The standard library's path does not lead to the value:
			// report what it says and stop.
			return append(errs, &FieldError{Field: te.Field, Detail: typeDetail(te)}), typed, false
		}
		for _, p := range paths {
			errs.add(p, typeDetail(te))
		}
		typed = append(typed, paths...)
		if js, err = json.Marshal(tree); err != nil {
			return append(errs, otherDecodeError(err)), typed, false
		}
	}
	return errs, typed, false
}

func typeDetail(te *json.UnmarshalTypeError) string {
	if te.Field == "" {
		return fmt.Sprintf("must be an object holding the policy, not %s", te.Value)
	}
	return fmt.Sprintf("must be %s, not %s", typeName(te.Type.Kind().String()), te.Value)
}

func otherDecodeError(err error) *FieldError {
	if ok, off := kjson.SyntaxErrorOffset(err); ok {
		return &FieldError{Detail: fmt.Sprintf("invalid JSON at offset %d: %v", off, err)}
	}
	return &FieldError{Detail: strings.TrimPrefix(err.Error(), "json: ")}
}

// replaceWrongType finds, in the generic form of the document, the values
// a type error is about, replaces each with the zero value of the type the
// schema wants, and returns their paths. The standard library's error names
// struct fields only (match.kinds), so list items (match.kinds[1]) and map
// entries (matchLabels[team]) are found by their JSON kind.
func replaceWrongType(root *any, te *json.UnmarshalTypeError) []string {
	var segs []string
	if te.Field != "" {
		segs = strings.Split(te.Field, ".")
	}
	got, _, _ := strings.Cut(te.Value, " ")
	zero := zeroJSON(te.Type)
	var paths []string
	var walk func(v *any, segs []string, path string)
	walk = func(v *any, segs []string, path string) {
		if len(segs) > 0 {
			switch x := (*v).(type) {
			case map[string]any:
				child, ok := x[segs[0]]
				if !ok {
					return
				}
				walk(&child, segs[1:], childPath(path, segs[0]))
				x[segs[0]] = child
			case []any:
				for i := range x {
					walk(&x[i], segs, fmt.Sprintf("%s[%d]", path, i))
				}
			}
			return
		}
		if jsonKind(*v) == got {
			*v = zero
			paths = append(paths, path)
			return
		}
		switch x := (*v).(type) {
		case []any:
			for i := range x {
				if jsonKind(x[i]) == got {
					x[i] = zero
					paths = append(paths, fmt.Sprintf("%s[%d]", path, i))
				}
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if jsonKind(x[k]) == got {
					x[k] = zero
					paths = append(paths, path+"["+k+"]")
				}
			}
		}
	}
	walk(root, segs, "")
	return paths
}

// jsonKind names a generic JSON value the way json.UnmarshalTypeError does.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
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
	return ""
}

func zeroJSON(t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
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

// underAny reports whether field is one of paths or lies under one.
func underAny(field string, paths []string) bool {
	for _, p := range paths {
		if field == p || strings.HasPrefix(field, p) && (field[len(p)] == '.' || field[len(p)] == '[') {
			return true
		}
	}
	return false
}

func typeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case kind == "bool":
		return "a boolean (true or false)"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "a list"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	}
	return "a " + kind
}
