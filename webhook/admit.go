package webhook

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// Judge answers admissions from policy held in memory. The informer cache
// of package policy/live is the Judge of a running server.
type Judge interface {
	// HasSynced reports whether every informer has synced, so that the
	// policy in force is the cluster's and not a partial view of it.
	HasSynced() bool
	// Evaluate judges a request against the policy in force. It must not
	// block or call the API server.
	Evaluate(req *policy.Request) policy.Decision
}

// admitHandler judges the admissions of one kind, Pods or MyApples.
type admitHandler struct {
	kind     string // policy.KindPod or policy.KindMyApple
	kindIx   kindIndex
	judge    Judge
	failOpen bool
	metrics  *metrics
	log      logr.Logger
}

var _ admission.Handler = (*admitHandler)(nil)

func newAdmitHandler(kind string, judge Judge, failOpen bool, m *metrics, log logr.Logger) *admitHandler {
	return &admitHandler{kind: kind, kindIx: kindOf(kind), judge: judge, failOpen: failOpen, metrics: m, log: log}
}

var _ podDecoder = (*admitHandler)(nil)

func (h *admitHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.handleDecoded(ctx, req, nil, nil)
}

func (h *admitHandler) decodesPods() bool { return h.kind == policy.KindPod }

func (h *admitHandler) handleDecoded(_ context.Context, req admission.Request, pod, oldPod *corev1.Pod) admission.Response {
	r := &req.AdmissionRequest
	op := opOf(r.Operation)
	if skip, why := h.skip(r, op); skip {
		h.metrics.admission(h.kindIx, op, verdictSkipped)
		if why != "" {
			return allowed([]string{why})
		}
		return allowed(nil)
	}
	if !h.judge.HasSynced() {
		if h.failOpen {
			h.metrics.admission(h.kindIx, op, verdictAllowedNotSynced)
			return allowed([]string{warnNotSynced})
		}
		h.metrics.admission(h.kindIx, op, verdictNotSynced)
		return notSynced()
	}
	preq, err := policy.RequestFromDecoded(r, pod, oldPod)
	if err != nil {
		// The API server only sends objects it has decoded itself, so this
		// is a client speaking to the webhook directly, or a bug: refuse
		// rather than admit what could not be judged.
		h.metrics.admission(h.kindIx, op, verdictError)
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("policy-webhook: cannot judge %s %s: %w", h.kind, objectRef(r), err))
	}
	d := h.judge.Evaluate(preq)
	h.record(r, &d)
	if !d.Allowed {
		h.metrics.admission(h.kindIx, op, verdictDenied)
		return admission.Denied(d.Message()).WithWarnings(d.Warnings()...)
	}
	h.metrics.admission(h.kindIx, op, verdictAllowed)
	return allowed(d.Warnings())
}

// skip says whether a request is outside what this path judges, and if so
// why, when the reason is a misconfiguration worth a warning.
func (h *admitHandler) skip(r *admissionv1.AdmissionRequest, op opIndex) (bool, string) {
	if op != opCreate && op != opUpdate {
		return true, ""
	}
	if k := policy.KindOf(r); k != h.kind {
		// Admitted, not refused: a ValidatingWebhookConfiguration that
		// sends the wrong resources here must not take them hostage. The
		// warning makes the mistake visible to whoever sees it.
		return true, fmt.Sprintf("policy-webhook: this path judges %s objects, not %s; check the ValidatingWebhookConfiguration's rules",
			h.kind, resourceName(r))
	}
	// Other subresources (status, binding, exec, scale...) carry nothing a
	// policy rule looks at; pods/ephemeralcontainers is judged as the Pod.
	return !policy.IsJudged(r), ""
}

// record counts every violation and logs the ones users do not see:
// Audit violations are only logged, denials and warnings at verbosity 1.
func (h *admitHandler) record(r *admissionv1.AdmissionRequest, d *policy.Decision) {
	for i := range d.Violations {
		v := &d.Violations[i]
		h.metrics.violation(v)
		if v.Enforcement == v1alpha1.Audit {
			h.log.Info("Audit policy violation", violationKeys(r, v)...)
		} else if h.log.V(1).Enabled() {
			h.log.V(1).Info(string(v.Enforcement)+" policy violation", violationKeys(r, v)...)
		}
	}
}

func violationKeys(r *admissionv1.AdmissionRequest, v *policy.Violation) []any {
	return []any{
		"kind", r.Kind.Kind, "namespace", r.Namespace, "name", r.Name, "operation", r.Operation,
		"uid", r.UID, "user", r.UserInfo.Username, "dryRun", r.DryRun != nil && *r.DryRun,
		"source", v.Source, "rule", v.Rule, "enforcement", v.Enforcement, "field", v.Field, "message", v.Message,
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
	if r.Resource.Group != "" {
		gr += "." + r.Resource.Group
	}
	if r.SubResource != "" {
		gr += "/" + r.SubResource
	}
	return gr
}
