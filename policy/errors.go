package policy

import (
	"fmt"
	"strings"
)

// FieldError is one thing wrong with a policy, named by its field path
// (`pods.allowedRegistries[0]`) so the author knows where to look.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// FieldErrors is every problem found in one policy. Authors fix all of them
// in one go, so parsing and validation collect rather than stop at the first.
type FieldErrors []*FieldError

func (l FieldErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// prefixed returns the list with every field path put under prefix, such
// as "policy.yaml" for a ConfigMap or "spec" for an AdmissionPolicy.
func (l FieldErrors) prefixed(prefix string, sep string) FieldErrors {
	out := make(FieldErrors, len(l))
	for i, e := range l {
		f := prefix
		if e.Field != "" {
			f = prefix + sep + e.Field
		}
		out[i] = &FieldError{Field: f, Detail: e.Detail}
	}
	return out
}

// capped keeps the first n problems and says how many more there were.
func (l FieldErrors) capped(n int) FieldErrors {
	if len(l) <= n {
		return l
	}
	return append(l[:n:n], &FieldError{Detail: fmt.Sprintf("and %d more problems", len(l)-n)})
}

func (l *FieldErrors) add(field, format string) {
	*l = append(*l, &FieldError{Field: field, Detail: format})
}
