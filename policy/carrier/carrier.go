// Package carrier reads policy from the objects that carry it, a labelled
// ConfigMap's policy.yaml and an AdmissionPolicy's spec, into compiled
// policies, so that a policy means the same wherever it is read.
package carrier

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// SourceOf names the policy source an object is: a ConfigMap labelled as a
// policy, or an AdmissionPolicy; ok is false for anything else. An object
// still without a name is named by its generateName.
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

// Compiler compiles the policies objects carry. It builds the CEL
// environments on first use and keeps them, so share one rather than make
// one per policy. Safe for concurrent use; the zero Compiler is not usable.
type Compiler struct {
	cel    func() (*cel.Compiler, error)
	limits Limits
}

// Limits bound the policies a Compiler reads and what they may cost.
type Limits struct {
	// CEL bounds expressions; zero fields are cel.DefaultLimits.
	CEL cel.Limits
	// PoliciesPerNamespace is how many policy ConfigMaps a namespace other
	// than the policy namespace may hold: each adds to what every admission
	// there costs. 0 is DefaultPoliciesPerNamespace.
	PoliciesPerNamespace int
}

// DefaultPoliciesPerNamespace bounds a namespace's own policies unless
// configured otherwise: far more than a team needs, few enough that their
// CEL fits the namespace's budget.
const DefaultPoliciesPerNamespace = 32

// Option configures New.
type Option func(*Compiler)

// WithLimits sets the limits policies are held to.
func WithLimits(l Limits) Option {
	return func(c *Compiler) { c.limits = l }
}

// New returns a Compiler whose CEL environments are built when a policy
// first needs them.
func New(opts ...Option) *Compiler {
	c := &Compiler{}
	for _, o := range opts {
		o(c)
	}
	c.limits.CEL = c.limits.CEL.WithDefaults()
	if c.limits.PoliciesPerNamespace <= 0 {
		c.limits.PoliciesPerNamespace = DefaultPoliciesPerNamespace
	}
	l := c.limits.CEL
	c.cel = sync.OnceValues(func() (*cel.Compiler, error) { return cel.NewCompilerWithLimits(l) })
	return c
}

// Limits are the limits the Compiler holds policies to, defaults filled in.
func (c *Compiler) Limits() Limits { return c.limits }

// TooManyPolicies is the problem with a policy ConfigMap new to its
// namespace, which holds the policy ConfigMaps named existing: "" when it
// may have one more, or src is one of them (it may always be changed). The
// policy namespace's are cluster-wide, and not counted.
func (c *Compiler) TooManyPolicies(src policy.Source, policyNamespace string, existing []string) string {
	if src.Kind != policy.SourceConfigMap || src.Namespace == policyNamespace ||
		len(existing) < c.limits.PoliciesPerNamespace || slices.Contains(existing, src.Name) {
		return ""
	}
	n := len(existing)
	return fmt.Sprintf("namespace %s already holds %d policy ConfigMaps, the most a namespace may hold (every one adds to what each admission there costs): delete one, or merge this policy into one of them",
		src.Namespace, n)
}

// WithMyApplesBound is c with CEL costs estimated at the most MyApples a
// namespace holds now (see cel.Compiler.WithMyApplesBound): what the
// admission of a policy object uses, so that an expression is estimated
// at the sizes it will meet.
func (c *Compiler) WithMyApplesBound(bound func() int) *Compiler {
	return &Compiler{limits: c.limits, cel: sync.OnceValues(func() (*cel.Compiler, error) {
		cc, err := c.cel()
		if err != nil {
			return nil, err
		}
		return cc.WithMyApplesBound(bound), nil
	})}
}

// Compile reads and compiles the policy an object carries, at Version(u).
// A policy that does not compile is a *policy.InvalidError (see
// CompileDocument).
func (c *Compiler) Compile(u *unstructured.Unstructured, policyNamespace string) (*policy.Policy, error) {
	src, doc, err := Document(u)
	if err != nil {
		return nil, err
	}
	return c.CompileDocument(src, policyNamespace, Version(u), doc)
}

// Version is the version of the policy an object carries: a ConfigMap's
// resourceVersion, an AdmissionPolicy's generation (moved by spec changes).
func Version(u *unstructured.Unstructured) string {
	if u.GetKind() == policy.SourceConfigMap {
		return u.GetResourceVersion()
	}
	return strconv.FormatInt(u.GetGeneration(), 10)
}

// Document returns the policy document an object carries: a ConfigMap's
// policy.yaml, or an AdmissionPolicy's spec as JSON. An object that carries
// no readable policy is an error (*policy.InvalidError for a policy carrier).
func Document(u *unstructured.Unstructured) (policy.Source, []byte, error) {
	src, ok := SourceOf(u)
	if !ok {
		return src, nil, fmt.Errorf("%s %s carries no policy", u.GetKind(), u.GetName())
	}
	var (
		doc  []byte
		errs field.ErrorList
	)
	if src.Kind == policy.SourceConfigMap {
		doc, errs = configMapDocument(u)
	} else {
		doc, errs = admissionPolicyDocument(u)
	}
	if len(errs) > 0 {
		return src, nil, &policy.InvalidError{Source: src, Errs: errs}
	}
	return src, doc, nil
}

// CompileDocument compiles the policy document of src (see Document) at
// version. A policy that does not compile is a *policy.InvalidError
// listing every problem, with field paths under policy.yaml or spec.
func (c *Compiler) CompileDocument(src policy.Source, policyNamespace, version string, doc []byte) (*policy.Policy, error) {
	prefix, sep := "spec", "."
	if src.Kind == policy.SourceConfigMap {
		prefix, sep = policy.ConfigMapDataKey, ": "
	}
	return c.compileDocument(src, policyNamespace, version, doc, prefix, sep)
}

func (c *Compiler) compileDocument(src policy.Source, policyNamespace, version string, doc []byte, prefix, sep string) (*policy.Policy, error) {
	var scope string
	if src.Kind == policy.SourceConfigMap {
		scope = policy.ConfigMapScope(src.Namespace, policyNamespace)
	}
	spec, errs := ParseSpec(doc)
	var opts []policy.CompileOption
	if len(errs) == 0 && cel.HasCEL(spec) {
		opt, cerrs := c.celOption(spec)
		errs = append(errs, cerrs...)
		opts = append(opts, opt)
	}
	var p *policy.Policy
	if len(errs) == 0 {
		p, errs = policy.Compile(src, scope, spec, opts...)
	}
	if len(errs) > 0 {
		return nil, &policy.InvalidError{Source: src, Errs: policy.Prefixed(errs, prefix, sep)}
	}
	p.Version = version
	return p, nil
}

// celOption gives policy.Compile the CEL compiler and the spec's params,
// decoded as the API server decodes JSON (int64 integers).
func (c *Compiler) celOption(spec *v1alpha1.PolicySpec) (policy.CompileOption, field.ErrorList) {
	cc, err := c.cel()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("building the CEL compiler: %w", err))}
	}
	var params any
	if spec.Params != nil && len(spec.Params.Raw) > 0 {
		if err := utiljson.Unmarshal(spec.Params.Raw, &params); err != nil {
			return nil, field.ErrorList{field.Invalid(field.NewPath("params"), field.OmitValueType{}, "cannot be decoded: "+err.Error())}
		}
	}
	return policy.WithCEL(cc, params), nil
}

// configMapDocument takes the policy a ConfigMap carries under policy.yaml.
func configMapDocument(u *unstructured.Unstructured) ([]byte, field.ErrorList) {
	raw, found, err := unstructured.NestedString(u.Object, "data", policy.ConfigMapDataKey)
	switch {
	case err != nil:
		return nil, field.ErrorList{policy.FieldError("data", err.Error())}
	case !found:
		return nil, field.ErrorList{policy.FieldError("data", fmt.Sprintf("missing key %q holding the policy", policy.ConfigMapDataKey))}
	}
	return []byte(raw), nil
}

// admissionPolicyDocument takes the spec of an AdmissionPolicy as JSON text,
// so that both carriers are held to the same strict parsing.
func admissionPolicyDocument(u *unstructured.Unstructured) ([]byte, field.ErrorList) {
	spec, ok := u.Object["spec"]
	if !ok || spec == nil {
		return nil, field.ErrorList{policy.FieldError("spec", "required")}
	}
	if m, ok := spec.(map[string]any); ok {
		if _, has := m[CandidateField]; has {
			// The candidate is a policy of its own (CandidateDocument):
			// the spec is read without it.
			rest := make(map[string]any, len(m)-1)
			for k, v := range m {
				if k != CandidateField {
					rest[k] = v
				}
			}
			spec = rest
		}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, field.ErrorList{policy.FieldError("spec", "cannot be encoded: "+err.Error())}
	}
	return raw, nil
}
