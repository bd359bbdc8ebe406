package review

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// cutValue decodes a JSON value cut to fields (cel.Fields.Cut): members
// no expression reads are skipped by the tokenizer, never decoded, which
// on a Pod is most of it. What is kept decodes as utiljson decodes
// unstructured objects (FuzzDecodeCut holds it to that): maps, slices,
// strings, bools, nil, and numbers by utiljson's rule.
type cutValue struct {
	fields *cel.Fields
	value  any
	kind   jsontext.Kind
}

func (c *cutValue) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	c.kind = dec.PeekKind()
	v, err := cut(dec, c.fields)
	if err != nil {
		return err
	}
	c.value = v
	return nil
}

// cut reads the next value of dec cut to f: members f has nothing for are
// skipped, values it reads whole are decoded whole (f.Child and f.Items
// of a whole f are f), and so is an object or list of the kind f does not
// expect.
func cut(dec *jsontext.Decoder, f *cel.Fields) (any, error) {
	switch kind := dec.PeekKind(); {
	case kind == '{' && f.Expects() == '[', kind == '[' && f.Expects() == '{':
		return cut(dec, cel.All())
	case kind == '{':
		return cutObject(dec, f)
	case kind == '[':
		return cutList(dec, f)
	}
	return scalar(dec)
}

func cutObject(dec *jsontext.Decoder, f *cel.Fields) (any, error) {
	if f == nil {
		// Nothing of it is read but that it is an object.
		if err := dec.SkipValue(); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for dec.PeekKind() != '}' {
		// The name as its raw JSON string: read unquoted, it would be a
		// string allocated for every member, skipped ones included.
		quoted, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		var name []byte
		if bytes.IndexByte(quoted, '\\') < 0 {
			name = quoted[1 : len(quoted)-1]
		} else if name, err = jsontext.AppendUnquote(nil, quoted); err != nil {
			return nil, err
		}
		c := f.Child(string(name))
		if c == nil {
			if err := dec.SkipValue(); err != nil {
				return nil, err
			}
			continue
		}
		key := string(name)
		v, err := cut(dec, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out[key] = v
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return out, nil
}

func cutList(dec *jsontext.Decoder, f *cel.Fields) (any, error) {
	if f == nil {
		// Nothing of it is read but that it is a list.
		if err := dec.SkipValue(); err != nil {
			return nil, err
		}
		return []any{}, nil
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	items := f.Items()
	out := []any{}
	for dec.PeekKind() != ']' {
		v, err := cut(dec, items)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", len(out), err)
		}
		out = append(out, v)
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return out, nil
}

// scalar decodes the next value, a string, number, bool or null.
func scalar(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), nil
	case 't', 'f':
		return tok.Bool(), nil
	case '0':
		return number(tok.String())
	}
	return nil, nil // null
}

// number is utiljson's (sigs.k8s.io/json's) rule: an integer that fits is
// an int64, anything else a float64.
func number(s string) (any, error) {
	if !strings.Contains(s, ".") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("cannot unmarshal number %s into float64", s)
	}
	return f, nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '[':
		return "array"
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	}
	return "value"
}
