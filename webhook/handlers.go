package webhook

import (
	"net/http"

	"github.com/go-logr/logr"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// DefaultPolicyNamespace is the webhook's own namespace unless configured
// otherwise: its policy ConfigMaps apply cluster-wide.
const DefaultPolicyNamespace = policy.DefaultPolicyNamespace

// Webhook paths, as the ValidatingWebhookConfiguration names them.
const (
	PathPods     = "/validate-pods"
	PathMyApples = "/validate-myapples"
	PathPolicies = "/validate-policies"
)

// Handlers builds the http.Handler of every path: Pods judged by judge,
// MyApples by apples (the quota ledger); a nil im gives no impact warnings.
func Handlers(judge, apples Judge, im *Impact, compiler *carrier.Compiler, policyNamespace string, failOpen bool, m *Metrics, log logr.Logger) map[string]http.Handler {
	return map[string]http.Handler{
		PathPods:     newReviewHandler(&admitHandler{policy.KindPod, judge, failOpen, m, log.WithName("pods")}, m, log),
		PathMyApples: newReviewHandler(&admitHandler{policy.KindMyApple, apples, failOpen, m, log.WithName("myapples")}, m, log),
		PathPolicies: newReviewHandler(newPolicyHandler(compiler, policyNamespace, im, counterOf(judge), m, log.WithName("policies")), m, log),
	}
}

// PolicyCounter names the policy ConfigMaps a namespace holds, as the cache
// knows them, so that one too many is refused.
type PolicyCounter interface {
	NamespacePolicies(namespace string) []string
}

// counterOf is judge's PolicyCounter, nil if it is none (then any number
// of policies is accepted).
func counterOf(judge Judge) PolicyCounter {
	c, _ := judge.(PolicyCounter)
	return c
}
