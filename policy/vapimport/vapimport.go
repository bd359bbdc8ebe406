// Package vapimport converts ValidatingAdmissionPolicies, with their
// bindings and param objects, into the equivalent policies of this webhook
// (policy-webhook import-vap). Pure: it reads decoded documents and returns
// specs, and says what of a ValidatingAdmissionPolicy it could not carry.
package vapimport

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Document is one object read from a file, as JSON, with where it came from
// for messages ("file: document 2").
type Document struct {
	Where string
	Raw   []byte
}

// Policy is one ValidatingAdmissionPolicy under one of its bindings,
// converted.
type Policy struct {
	// Name is the ValidatingAdmissionPolicy's name, with "-<binding>" when
	// it has several bindings among the input.
	Name string
	// From says what it was converted from, as an annotation does.
	From string
	Spec v1alpha1.PolicySpec
}

// Result is what Convert made of its input.
type Result struct {
	// Policies in the order of their bindings in the input.
	Policies []Policy
	// NotCarried names what the converted policies leave out of the
	// originals (a resource other than Pods and MyApples, an audit
	// annotation, ...) or a binding that could not be converted at all:
	// the converted policies do not judge as the originals did.
	NotCarried []string
	// Notes name differences that leave the verdicts alone, such as a
	// validation's reason (our refusals are always 403 Forbidden).
	Notes []string
}

// FromAnnotation on a converted policy names what it was converted from.
const FromAnnotation = "policy.example.com/imported-from"

// Kinds of the objects Convert reads.
const (
	group       = admissionregistrationv1.GroupName
	kindPolicy  = "ValidatingAdmissionPolicy"
	kindBinding = "ValidatingAdmissionPolicyBinding"
)

type vap struct {
	where string
	obj   admissionregistrationv1.ValidatingAdmissionPolicy
}

type binding struct {
	where string
	obj   admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Convert reads ValidatingAdmissionPolicies, their bindings and the objects
// their paramRefs may name (any other object) from docs, and converts each
// binding with its policy. An error is a document that cannot be read as
// the object it says it is; what can be read but not carried is in the
// Result.
func Convert(docs []Document) (*Result, error) {
	var (
		policies []vap
		bindings []binding
		others   []*unstructured.Unstructured
	)
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal(d.Raw, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: not a Kubernetes object: %w", d.Where, err)
		}
		gv := u.GroupVersionKind()
		isAdmission := gv.Group == group && (gv.Version == "v1" || gv.Version == "v1beta1")
		switch {
		case isAdmission && gv.Kind == kindPolicy:
			// v1beta1 has v1's fields, so one type reads both.
			var p vap
			p.where = d.Where
			if err := yaml.UnmarshalStrict(d.Raw, &p.obj); err != nil {
				return nil, fmt.Errorf("%s: reading %s: %w", d.Where, kindPolicy, err)
			}
			policies = append(policies, p)
		case isAdmission && gv.Kind == kindBinding:
			var b binding
			b.where = d.Where
			if err := yaml.UnmarshalStrict(d.Raw, &b.obj); err != nil {
				return nil, fmt.Errorf("%s: reading %s: %w", d.Where, kindBinding, err)
			}
			bindings = append(bindings, b)
		default:
			others = append(others, u)
		}
	}

	res := &Result{}
	byName := map[string]*vap{}
	bound := map[string]int{}
	for i := range policies {
		p := &policies[i]
		if _, dup := byName[p.obj.Name]; dup {
			return nil, fmt.Errorf("%s: %s %q appears twice", p.where, kindPolicy, p.obj.Name)
		}
		byName[p.obj.Name] = p
	}
	for _, b := range bindings {
		bound[b.obj.Spec.PolicyName]++
	}
	for _, p := range policies {
		if bound[p.obj.Name] == 0 {
			res.NotCarried = append(res.NotCarried, fmt.Sprintf("%s: %s %s has no binding among the input, so it judges nothing: not converted",
				p.where, kindPolicy, p.obj.Name))
		}
	}
	for _, b := range bindings {
		p, ok := byName[b.obj.Spec.PolicyName]
		if !ok {
			res.NotCarried = append(res.NotCarried, fmt.Sprintf("%s: %s %s binds %s %q, which is not among the input: not converted",
				b.where, kindBinding, b.obj.Name, kindPolicy, b.obj.Spec.PolicyName))
			continue
		}
		c := &conversion{policy: p, binding: b, others: others}
		name := p.obj.Name
		if bound[p.obj.Name] > 1 {
			name += "-" + b.obj.Name
		}
		spec, ok := c.convert()
		res.NotCarried = append(res.NotCarried, c.notCarried...)
		res.Notes = append(res.Notes, c.notes...)
		if ok {
			res.Policies = append(res.Policies, Policy{
				Name: name,
				From: fmt.Sprintf("%s %s, %s %s", kindPolicy, p.obj.Name, kindBinding, b.obj.Name),
				Spec: spec,
			})
		}
	}
	return res, nil
}

// conversion converts one policy under one binding, collecting what it
// cannot carry.
type conversion struct {
	policy     *vap
	binding    binding
	others     []*unstructured.Unstructured
	notCarried []string
	notes      []string
}

func (c *conversion) notCarry(format string, args ...any) {
	c.notCarried = append(c.notCarried, fmt.Sprintf("%s: %s %s (binding %s): ", c.policy.where, kindPolicy, c.policy.obj.Name, c.binding.obj.Name)+
		fmt.Sprintf(format, args...))
}

func (c *conversion) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf("%s: %s %s: ", c.policy.where, kindPolicy, c.policy.obj.Name)+fmt.Sprintf(format, args...))
}

// convert returns the converted spec, and false when nothing worth
// enforcing could be made of it (it matches no Pods nor MyApples, or its
// params are not to be had).
func (c *conversion) convert() (v1alpha1.PolicySpec, bool) {
	ps, bs := &c.policy.obj.Spec, &c.binding.obj.Spec
	var spec v1alpha1.PolicySpec
	spec.Enforcement = c.enforcement(bs.ValidationActions)

	ops := c.coverage("spec.matchConstraints", ps.MatchConstraints, true)
	if bs.MatchResources != nil && len(bs.MatchResources.ResourceRules) > 0 {
		ops = intersect(ops, c.coverage("binding spec.matchResources", bs.MatchResources, false))
	} else if bs.MatchResources != nil {
		c.excluded("binding spec.matchResources", bs.MatchResources)
	}
	kinds := judgedKinds(ops)
	if len(kinds) == 0 {
		c.notCarry("it matches neither Pods (v1 pods) nor MyApples (stable.example.com/v1 myapples), the only kinds this webhook judges: not converted")
		return spec, false
	}
	spec.Match.Kinds = kinds
	var nsSel, objSel []*metav1.LabelSelector
	if mc := ps.MatchConstraints; mc != nil {
		nsSel, objSel = append(nsSel, mc.NamespaceSelector), append(objSel, mc.ObjectSelector)
	}
	if mr := bs.MatchResources; mr != nil {
		nsSel, objSel = append(nsSel, mr.NamespaceSelector), append(objSel, mr.ObjectSelector)
	}
	spec.Match.NamespaceSelector = and(nsSel...)
	spec.Match.ObjectSelector = and(objSel...)

	if ps.ParamKind != nil {
		params, ok := c.params(ps.ParamKind, bs.ParamRef)
		if !ok {
			return spec, false
		}
		spec.Params = params
	}
	for _, v := range ps.Variables {
		spec.Variables = append(spec.Variables, v1alpha1.Variable{Name: v.Name, Expression: v.Expression})
	}
	for _, m := range ps.MatchConditions {
		spec.MatchConditions = append(spec.MatchConditions, v1alpha1.MatchCondition{Name: m.Name, Expression: m.Expression})
	}
	if cond := operationCondition(ops, kinds); cond != "" {
		spec.MatchConditions = append(spec.MatchConditions, v1alpha1.MatchCondition{
			Name: uniqueName("operations", spec.MatchConditions), Expression: cond,
		})
	}
	for i, v := range ps.Validations {
		spec.Validations = append(spec.Validations, v1alpha1.Validation{
			Expression:        v.Expression,
			Message:           v.Message,
			MessageExpression: v.MessageExpression,
		})
		if v.Reason != nil && *v.Reason != metav1.StatusReasonForbidden {
			c.note("spec.validations[%d].reason %s is not carried: this webhook refuses with 403 Forbidden", i, *v.Reason)
		}
	}
	if len(ps.AuditAnnotations) > 0 {
		c.notCarry("spec.auditAnnotations are not carried (%d of them): this webhook records its own audit annotations", len(ps.AuditAnnotations))
	}
	if ps.FailurePolicy != nil && *ps.FailurePolicy == admissionregistrationv1.Ignore {
		ignore := v1alpha1.Ignore
		spec.FailurePolicy = &ignore
	}
	return spec, true
}

// enforcement maps validationActions: Deny wins, then Warn; Audit alone is
// Audit. (Deny or Warn with Audit is recorded anyway: this webhook logs and
// counts every violation.)
func (c *conversion) enforcement(actions []admissionregistrationv1.ValidationAction) v1alpha1.Enforcement {
	switch {
	case slices.Contains(actions, admissionregistrationv1.Deny):
		return v1alpha1.Deny
	case slices.Contains(actions, admissionregistrationv1.Warn):
		return v1alpha1.Warn
	case slices.Contains(actions, admissionregistrationv1.Audit):
		return v1alpha1.Audit
	}
	c.notCarry("binding spec.validationActions is empty (the API server refuses such a binding): converted as Deny")
	return v1alpha1.Deny
}

// opSet is the operations under which a kind is judged.
type opSet map[admissionregistrationv1.OperationType]bool

// ops this webhook is called for.
var judgedOps = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}

// coverage reads which of our kinds a MatchResources covers, under which
// operations. What it covers beyond them is not carried.
func (c *conversion) coverage(where string, mr *admissionregistrationv1.MatchResources, required bool) map[string]opSet {
	out := map[string]opSet{}
	if mr == nil {
		if required {
			c.notCarry("%s is missing: it matches nothing", where)
		}
		return out
	}
	for i, r := range mr.ResourceRules {
		at := fmt.Sprintf("%s.resourceRules[%d]", where, i)
		if len(r.ResourceNames) > 0 {
			c.notCarry("%s.resourceNames is not carried: the rule is left out", at)
			continue
		}
		kinds, other := ruleKinds(r.Rule)
		for _, o := range other {
			c.notCarry("%s matches %s, which this webhook does not judge", at, o)
		}
		for _, k := range kinds {
			if out[k] == nil {
				out[k] = opSet{}
			}
			for _, op := range r.Operations {
				switch op {
				case admissionregistrationv1.OperationAll:
					for _, j := range judgedOps {
						out[k][j] = true
					}
					c.notCarry("%s: operations DELETE and CONNECT of %ss are not carried: this webhook judges CREATE and UPDATE", at, k)
				case admissionregistrationv1.Create, admissionregistrationv1.Update:
					out[k][op] = true
				default:
					c.notCarry("%s: operation %s of %ss is not carried: this webhook judges CREATE and UPDATE", at, op, k)
				}
			}
		}
	}
	c.excluded(where, mr)
	return out
}

// excluded: exclusions of our kinds are not carried (those of other kinds
// need not be).
func (c *conversion) excluded(where string, mr *admissionregistrationv1.MatchResources) {
	for i, r := range mr.ExcludeResourceRules {
		if kinds, _ := ruleKinds(r.Rule); len(kinds) > 0 {
			c.notCarry("%s.excludeResourceRules[%d] excludes %s: exclusions are not carried", where, i, strings.Join(kinds, " and "))
		}
	}
}

// ruleKinds returns our kinds a rule covers, and what else it covers.
func ruleKinds(r admissionregistrationv1.Rule) (kinds, other []string) {
	has := map[string]bool{}
	seen := map[string]bool{}
	addOther := func(s string) {
		if !seen[s] {
			seen[s] = true
			other = append(other, s)
		}
	}
	versionOK := slices.Contains(r.APIVersions, "v1") || slices.Contains(r.APIVersions, "*")
	namespaced := r.Scope == nil || *r.Scope != admissionregistrationv1.ClusterScope
	for _, g := range r.APIGroups {
		for _, res := range r.Resources {
			name, sub, _ := strings.Cut(res, "/")
			for _, k := range []struct{ kind, group, resource string }{
				{policy.KindPod, "", policy.ResourcePods},
				{policy.KindMyApple, policy.GroupMyApple, policy.ResourceApples},
			} {
				if (g == k.group || g == "*") && (name == k.resource || name == "*") && versionOK && namespaced {
					switch {
					case sub == "" || (k.kind == policy.KindPod && sub == policy.SubResEphemeral):
						has[k.kind] = true
					default:
						addOther(k.resource + "/" + sub)
					}
				}
			}
			switch {
			case name == "*" && (g == "" || g == "*"):
				addOther(fmt.Sprintf("every resource of API group %q", g))
			case name == "*":
				if g != policy.GroupMyApple {
					addOther(fmt.Sprintf("every resource of API group %q", g))
				}
			case !((g == "" || g == "*") && name == policy.ResourcePods) && !((g == policy.GroupMyApple || g == "*") && name == policy.ResourceApples):
				addOther(fmt.Sprintf("%s in API group %q", res, g))
			}
		}
	}
	for _, k := range []string{policy.KindPod, policy.KindMyApple} {
		if has[k] {
			kinds = append(kinds, k)
		}
	}
	return kinds, other
}

func intersect(a, b map[string]opSet) map[string]opSet {
	out := map[string]opSet{}
	for k, ops := range a {
		for op := range ops {
			if b[k][op] {
				if out[k] == nil {
					out[k] = opSet{}
				}
				out[k][op] = true
			}
		}
	}
	return out
}

func judgedKinds(ops map[string]opSet) []string {
	var kinds []string
	for _, k := range []string{policy.KindPod, policy.KindMyApple} {
		if len(ops[k]) > 0 {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// operationCondition is a matchCondition that keeps out the operations the
// original did not match; empty when it matched both CREATE and UPDATE.
func operationCondition(ops map[string]opSet, kinds []string) string {
	only := func(k string) string {
		if len(ops[k]) == len(judgedOps) {
			return ""
		}
		for _, op := range judgedOps {
			if ops[k][op] {
				return fmt.Sprintf("request.operation == '%s'", op)
			}
		}
		return ""
	}
	if len(kinds) == 1 || only(kinds[0]) == only(kinds[1]) {
		return only(kinds[0])
	}
	var parts []string
	for _, k := range kinds {
		cond := only(k)
		if cond == "" {
			cond = "true"
		}
		parts = append(parts, fmt.Sprintf("(request.kind.kind == '%s' && %s)", k, cond))
	}
	return strings.Join(parts, " || ")
}

func uniqueName(base string, taken []v1alpha1.MatchCondition) string {
	name := base
	for i := 2; slices.ContainsFunc(taken, func(m v1alpha1.MatchCondition) bool { return m.Name == name }); i++ {
		name = fmt.Sprintf("%s%d", base, i)
	}
	return name
}

// and is the selector that matches what every one of sels matches; nil
// when none selects anything. matchLabels of all but the first become
// matchExpressions, so that two values of one key select nothing, as both
// selectors together do.
func and(sels ...*metav1.LabelSelector) *metav1.LabelSelector {
	var out *metav1.LabelSelector
	for _, s := range sels {
		if s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0) {
			continue
		}
		if out == nil {
			out = s.DeepCopy()
			continue
		}
		keys := make([]string, 0, len(s.MatchLabels))
		for k := range s.MatchLabels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{s.MatchLabels[k]},
			})
		}
		out.MatchExpressions = append(out.MatchExpressions, s.MatchExpressions...)
	}
	return out
}

// params finds the one object paramRef names among the input and returns it
// whole, as the API server gives it to expressions, without the metadata
// the API server writes.
func (c *conversion) params(kind *admissionregistrationv1.ParamKind, ref *admissionregistrationv1.ParamRef) (*apiextensionsv1.JSON, bool) {
	if ref == nil {
		c.notCarry("the policy has a paramKind and the binding no paramRef: not converted")
		return nil, false
	}
	var sel labels.Selector
	if ref.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(ref.Selector)
		if err != nil {
			c.notCarry("binding spec.paramRef.selector: %v: not converted", err)
			return nil, false
		}
		sel = s
	}
	var found []*unstructured.Unstructured
	for _, o := range c.others {
		if o.GetAPIVersion() != kind.APIVersion || o.GetKind() != kind.Kind {
			continue
		}
		if ref.Namespace != "" && o.GetNamespace() != ref.Namespace {
			continue
		}
		if (ref.Name != "" && o.GetName() != ref.Name) || (sel != nil && !sel.Matches(labels.Set(o.GetLabels()))) {
			continue
		}
		found = append(found, o)
	}
	what := fmt.Sprintf("%s %s", kind.APIVersion, kind.Kind)
	if ref.Name != "" {
		what += " " + ref.Name
	} else {
		what += " selected by " + metav1.FormatLabelSelector(ref.Selector)
	}
	if ref.Namespace != "" {
		what += " in namespace " + ref.Namespace
	}
	if ref.Namespace == "" && slices.ContainsFunc(found, func(o *unstructured.Unstructured) bool { return o.GetNamespace() != "" }) {
		c.notCarry("params %s are read from the namespace of each object judged (paramRef.namespace is empty): not converted", what)
		return nil, false
	}
	switch len(found) {
	case 0:
		c.notCarry("params %s are not among the input: not converted", what)
		return nil, false
	case 1:
	default:
		c.notCarry("paramRef selects %d objects (%s): a policy per param object is not carried: not converted", len(found), what)
		return nil, false
	}
	obj := found[0].DeepCopy()
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink"} {
		unstructured.RemoveNestedField(obj.Object, "metadata", f)
	}
	raw, err := json.Marshal(obj.Object)
	if err != nil {
		c.notCarry("params %s: %v: not converted", what, err)
		return nil, false
	}
	return &apiextensionsv1.JSON{Raw: raw}, true
}
