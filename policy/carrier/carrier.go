// Package carrier reads policy from the objects that carry it, a labelled
// ConfigMap's policy.yaml and an AdmissionPolicy's spec, into compiled
// policies. The live cache, the webhook's check of policy objects and
// `policy-webhook check` all read through it, so a policy means the same
// wherever it is read.
package carrier

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// SourceOf names the policy source an object is: a ConfigMap labelled as a
// policy, or an AdmissionPolicy. ok is false for anything else, which
// carries no policy. An object still without a name is named by its
// generateName.
func SourceOf(u *unstructured.Unstructured) (src policy.Source, ok bool) {
	name := u.GetName()
	if name == "" {
		name = u.GetGenerateName()
	}
	gvk := u.GroupVersionKind()
	switch {
	case gvk.Group == "" && gvk.Kind == policy.SourceConfigMap:
		if !policy.IsPolicyConfigMap(u.GetLabels()) {
			return src, false
		}
		return policy.Source{Kind: policy.SourceConfigMap, Namespace: u.GetNamespace(), Name: name}, true
	case gvk.Group == v1alpha1.GroupVersion.Group && gvk.Kind == policy.SourceAdmissionPolicy:
		return policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}, true
	}
	return src, false
}

// Compile reads and compiles the policy an object carries (see SourceOf),
// versioned by the ConfigMap's resourceVersion or the AdmissionPolicy's
// generation. A policy that does not compile is a *policy.InvalidError
// listing every problem, with field paths under policy.yaml or spec.
func Compile(u *unstructured.Unstructured, policyNamespace string) (*policy.Policy, error) {
	src, ok := SourceOf(u)
	if !ok {
		return nil, fmt.Errorf("%s %s carries no policy", u.GetKind(), u.GetName())
	}
	var (
		spec    *v1alpha1.PolicySpec
		errs    field.ErrorList
		scope   string
		version string
	)
	switch src.Kind {
	case policy.SourceConfigMap:
		scope = policy.ConfigMapScope(src.Namespace, policyNamespace)
		version = u.GetResourceVersion()
		spec, errs = configMapSpec(u)
	default:
		version = strconv.FormatInt(u.GetGeneration(), 10)
		spec, errs = admissionPolicySpec(u)
	}
	if len(errs) > 0 {
		return nil, &policy.InvalidError{Source: src, Errs: errs}
	}
	var opts []policy.CompileOption
	if cel.HasCEL(spec) {
		opt, cerrs := celOption(spec)
		errs = append(errs, cerrs...)
		opts = append(opts, opt)
	}
	var p *policy.Policy
	if len(errs) == 0 {
		p, errs = policy.Compile(src, scope, spec, opts...)
	}
	if len(errs) > 0 {
		prefix, sep := "spec", "."
		if src.Kind == policy.SourceConfigMap {
			prefix, sep = policy.ConfigMapDataKey, ": "
		}
		return nil, &policy.InvalidError{Source: src, Errs: policy.Prefixed(errs, prefix, sep)}
	}
	p.Version = version
	return p, nil
}

// compiler is the CEL compiler every policy read here shares: building one
// takes tens of milliseconds, and it is immutable once built.
var compiler = sync.OnceValues(cel.NewCompiler)

// celOption gives policy.Compile the shared compiler and the spec's params,
// decoded as the API server decodes JSON (int64 integers), which is what
// expressions expect of `params`.
func celOption(spec *v1alpha1.PolicySpec) (policy.CompileOption, field.ErrorList) {
	c, err := compiler()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("building the CEL compiler: %w", err))}
	}
	var params any
	if spec.Params != nil && len(spec.Params.Raw) > 0 {
		if err := utiljson.Unmarshal(spec.Params.Raw, &params); err != nil {
			return nil, field.ErrorList{field.Invalid(field.NewPath("params"), field.OmitValueType{}, "cannot be decoded: "+err.Error())}
		}
	}
	return policy.WithCEL(c, params), nil
}

// configMapSpec reads the policy a ConfigMap carries under policy.yaml.
// Field paths in errors start with "policy.yaml".
func configMapSpec(u *unstructured.Unstructured) (*v1alpha1.PolicySpec, field.ErrorList) {
	raw, found, err := unstructured.NestedString(u.Object, "data", policy.ConfigMapDataKey)
	switch {
	case err != nil:
		return nil, field.ErrorList{policy.FieldError("data", err.Error())}
	case !found:
		return nil, field.ErrorList{policy.FieldError("data", fmt.Sprintf("missing key %q holding the policy", policy.ConfigMapDataKey))}
	}
	spec, errs := ParseSpec([]byte(raw))
	if len(errs) > 0 {
		return nil, policy.Prefixed(errs, policy.ConfigMapDataKey, ": ")
	}
	return spec, nil
}

// admissionPolicySpec reads the spec of an AdmissionPolicy. Field paths in
// errors start with "spec".
func admissionPolicySpec(u *unstructured.Unstructured) (*v1alpha1.PolicySpec, field.ErrorList) {
	spec, ok := u.Object["spec"]
	if !ok || spec == nil {
		return nil, field.ErrorList{policy.FieldError("spec", "required")}
	}
	// The spec is parsed from its text, as a ConfigMap's is, so that both
	// carriers are held to the same strict reading.
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, field.ErrorList{policy.FieldError("spec", "cannot be encoded: "+err.Error())}
	}
	s, errs := ParseSpec(raw)
	if len(errs) > 0 {
		return nil, policy.Prefixed(errs, "spec", ".")
	}
	return s, nil
}
