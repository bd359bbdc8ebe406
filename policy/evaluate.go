package policy

import (
	"errors"
	"slices"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Evaluate judges a request against every policy of the set that applies
// to it. cluster may be nil when no cluster state is known.
func (s *Set) Evaluate(req *Request, cluster Cluster) Decision {
	d := Decision{Allowed: true}
	ix := s.forKind(req.Kind)
	if ix == nil {
		return d
	}
	meta := req.Object()
	// An object being deleted is judged like any other: an UPDATE that only
	// removes finalizers has every violation forgiven (forgiveOld).
	e := evaluation{req: req, cluster: cluster, objLabels: meta.Labels}
	if req.Operation == Update {
		e.oldLabels, e.hasOld = req.oldLabels()
	}
	e.cur = facts{pod: req.Pod, apple: req.MyApple, images: s.images}
	// Cluster-wide policies first: the namespace's own then spend only
	// their part of the CEL budget, never the cluster's.
	for _, p := range ix.cluster {
		e.policy(p, &d)
	}
	for _, p := range ix.byNamespace[req.Namespace] {
		e.policy(p, &d)
	}
	if e.budget != nil {
		e.budget.Stop()
		e.outOfBudget(&d)
	}
	e.exceptIn(s, &d)
	e.judgeCandidates(s, &d)
	return d
}

// evaluation is the state of one request, shared by every policy it meets
// so that namespace labels are looked up and images parsed once.
type evaluation struct {
	req       *Request
	cluster   Cluster
	objLabels map[string]string
	oldLabels map[string]string // on UPDATE, of the object replaced
	hasOld    bool

	nsLoaded bool
	nsLabels map[string]string

	cur facts
	old *facts // on UPDATE, built when first needed

	// Built when a policy with CEL first applies; celOld is the old object
	// as if created, for forgiveness.
	celLoaded   bool
	celIn       *cel.Input
	celOld      *cel.Input
	celInputErr error

	// budget is the CEL budget of the whole request, started by the first
	// CEL program; exhaustedBy is the policy in which it ran out.
	budget      *cel.Budget
	exhaustedBy *Policy
}

func (e *evaluation) policy(p *Policy, d *Decision) {
	if !e.applies(p) {
		return
	}
	start := len(d.Violations)
	out := sink{d: d, p: p, ctrl: e.req.Controller}
	if e.rules(p, &e.cur, &out, true) {
		d.Applied = append(d.Applied, p)
	}
	if len(d.Violations) > start && e.req.Operation == Update {
		e.forgiveOld(p, d, start)
	}
	if p.Enforcement == v1alpha1.Deny && len(d.Violations) > start {
		d.Allowed = false
	}
}

func (e *evaluation) applies(p *Policy) bool {
	if slices.Contains(p.excluded, e.req.Namespace) {
		return false
	}
	if c := e.req.Controller; c != nil && !p.judgesController(c.Kind) {
		return false
	}
	// As for a webhook's own objectSelector, an UPDATE is judged when the
	// old object or the new one matches: dropping the label in the same
	// update must not take the object out of the policy.
	if p.objSelector != nil && !p.objSelector.Matches(labels.Set(e.objLabels)) &&
		(!e.hasOld || !p.objSelector.Matches(labels.Set(e.oldLabels))) {
		return false
	}
	if p.nsSelector != nil && !p.nsSelector.Matches(labels.Set(e.namespaceLabels())) {
		return false
	}
	return true
}

// namespaceLabels of the request's namespace. A namespace the cache has not
// seen yet still carries the label the API server always sets, so selectors
// on kubernetes.io/metadata.name keep working.
func (e *evaluation) namespaceLabels() map[string]string {
	if !e.nsLoaded {
		e.nsLoaded = true
		if e.cluster != nil {
			e.nsLabels, _ = e.cluster.NamespaceLabels(e.req.Namespace)
		}
		if e.nsLabels == nil {
			e.nsLabels = map[string]string{"kubernetes.io/metadata.name": e.req.Namespace}
		}
	}
	return e.nsLabels
}

// rules runs a policy's rules on f and reports whether the policy judged
// it: a policy whose only rules are CEL ones does not when its
// matchConditions leave the object out.
func (e *evaluation) rules(p *Policy, f *facts, out *sink, current bool) bool {
	if p.refusal != "" {
		if current {
			out.add(RuleInvalid, "", p.refusal)
		}
		return true
	}
	judged := false
	switch {
	case f.pod != nil && p.podRules != nil:
		p.podRules.check(f, out)
		judged = true
	case f.apple != nil && p.appleRules != nil:
		p.appleRules.check(f.apple, out)
		if current {
			e.quota(p.appleRules, out)
		}
		judged = true
	}
	if prog := p.celFor(e.req.Kind); prog != nil && e.celRules(prog, out, current) {
		judged = true
	}
	return judged
}

// celRules runs a policy's CEL validations on the object (current) or on
// the one an UPDATE replaces, as if created (for forgiveness).
func (e *evaluation) celRules(prog *cel.Program, out *sink, current bool) (judged bool) {
	if err := e.loadCEL(); err != nil {
		if current {
			out.add("validations", "", "the object cannot be read by CEL expressions: "+err.Error())
		}
		return true
	}
	in := e.celIn
	if !current {
		if in = e.celOld; in == nil {
			return false
		}
	}
	if e.budget == nil {
		e.budget = prog.NewBudget(e.req.Context)
	}
	if e.exhaustedBy != nil {
		return true // the request is refused already: nothing more runs
	}
	res := prog.Evaluate(e.budget, in)
	for _, v := range res.Violations {
		out.add(v.Rule, v.Field, v.Message)
	}
	if res.Exhausted != "" {
		e.exhaustedBy = out.p
	}
	return res.Judged
}

// RuleBudget is the rule of the violation that refuses a request whose CEL
// budget ran out: it was not judged in full, so it fails closed.
const RuleBudget = "celBudget"

// outOfBudget refuses the request if its CEL budget ran out, naming the
// policy it ran out in and the budget, whatever that policy's enforcement.
func (e *evaluation) outOfBudget(d *Decision) {
	p := e.exhaustedBy
	if p == nil {
		return
	}
	d.Allowed = false
	d.Violations = append(d.Violations, Violation{
		Source:      p.sourceName,
		Rule:        RuleBudget,
		Enforcement: v1alpha1.Deny,
		Message: Truncate(e.budget.Exhausted()+" ran out while this policy's expressions were evaluated, so the request "+
			"is refused without being judged in full: the policy's expressions must cost less", MaxMessageBytes),
	})
}

// loadCEL builds the CEL inputs once per request, decoding the object.
func (e *evaluation) loadCEL() error {
	if e.celLoaded {
		return e.celInputErr
	}
	e.celLoaded = true
	req := e.req
	in := &cel.Input{
		Request: cel.Request{
			Kind:        req.RequestKind,
			Resource:    req.Resource,
			SubResource: req.SubResource,
			Name:        req.Object().Name,
			Namespace:   req.Namespace,
			Operation:   string(req.Operation),
			UserInfo:    req.UserInfo,
			DryRun:      req.DryRun,
		},
		Namespace: cel.Namespace{Name: req.Namespace, Labels: e.namespaceLabels()},
	}
	if req.Controller != nil {
		in.Request.Name = req.Controller.Meta.Name
	}
	if in.Request.Resource.Resource == "" {
		in.Request.Kind, in.Request.Resource = kindResource(req)
	}
	if e.cluster != nil {
		in.Namespace.Annotations = e.cluster.NamespaceAnnotations(req.Namespace)
		if c, ok := e.cluster.(cel.Cluster); ok {
			in.Cluster = c
		}
	}
	if req.Unstructured == nil {
		e.celInputErr = errors.New("the request carries no decoded object")
		return e.celInputErr
	}
	if in.Object, in.OldObject, e.celInputErr = req.Unstructured(); e.celInputErr != nil {
		return e.celInputErr
	}
	e.celIn = in
	if in.OldObject != nil {
		old := *in
		old.Object, old.OldObject = in.OldObject, nil
		old.Request.Operation = string(Create)
		e.celOld = &old
	}
	return nil
}

// kindResource is the kind and resource of a request's own object.
func kindResource(req *Request) (metav1.GroupVersionKind, metav1.GroupVersionResource) {
	if c := req.Controller; c != nil {
		return metav1.GroupVersionKind{Group: c.Group, Version: c.Version, Kind: string(c.Kind)},
			metav1.GroupVersionResource{Group: c.Group, Version: c.Version, Resource: c.Resource}
	}
	if req.Kind == KindMyApple {
		return metav1.GroupVersionKind{Group: GroupMyApple, Version: "v1", Kind: KindMyApple},
			metav1.GroupVersionResource{Group: GroupMyApple, Version: "v1", Resource: ResourceApples}
	}
	return metav1.GroupVersionKind{Version: "v1", Kind: KindPod}, metav1.GroupVersionResource{Version: "v1", Resource: ResourcePods}
}

// forgiveOld drops the violations, from start on, that the old object
// already had: an object admitted before a policy existed can still be
// relabelled, scaled or finalised, while anything an update introduces is
// judged. The quota rule judges updates itself and is never forgiven.
func (e *evaluation) forgiveOld(p *Policy, d *Decision, start int) {
	if e.old == nil {
		e.old = &facts{pod: e.req.OldPod, apple: e.req.OldMyApple, images: e.cur.images}
	}
	if e.old.pod == nil && e.old.apple == nil {
		return
	}
	var before Decision
	e.rules(p, e.old, &sink{d: &before, p: p, ctrl: e.req.Controller}, false)
	if len(before.Violations) == 0 {
		return
	}
	kept := d.Violations[:start]
	for _, v := range d.Violations[start:] {
		if v.Rule == ruleMaxTotal || !slices.ContainsFunc(before.Violations, func(b Violation) bool {
			return b.Rule == v.Rule && b.Field == v.Field && b.Message == v.Message
		}) {
			kept = append(kept, v)
		}
	}
	d.Violations = kept
}

// sink collects the violations of one policy.
type sink struct {
	d    *Decision
	p    *Policy
	ctrl *Controller // whose template is judged, or nil
}

func (s *sink) add(rule, field, msg string) {
	if s.ctrl != nil {
		field = s.ctrl.field(field)
	}
	s.d.Violations = append(s.d.Violations, Violation{
		Source:      s.p.sourceName,
		Rule:        rule,
		Enforcement: s.p.Enforcement,
		Field:       field,
		Message:     Truncate(msg, MaxMessageBytes),
	})
}

// Truncate cuts s to at most n bytes, at a character boundary, marking the
// cut: every message written back (responses, status, reports, Events) is
// bounded by it.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
