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
	PathPods           = "/validate-pods"
	PathPodControllers = "/validate-podcontrollers"
	PathMyApples       = "/validate-myapples"
	PathPolicies       = "/validate-policies"
)

// Handlers builds the http.Handler of every path: Pods judged by judge,
// MyApples by apples (the quota ledger), each in a namespace that ns makes
// sure they know (nil: whatever they hold); a nil im gives no impact warnings.
func Handlers(judge, apples Judge, ns Namespaces, im *Impact, compiler *carrier.Compiler, policyNamespace string, failOpen bool, m *Metrics, log logr.Logger) map[string]http.Handler {
	rec := recorderOf(judge)
	return map[string]http.Handler{
		PathPods:           newReviewHandler(&admitHandler{policy.KindPod, judge, ns, failOpen, m, log.WithName("pods"), rec}, m, log),
		PathPodControllers: newReviewHandler(&admitHandler{"", judge, ns, failOpen, m, log.WithName("podcontrollers"), rec}, m, log),
		PathMyApples:       newReviewHandler(&admitHandler{policy.KindMyApple, apples, ns, failOpen, m, log.WithName("myapples"), rec}, m, log),
		PathPolicies:       newReviewHandler(newPolicyHandler(compiler, policyNamespace, im, counterOf(judge), m, log.WithName("policies")), m, log),
	}
}

// PolicyCounter names the policy ConfigMaps a namespace holds, as the cache
// knows them, so that one too many is refused.
type PolicyCounter interface {
	NamespacePolicies(namespace string) []string
}

// CandidateRecorder keeps the candidate outcomes of the admissions
// answered, for this replica's status entry: the cache's CandidateTally.
type CandidateRecorder interface {
	RecordCandidates(a policy.Admission, results []policy.CandidateResult)
}

// recorderOf is the judge's CandidateRecorder, nil if it keeps none (then
// outcomes are only counted in the metric and annotated).
func recorderOf(judge Judge) CandidateRecorder {
	c, _ := judge.(CandidateRecorder)
	return c
}

// counterOf is judge's PolicyCounter, nil if it is none (then any number
// of policies is accepted).
func counterOf(judge Judge) PolicyCounter {
	c, _ := judge.(PolicyCounter)
	return c
}
