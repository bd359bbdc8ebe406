package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// PathExceptions is where the API server sends PolicyException writes.
const PathExceptions = "/validate-policyexceptions"

// DefaultMaxExceptionDuration is how far ahead an exception may expire
// when it is written, unless configured otherwise.
const DefaultMaxExceptionDuration = 90 * 24 * time.Hour

const resourcePolicyExceptions = "policyexceptions"

// PolicySetter gives the policies and exceptions in force: the cache's
// current snapshot.
type PolicySetter interface {
	PolicySet() *policy.Set
}

// HandlerOption configures Handlers.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	clock       clock.PassiveClock
	maxDuration time.Duration
}

// WithClock sets the clock admissions are judged at (exceptions expire by
// it); the default is the real one.
func WithClock(c clock.PassiveClock) HandlerOption {
	return func(o *handlerOptions) { o.clock = c }
}

// WithMaxExceptionDuration bounds how far ahead an exception written may
// expire; the default is DefaultMaxExceptionDuration.
func WithMaxExceptionDuration(d time.Duration) HandlerOption {
	return func(o *handlerOptions) { o.maxDuration = d }
}

// exceptionHandler refuses PolicyExceptions that are invalid, expire in the
// past or too far ahead, or name rules their policies do not have, and
// warns what a new one would exempt among existing objects.
type exceptionHandler struct {
	policyNamespace string
	policies        PolicySetter // nil: rules are not checked
	clock           clock.PassiveClock
	maxDuration     time.Duration
	impact          *Impact // nil: no impact warnings
	metrics         *Metrics
	log             logr.Logger
	// parses bounds the exceptions judged at once, as policies are.
	parses chan struct{}
	wait   time.Duration
}

func (h *exceptionHandler) Handle(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	if r.Resource.Group != v1alpha1.GroupVersion.Group || r.Resource.Resource != resourcePolicyExceptions {
		return nil, errors.New("policy-webhook: this path judges PolicyExceptions, not " + resourceName(r))
	}
	resp, verdict := h.decide(ctx, r)
	h.metrics.admission(policy.SourcePolicyException, r.Operation, verdict)
	return resp, nil
}

func (h *exceptionHandler) decide(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	if (r.Operation != admissionv1.Create && r.Operation != admissionv1.Update) || r.SubResource != "" {
		return allowed(nil), verdictSkipped
	}
	waitCtx, cancel := context.WithTimeout(ctx, h.wait)
	defer cancel()
	select {
	case h.parses <- struct{}{}:
		defer func() { <-h.parses }()
	case <-waitCtx.Done():
		return busy(), verdictBusy
	}
	x, err := decodeException(r.Object.Raw, r.Namespace, r.Name)
	if err != nil {
		return errored(http.StatusBadRequest, "policy-webhook: cannot read request.object: "+err.Error()), verdictError
	}
	if r.Operation == admissionv1.Update && len(r.OldObject.Raw) > 0 {
		// An exception that has expired stays readable and editable
		// (labels, finalizers): only a new spec is held to the clock.
		if old, err := decodeException(r.OldObject.Raw, r.Namespace, r.Name); err == nil && apiequality.Semantic.DeepEqual(old.Spec, x.Spec) {
			return allowed(nil), verdictSkipped
		}
	}
	now := h.clock.Now()
	var set *policy.Set
	if h.policies != nil {
		set = h.policies.PolicySet()
	}
	compiled, warnings, errs := policy.JudgeException(x, h.policyNamespace, now, h.maxDuration, set)
	if len(errs) > 0 {
		invalidErr := &policy.InvalidError{Source: policy.Source{Kind: policy.SourcePolicyException, Namespace: x.Namespace, Name: x.Name}, Errs: errs}
		h.log.V(1).Info("Refused an invalid PolicyException", "exception", x.Namespace+"/"+x.Name, "operation", r.Operation,
			"user", r.UserInfo.Username, "error", invalidErr.Problems())
		resp := invalid(invalidErr.Error())
		resp.Warnings = warnings
		return resp, verdictDenied
	}
	if h.impact != nil && set != nil {
		warnings = append(warnings, h.impact.exceptionWarnings(ctx, compiled, set, now)...)
	}
	return allowed(warnings), verdictAllowed
}

// decodeException reads a PolicyException, by its JSON struct tags, taking
// its namespace and name from the request where the object leaves them out.
func decodeException(raw []byte, namespace, name string) (*v1alpha1.PolicyException, error) {
	var x v1alpha1.PolicyException
	if err := utiljson.Unmarshal(raw, &x); err != nil {
		return nil, err
	}
	if x.Namespace == "" {
		x.Namespace = namespace
	}
	if x.Name == "" && x.GenerateName == "" {
		x.Name = name
	}
	return &x, nil
}

// exceptionWarnings tells an exception's author what it would exempt among
// existing objects: `this exception would exempt 3 existing objects:
// Deployment team-a/legacy-db (pods.requireRunAsNonRoot), ...`.
func (i *Impact) exceptionWarnings(ctx context.Context, x *policy.Exception, set *policy.Set, now time.Time) []string {
	ctx, cancel := context.WithTimeout(ctx, i.budget)
	defer cancel()
	bare := set.WithoutExceptions()
	var (
		hits           []string
		count, checked int
		err            error
	)
	for _, kind := range audit.Kinds() {
		if err != nil || !x.MayCover(policy.Kind(kind)) || !judgedBy(bare, policy.Kind(kind)) {
			continue
		}
		err = i.lister.Each(ctx, kind, x.Scope, func(o *audit.Object) error {
			req := o.Request
			req.Context, req.Now = ctx, now
			checked++
			d := bare.Evaluate(req, i.cluster)
			var rules []string
			for j := range d.Violations {
				v := &d.Violations[j]
				if x.Covers(req, v, i.cluster) && !slices.Contains(rules, v.Rule) {
					rules = append(rules, v.Rule)
				}
			}
			if len(rules) > 0 {
				if count++; len(hits) < impactNamed {
					hits = append(hits, fmt.Sprintf("%s %s/%s (%s)", o.Kind, o.Namespace, o.Name, strings.Join(rules, ", ")))
				}
			}
			return nil
		})
		if errors.Is(err, audit.ErrNotServed) {
			err = nil
		}
	}
	var out []string
	if count > 0 {
		objects := "objects"
		if count == 1 {
			objects = "object"
		}
		msg := fmt.Sprintf("this exception would exempt %d existing %s: %s", count, objects, strings.Join(hits, ", "))
		if count > len(hits) {
			msg += fmt.Sprintf(" and %d more", count-len(hits))
		}
		out = append(out, msg)
	}
	if err != nil {
		out = append(out, fmt.Sprintf("policy-webhook checked only %d existing objects against this exception: %v", checked, reason(err)))
	}
	return out
}

// judgedBy reports whether some policy of set judges kind.
func judgedBy(set *policy.Set, kind policy.Kind) bool {
	return slices.ContainsFunc(set.Policies(), func(p *policy.Policy) bool { return p.Judges(kind) })
}
