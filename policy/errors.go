package policy

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Problems with a policy are a field.ErrorList, collected rather than
// stopping at the first so authors fix all in one go. Each Detail reads
// after its path; ErrorLine renders the pair.

// FieldError is a problem at path, described by detail. The bad value is
// left out: detail quotes what matters of it, and it can be long.
func FieldError(path, detail string) *field.Error {
	return &field.Error{Type: field.ErrorTypeInvalid, Field: path, BadValue: field.OmitValueType{}, Detail: detail}
}

// ErrorLine is one problem as users read it: `path: detail`.
func ErrorLine(e *field.Error) string {
	if _, own := e.BadValue.(field.OmitValueType); !own {
		return e.Error() // from apimachinery's validation, in its words
	}
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// ErrorText joins every problem of a list on one line.
func ErrorText(list field.ErrorList) string {
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = ErrorLine(e)
	}
	return strings.Join(lines, "; ")
}

// Prefixed returns the list with every field path put under prefix, such
// as "policy.yaml" (sep ": ") for a ConfigMap or "spec" (sep ".") for an
// AdmissionPolicy.
func Prefixed(list field.ErrorList, prefix, sep string) field.ErrorList {
	if len(list) == 0 {
		return nil
	}
	out := make(field.ErrorList, len(list))
	for i, e := range list {
		c := *e
		c.Field = prefix
		if e.Field != "" {
			c.Field = prefix + sep + e.Field
		}
		out[i] = &c
	}
	return out
}

// MaxProblems is how many problems of one policy are reported, so that a
// denial stays readable.
const MaxProblems = 50

// Capped keeps the first n problems and says how many more there were.
func Capped(list field.ErrorList, n int) field.ErrorList {
	if len(list) <= n {
		return list
	}
	return append(list[:n:n], FieldError("", fmt.Sprintf("and %d more problems", len(list)-n)))
}

// InvalidError is a policy source that does not compile, with every
// problem found in it.
type InvalidError struct {
	Source Source
	Errs   field.ErrorList
}

// Error lists every problem, one a line when there are several:
//
//	ConfigMap team-a/registries is not a valid policy: policy.yaml: pods.allowedRegistrie: unknown field
func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source.String())
	if e.Source.Kind == SourcePolicyException {
		b.WriteString(" is not a valid exception: ")
	} else {
		b.WriteString(" is not a valid policy: ")
	}
	if len(e.Errs) == 1 {
		b.WriteString(ErrorLine(e.Errs[0]))
		return b.String()
	}
	b.WriteString(strconv.Itoa(len(e.Errs)))
	b.WriteString(" problems:")
	for _, fe := range e.Errs {
		b.WriteString("\n- ")
		b.WriteString(ErrorLine(fe))
	}
	return b.String()
}

// Problems is the error's list on one line, without the source.
func (e *InvalidError) Problems() string { return ErrorText(e.Errs) }
