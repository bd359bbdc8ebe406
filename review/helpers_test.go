package review

import (
	"testing"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// fuzzSet is every rule, in every enforcement, scoped both ways, with
// selectors: what a fuzzed object is judged against.
func fuzzSet(t testing.TB) *policy.Set {
	t.Helper()
	var ps []*policy.Policy
	for i, spec := range []string{
		"pods:\n  allowedRegistries: [registry.example.com/, ghcr.io/acme/]\n  disallowedTags: [latest]\n  requiredLabels: [app]\n  forbidPrivileged: true\n  forbidHostNamespaces: true\n  forbidHostPath: true\n  requireRunAsNonRoot: true\n  requireResourceLimits: [cpu, memory]\nmyApples:\n  allowedColors: [red, green]\n  allowedSizes: [small, medium]\n  minQuantity: 1\n  maxQuantity: 100\n  maxTotalQuantityPerNamespace: 500\n",
		"enforcement: Warn\nmatch:\n  objectSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [batch]}]}\npods:\n  requireDigest: true\n  requireResourceLimits: [cpu, ephemeral-storage]\nmyApples:\n  maxTotalQuantityPerNamespace: 10\n",
		"enforcement: Audit\nmatch:\n  namespaceSelector: {matchLabels: {env: prod}}\npods:\n  allowedRegistries: [docker.io/library/]\n  disallowedTags: [latest, dev]\n",
	} {
		s, errs := carrier.ParseSpec([]byte(spec))
		if len(errs) > 0 {
			t.Fatalf("policy %d: %s", i, policy.ErrorText(errs))
		}
		scope := ""
		if i == 1 {
			scope = "team-a"
		}
		p, errs := policy.Compile(policy.Source{Kind: policy.SourceAdmissionPolicy, Name: string(rune('a' + i))}, scope, s)
		if len(errs) > 0 {
			t.Fatalf("policy %d: %s", i, policy.ErrorText(errs))
		}
		ps = append(ps, p)
	}
	return policy.NewSet(ps, policy.WithImageCache(policy.NewImageCache(64)))
}
