package webhook

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/utils/clock"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/review"
)

// Judge answers admissions from policy held in memory, such as the informer cache.
type Judge interface {
	// HasSynced reports whether every informer has synced: until then policy is partial.
	HasSynced() bool
	// Evaluate judges req; it must not block or call the API server.
	Evaluate(req *policy.Request) policy.Decision
}

// Namespaces makes sure the judges hold a request's namespace, so that it
// is judged against its labels: the cache does, reading one it has not
// seen yet from the API server (cache.EnsureNamespace).
type Namespaces interface {
	// EnsureNamespace returns nil once the namespace's labels can be read
	// from memory, else why not: the request is then refused.
	EnsureNamespace(ctx context.Context, name string) error
}

type admitHandler struct {
	kind       string // policy.KindPod, policy.KindMyApple, or "" for the Pod controllers
	judge      Judge
	namespaces Namespaces // nil: none
	failOpen   bool
	metrics    *Metrics
	log        logr.Logger
	candidates CandidateRecorder  // nil: outcomes are only counted and annotated
	clock      clock.PassiveClock // exceptions apply until their expiresAt by it
}

func (h *admitHandler) Handle(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	k := review.KindOf(r)
	if _, controller := policy.PodControllerOf(k); k == "" || (h.kind == "" && !controller) || (h.kind != "" && k != policy.Kind(h.kind)) {
		// Only a client bypassing the API server sends another kind here:
		// admitting it unjudged would be a way past the rules.
		return nil, fmt.Errorf("policy-webhook: this path judges %s, not %s", h.judges(), resourceName(r))
	}
	resp, verdict := h.decide(ctx, k, r)
	h.metrics.admission(string(k), r.Operation, verdict)
	return resp, nil
}

func (h *admitHandler) judges() string {
	if h.kind == "" {
		return "Pod controllers"
	}
	return h.kind + " objects"
}

func (h *admitHandler) decide(ctx context.Context, kind policy.Kind, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	if !review.Judged(kind, r) {
		return allowed(nil), verdictSkipped
	}
	if !h.judge.HasSynced() {
		if h.failOpen {
			return allowed([]string{warnNotSynced}), verdictAllowedNotSynced
		}
		return notSynced(), verdictNotSynced
	}
	req, err := review.NewRequest(kind, r)
	if err != nil {
		// Only a direct client or a bug sends this: refuse what cannot be judged.
		return errored(http.StatusBadRequest, fmt.Sprintf("policy-webhook: cannot judge %s %s: %v", kind, objectRef(r), err)), verdictError
	}
	if h.namespaces != nil && r.Namespace != "" {
		// Judged without its namespace's labels, the object would slip
		// past every namespaceSelector: refuse it instead.
		if err := h.namespaces.EnsureNamespace(ctx, r.Namespace); err != nil {
			h.log.V(1).Info("Refused: the request's namespace is unknown", "namespace", r.Namespace, "uid", r.UID, "error", err.Error())
			return unknownNamespace(err), verdictUnknownNamespace
		}
	}
	req.Context = ctx
	req.Now = h.clock.Now()
	d := h.judge.Evaluate(req)
	h.record(r, &d)
	h.recordCandidates(r, req, kind, &d)
	var resp *admissionv1.AdmissionResponse
	verdict := verdictAllowed
	if d.Allowed {
		resp = allowed(d.Warnings())
	} else {
		msg := d.Message()
		if req.Controller != nil {
			// The Pods are not there yet: name what will not create them.
			msg = fmt.Sprintf("%s %s: its Pod template breaks policy: %s", kind, objectRef(r), msg)
		}
		resp, verdict = denied(msg, d.Warnings()), verdictDenied
	}
	resp.AuditAnnotations = auditAnnotations(&d)
	return resp, verdict
}

// recordCandidates counts the candidate outcomes of a decision and has the
// replica's tally keep them. Nothing here changes the verdict.
func (h *admitHandler) recordCandidates(r *admissionv1.AdmissionRequest, req *policy.Request, kind policy.Kind, d *policy.Decision) {
	if len(d.Candidates) == 0 {
		return
	}
	for i := range d.Candidates {
		h.metrics.candidate(&d.Candidates[i])
	}
	if h.candidates != nil {
		// The name as decoded: the generateName and a "*" while the API
		// server has yet to choose one.
		h.candidates.RecordCandidates(policy.Admission{Kind: string(kind), Namespace: r.Namespace, Name: req.Name(),
			Operation: string(r.Operation), Time: req.Now}, d.Candidates)
	}
}

// record counts every violation and logs those users do not see, one line
// per enforcement: Audit always, denials and warnings at verbosity 1.
func (h *admitHandler) record(r *admissionv1.AdmissionRequest, d *policy.Decision) {
	var audits, others []*policy.Violation
	for i := range d.Violations {
		v := &d.Violations[i]
		h.metrics.violation(v)
		if v.Enforcement == v1alpha1.Audit {
			audits = append(audits, v)
		} else {
			others = append(others, v)
		}
	}
	if len(audits) > 0 {
		h.log.Info("Audit policy violations", violationKeys(r, audits)...)
	}
	if len(others) > 0 && h.log.V(1).Enabled() {
		h.log.V(1).Info("Policy violations", violationKeys(r, others)...)
	}
}

// loggedViolations is how many violations one log line names; "count" has the rest.
const loggedViolations = 5

func violationKeys(r *admissionv1.AdmissionRequest, vs []*policy.Violation) []any {
	named := make([]string, 0, min(len(vs), loggedViolations))
	for _, v := range vs[:min(len(vs), loggedViolations)] {
		named = append(named, string(v.Enforcement)+" "+v.String())
	}
	return []any{
		"kind", r.Kind.Kind, "namespace", r.Namespace, "name", r.Name, "operation", r.Operation,
		"uid", r.UID, "user", r.UserInfo.Username, "dryRun", r.DryRun != nil && *r.DryRun,
		"count", len(vs), "violations", named,
	}
}

func objectRef(r *admissionv1.AdmissionRequest) string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

func resourceName(r *admissionv1.AdmissionRequest) string {
	gr := r.Resource.Resource
	if gr == "" {
		gr = r.Kind.Kind
	}
	if r.Resource.Group != "" {
		gr += "." + r.Resource.Group
	}
	if r.SubResource != "" {
		gr += "/" + r.SubResource
	}
	return gr
}
