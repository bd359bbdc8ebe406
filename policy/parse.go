package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// ConfigMapDataKey is the ConfigMap data key that carries a policy spec.
const ConfigMapDataKey = "policy.yaml"

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
	spec := &v1alpha1.PolicySpec{}
	errs := decodeStrict(js, spec)
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := ValidateSpec(spec); len(errs) > 0 {
		return nil, errs
	}
	return spec, nil
}

// decodeStrict decodes js into v and reports unknown fields, duplicate
// fields and type mismatches, each with its path from the spec root.
func decodeStrict(js []byte, v any) FieldErrors {
	var errs FieldErrors
	strict, err := kjson.UnmarshalStrict(js, v)
	for _, se := range strict {
		var fe kjson.FieldError
		if errors.As(se, &fe) {
			kind, _, _ := strings.Cut(se.Error(), " \"")
			errs.add(fe.FieldPath(), kind)
			continue
		}
		errs.add("", se.Error())
	}
	if err != nil {
		errs = append(errs, typeError(js, v, err))
	}
	return errs
}

// typeError turns a decoding failure into a FieldError. The strict decoder
// does not expose its type errors, so the standard library, which does
// (with the full field path), decodes once more to name the field.
func typeError(js []byte, v any, err error) *FieldError {
	var te *json.UnmarshalTypeError
	if err2 := json.Unmarshal(js, v); errors.As(err2, &te) && te.Field != "" {
		return &FieldError{Field: te.Field, Detail: fmt.Sprintf("must be %s, not %s", typeName(te.Type.Kind().String()), te.Value)}
	}
	if ok, off := kjson.SyntaxErrorOffset(err); ok {
		return &FieldError{Detail: fmt.Sprintf("invalid JSON at offset %d: %v", off, err)}
	}
	return &FieldError{Detail: strings.TrimPrefix(err.Error(), "json: ")}
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
