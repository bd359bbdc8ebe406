package policy

import (
	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// RuleInvalid is the rule of the one violation a stand-in reports: the
// policy it stands in for is invalid.
const RuleInvalid = "invalid"

// Coverage is what an invalid policy can still be read to cover. The zero
// Coverage covers everything in scope.
type Coverage struct {
	// Enforcement is the policy's own, Deny when it cannot be read.
	Enforcement v1alpha1.Enforcement
	// Match is the policy's match, nil when it cannot be read: every
	// object of Kinds in scope.
	Match *v1alpha1.Match
	// Kinds the stand-in judges; empty: Pods and MyApples.
	Kinds []Kind
}

// StandIn makes the policy that stands in for an invalid one of which no
// good version is known: every object cov covers in scope breaks
// RuleInvalid, saying message, at the policy's enforcement, so a Deny
// policy refuses rather than lapse. As with a ValidatingAdmissionPolicy
// that fails to compile, this is never forgiven on UPDATE.
func StandIn(src Source, scope, version string, cov Coverage, message string) *Policy {
	p := &Policy{
		Source:      src,
		sourceName:  src.String(),
		Scope:       scope,
		Enforcement: cov.Enforcement,
		Version:     version,
		refusal:     message,
	}
	switch p.Enforcement {
	case v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit:
	default:
		p.Enforcement = v1alpha1.Deny
	}
	kinds := cov.Kinds
	if m := cov.Match; m != nil {
		p.excluded = append([]string(nil), m.ExcludedNamespaces...)
		// A selector that cannot be read selects everything.
		p.nsSelector, _ = selector(m.NamespaceSelector)
		p.objSelector, _ = selector(m.ObjectSelector)
		p.controllers = controllerKinds(m.PodControllers)
	}
	p.pods = matchesKind(kinds, KindPod)
	p.apples = matchesKind(kinds, KindMyApple)
	return p
}
