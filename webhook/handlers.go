package webhook

import (
	"net/http"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

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
//
// PolicyExceptions are judged against the policies judge holds when it is
// a PolicySetter (the cache), and every admission at the clock's instant
// (WithClock).
func Handlers(judge, apples Judge, ns Namespaces, im *Impact, compiler *carrier.Compiler, policyNamespace string, failOpen bool, m *Metrics, log logr.Logger, opts ...HandlerOption) map[string]http.Handler {
	o := handlerOptions{clock: clock.RealClock{}, maxDuration: DefaultMaxExceptionDuration}
	for _, opt := range opts {
		opt(&o)
	}
	setter, _ := judge.(PolicySetter)
	if im != nil && setter != nil {
		im.exceptions = func() *policy.ExceptionSet { return setter.PolicySet().Exceptions() }
		im.now = o.clock.Now
	}
	rec := recorderOf(judge)
	return map[string]http.Handler{
		PathPods:           newReviewHandler(&admitHandler{policy.KindPod, judge, ns, failOpen, m, log.WithName("pods"), rec, o.clock}, m, log),
		PathPodControllers: newReviewHandler(&admitHandler{"", judge, ns, failOpen, m, log.WithName("podcontrollers"), rec, o.clock}, m, log),
		PathMyApples:       newReviewHandler(&admitHandler{policy.KindMyApple, apples, ns, failOpen, m, log.WithName("myapples"), rec, o.clock}, m, log),
		PathPolicies:       newReviewHandler(newPolicyHandler(compiler, policyNamespace, im, counterOf(judge), m, log.WithName("policies")), m, log),
		PathExceptions: newReviewHandler(&exceptionHandler{policyNamespace: policyNamespace, policies: setter, clock: o.clock,
			maxDuration: o.maxDuration, impact: im, metrics: m, log: log.WithName("exceptions"),
			parses: make(chan struct{}, maxConcurrentParses), wait: parseWait}, m, log),
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
