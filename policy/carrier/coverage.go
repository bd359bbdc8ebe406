package carrier

import (
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// coverageFields are the parts of a policy document that say what it
// covers, each kept raw so that one being wrong spoils none of the others.
type coverageFields struct {
	Enforcement *string         `json:"enforcement"`
	Match       json.RawMessage `json:"match"`
	Pods        json.RawMessage `json:"pods"`
	MyApples    json.RawMessage `json:"myApples"`
	Validations json.RawMessage `json:"validations"`
}

// ReadCoverage reads what an invalid policy still says about what it
// covers: its enforcement (Deny if unreadable), its match (nil, everything,
// if unreadable or invalid: a wrong selector cannot be trusted to select
// less) and the kinds it has rules for, within match.kinds. A document that
// cannot be read at all covers every Pod and MyApple in its carrier's scope.
func ReadCoverage(u *unstructured.Unstructured) policy.Coverage {
	cov := policy.Coverage{Enforcement: v1alpha1.Deny}
	_, doc, err := Document(u)
	if err != nil || checkBounds(doc) != nil {
		return cov
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return cov
	}
	var f coverageFields
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &f); err != nil {
		return cov
	}
	if f.Enforcement != nil {
		switch e := v1alpha1.Enforcement(*f.Enforcement); e {
		case v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit:
			cov.Enforcement = e
		}
	}
	var kinds []policy.Kind // what match.kinds allows; nil: both
	if present(f.Match) {
		var m v1alpha1.Match
		strict, err := kjson.UnmarshalStrict(f.Match, &m)
		if err == nil && len(strict) == 0 && len(policy.ValidateMatch(&m)) == 0 {
			cov.Match = &m
			for _, k := range m.Kinds {
				kinds = append(kinds, policy.Kind(k))
			}
		}
	} else {
		cov.Match = &v1alpha1.Match{}
	}
	if present(f.Validations) {
		cov.Kinds = kinds
		return cov
	}
	for _, k := range []struct {
		rules json.RawMessage
		kind  policy.Kind
	}{{f.Pods, policy.KindPod}, {f.MyApples, policy.KindMyApple}} {
		if present(k.rules) && (len(kinds) == 0 || slices.Contains(kinds, k.kind)) {
			cov.Kinds = append(cov.Kinds, k.kind)
		}
	}
	if len(cov.Kinds) == 0 {
		// No rules it has can be read for a kind it matches: both kinds.
		cov.Kinds = kinds
	}
	return cov
}

// StandIn is the policy.StandIn for the invalid version an object carries:
// it covers what ReadCoverage reads, saying message(enforcement).
func StandIn(u *unstructured.Unstructured, policyNamespace string, message func(v1alpha1.Enforcement) string) *policy.Policy {
	src, ok := SourceOf(u)
	if !ok {
		return nil
	}
	scope := ""
	if src.Kind == policy.SourceConfigMap {
		scope = policy.ConfigMapScope(src.Namespace, policyNamespace)
	}
	cov := ReadCoverage(u)
	return policy.StandIn(src, scope, Version(u), cov, message(cov.Enforcement))
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}
