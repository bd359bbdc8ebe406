package main

import (
	"flag"

	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// bindPolicyLimits binds the flags of the limits policies are held to,
// shared by serve and check so that check refuses what the webhook would.
func bindPolicyLimits(fs *flag.FlagSet) func() carrier.Limits {
	var (
		exprCost   = fs.Uint64("cel-expression-cost-limit", cel.DefaultExpressionCost, "CEL cost one evaluation of one expression of a cluster-wide policy may reach before it is stopped (VAP's per-call limit); an expression that must pass it with its params is refused when applied")
		nsExprCost = fs.Uint64("cel-namespace-expression-cost-limit", cel.DefaultNamespaceExpressionCost, "the same for the policies a namespace holds itself (ConfigMaps outside the policy namespace)")
		admCost    = fs.Int64("cel-admission-cost-budget", cel.DefaultAdmissionCost, "CEL cost all the policies judging one admission may spend together; when it runs out the request is refused, naming the policy and the budget")
		admTime    = fs.Duration("cel-admission-time-budget", cel.DefaultAdmissionTime, "time all the CEL of one admission may take; when it runs out the request is refused, naming the policy and the budget")
		nsCost     = fs.Int64("cel-namespace-cost-budget", cel.DefaultNamespaceCost, "part of the admission's CEL cost budget the namespace's own policies may spend (they run after the cluster-wide ones)")
		nsTime     = fs.Duration("cel-namespace-time-budget", cel.DefaultNamespaceTime, "part of the admission's CEL time budget the namespace's own policies may take")
		nsConc     = fs.Int("cel-namespace-concurrency", cel.DefaultNamespaceConcurrency, "admissions of one namespace that may evaluate the namespace's own policies at once (so one team's take at most that many CPUs); others wait their turn within the namespace's time budget")
		perNS      = fs.Int("max-policies-per-namespace", carrier.DefaultPoliciesPerNamespace, "policy ConfigMaps a namespace other than the policy namespace may hold; one more is refused when applied")
	)
	return func() carrier.Limits {
		return carrier.Limits{
			CEL: cel.Limits{
				ExpressionCost:          *exprCost,
				NamespaceExpressionCost: *nsExprCost,
				AdmissionCost:           *admCost,
				AdmissionTime:           *admTime,
				NamespaceCost:           *nsCost,
				NamespaceTime:           *nsTime,
				NamespaceConcurrency:    *nsConc,
			},
			PoliciesPerNamespace: *perNS,
		}
	}
}
