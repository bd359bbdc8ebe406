package webhook

import (
	"net/http"

	"github.com/go-logr/logr"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Webhook paths, as the ValidatingWebhookConfiguration names them.
const (
	PathPods     = "/validate-pods"
	PathMyApples = "/validate-myapples"
	PathPolicies = "/validate-policies"
)

// handlers builds the http.Handler of every path. MyApples are judged by
// apples, the quota ledger in a running server (the cache otherwise).
// im may be nil: no impact warnings.
func handlers(judge, apples Judge, im *impact, policyNamespace string, failOpen bool, m *metrics, log logr.Logger) map[string]http.Handler {
	return map[string]http.Handler{
		PathPods:     newReviewHandler(newAdmitHandler(policy.KindPod, judge, failOpen, m, log.WithName("pods")), m, log),
		PathMyApples: newReviewHandler(newAdmitHandler(policy.KindMyApple, apples, failOpen, m, log.WithName("myapples")), m, log),
		PathPolicies: newReviewHandler(newPolicyHandler(policyNamespace, im, m, log.WithName("policies")), m, log),
	}
}
