package carrier

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/policy"
)

// CandidateField is the AdmissionPolicy spec field holding the candidate.
const CandidateField = "candidate"

// Candidate is the compiled candidate an object carries beside its policy.
type Candidate struct {
	// Policy is the candidate compiled, with the carrier's source and
	// version: it is judged in the spec's place, never beside it.
	Policy *policy.Policy
	// Hash identifies the candidate's document: 16 hex digits of its sha256.
	Hash string
}

// CandidateDocument returns the candidate an object carries: a ConfigMap's
// candidate.yaml, or an AdmissionPolicy's spec.candidate as JSON. ok is
// false when it carries none.
func CandidateDocument(u *unstructured.Unstructured) (src policy.Source, doc []byte, ok bool, err error) {
	src, isPolicy := SourceOf(u)
	if !isPolicy {
		return src, nil, false, nil
	}
	if src.Kind == policy.SourceConfigMap {
		raw, found, nerr := unstructured.NestedFieldNoCopy(u.Object, "data", policy.ConfigMapCandidateKey)
		switch {
		case nerr != nil:
			return src, nil, true, &policy.InvalidError{Source: src, Errs: field.ErrorList{policy.FieldError("data", nerr.Error())}}
		case !found:
			return src, nil, false, nil
		}
		s, isString := raw.(string)
		if !isString {
			return src, nil, true, &policy.InvalidError{Source: src, Errs: field.ErrorList{policy.FieldError(policy.ConfigMapCandidateKey, "must be a string")}}
		}
		return src, []byte(s), true, nil
	}
	spec, _ := u.Object["spec"].(map[string]any)
	cand, found := spec[CandidateField]
	if !found || cand == nil {
		return src, nil, false, nil
	}
	raw, merr := json.Marshal(cand)
	if merr != nil {
		return src, nil, true, &policy.InvalidError{Source: src, Errs: field.ErrorList{policy.FieldError("spec.candidate", "cannot be encoded: "+merr.Error())}}
	}
	return src, raw, true, nil
}

// CompileCandidate reads and compiles the candidate an object carries, at
// Version(u). ok is false when it carries none. An invalid candidate is a
// *policy.InvalidError with field paths under spec.candidate or
// candidate.yaml; it says nothing of the policy itself, whose version in
// force it never touches.
func (c *Compiler) CompileCandidate(u *unstructured.Unstructured, policyNamespace string) (cand *Candidate, ok bool, err error) {
	src, doc, ok, err := CandidateDocument(u)
	if !ok || err != nil {
		return nil, ok, err
	}
	prefix, sep := "spec."+CandidateField, "."
	if src.Kind == policy.SourceConfigMap {
		prefix, sep = policy.ConfigMapCandidateKey, ": "
	}
	p, err := c.compileDocument(src, policyNamespace, Version(u), doc, prefix, sep)
	if err != nil {
		return nil, true, err
	}
	return &Candidate{Policy: p, Hash: DocumentHash(doc)}, true, nil
}

// DocumentHash identifies a policy document: 16 hex digits of its sha256.
func DocumentHash(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:8])
}

// Validate compiles both the policy an object carries and its candidate,
// as the webhook does when the object is written: every problem of either
// comes back in one *policy.InvalidError. p is the policy compiled.
func (c *Compiler) Validate(u *unstructured.Unstructured, policyNamespace string) (*policy.Policy, error) {
	p, err := c.Compile(u, policyNamespace)
	_, _, cerr := c.CompileCandidate(u, policyNamespace)
	if cerr == nil {
		return p, err
	}
	var specInvalid, candInvalid *policy.InvalidError
	if !errors.As(cerr, &candInvalid) {
		return nil, cerr
	}
	if err == nil {
		return nil, cerr
	}
	if !errors.As(err, &specInvalid) {
		return nil, err
	}
	errs := append(append(field.ErrorList{}, specInvalid.Errs...), candInvalid.Errs...)
	return nil, &policy.InvalidError{Source: specInvalid.Source, Errs: policy.Capped(errs, policy.MaxProblems)}
}
