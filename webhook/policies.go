package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/api/v1alpha1"
)

// policyHandler refuses invalid policy objects at admission, so a typo
// never reaches the cache: policy ConfigMaps (labelled
// policy.example.com/policy=true) and AdmissionPolicies. It only parses,
// so it answers before the cache has synced too.
type policyHandler struct {
	metrics *metrics
	log     logr.Logger
}

var _ admission.Handler = (*policyHandler)(nil)

const resourceAdmissionPolicies = "admissionpolicies"

func (h *policyHandler) Handle(_ context.Context, req admission.Request) admission.Response {
	r := &req.AdmissionRequest
	op := opOf(r.Operation)
	var kind kindIndex
	switch {
	case r.Resource.Group == "" && r.Resource.Resource == "configmaps":
		kind = kindConfigMap
	case r.Resource.Group == v1alpha1.GroupVersion.Group && r.Resource.Resource == resourceAdmissionPolicies:
		kind = kindAdmissionPolicy
	default:
		h.metrics.admission(kindOther, op, verdictSkipped)
		return allowed([]string{"policy-webhook: this path judges ConfigMaps and AdmissionPolicies, not " +
			resourceName(r) + "; check the ValidatingWebhookConfiguration's rules"})
	}
	// Deleting a policy is always allowed, and a subresource (an
	// AdmissionPolicy's status) carries no spec.
	if (op != opCreate && op != opUpdate) || r.SubResource != "" {
		h.metrics.admission(kind, op, verdictSkipped)
		return allowed(nil)
	}

	var (
		src     policy.Source
		ours    bool
		err     error
		verdict verdictIndex
	)
	if kind == kindConfigMap {
		src, ours, err = checkConfigMap(r)
	} else {
		src, ours, err = checkAdmissionPolicy(r)
	}
	var resp admission.Response
	switch {
	case !ours:
		verdict, resp = verdictSkipped, allowed(nil)
	case err == nil:
		verdict, resp = verdictAllowed, allowed(nil)
	default:
		var bad *badObjectError
		if errors.As(err, &bad) {
			verdict, resp = verdictError, admission.Errored(http.StatusBadRequest, err)
			break
		}
		h.log.V(1).Info("Refused an invalid policy", "source", src.String(), "operation", r.Operation,
			"user", r.UserInfo.Username, "error", err.Error())
		verdict, resp = verdictDenied, invalid(invalidPolicyMessage(src, err))
	}
	h.metrics.admission(kind, op, verdict)
	return resp
}

// policyConfigMap is the part of a ConfigMap the check reads.
type policyConfigMap struct {
	Metadata objectMeta        `json:"metadata"`
	Data     map[string]string `json:"data"`
}

// policyObject is the part of an AdmissionPolicy the check reads; the spec
// is kept raw for the policy parser, which reports unknown fields.
type policyObject struct {
	Metadata objectMeta      `json:"metadata"`
	Spec     json.RawMessage `json:"spec"`
}

type objectMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
}

// badObjectError is an object that could not even be decoded.
type badObjectError struct{ err error }

func (e *badObjectError) Error() string {
	return "policy-webhook: cannot read request.object: " + e.err.Error()
}
func (e *badObjectError) Unwrap() error { return e.err }

// checkConfigMap parses a ConfigMap's policy. ours is false for a
// ConfigMap that is not labelled as a policy: any ConfigMap may pass.
func checkConfigMap(r *admissionv1.AdmissionRequest) (src policy.Source, ours bool, err error) {
	var cm policyConfigMap
	if err := json.Unmarshal(r.Object.Raw, &cm); err != nil {
		return src, true, &badObjectError{err}
	}
	if !policy.IsPolicyConfigMap(cm.Metadata.Labels) {
		return src, false, nil
	}
	src = policy.Source{Kind: policy.SourceConfigMap, Namespace: cm.Metadata.Namespace, Name: nameOf(r, &cm.Metadata)}
	if src.Namespace == "" {
		src.Namespace = r.Namespace
	}
	_, err = policy.ParseConfigMapData(cm.Data)
	return src, true, err
}

func checkAdmissionPolicy(r *admissionv1.AdmissionRequest) (src policy.Source, ours bool, err error) {
	var ap policyObject
	if err := json.Unmarshal(r.Object.Raw, &ap); err != nil {
		return src, true, &badObjectError{err}
	}
	src = policy.Source{Kind: policy.SourceAdmissionPolicy, Name: nameOf(r, &ap.Metadata)}
	if string(ap.Spec) == "null" {
		ap.Spec = nil
	}
	_, err = policy.ParseAdmissionPolicySpec(ap.Spec)
	return src, true, err
}

func nameOf(r *admissionv1.AdmissionRequest, m *objectMeta) string {
	switch {
	case m.Name != "":
		return m.Name
	case r.Name != "":
		return r.Name
	}
	return m.GenerateName
}

// invalidPolicyMessage lists every problem, one a line when there are
// several, each with its field path, so the author fixes all in one go:
//
//	ConfigMap team-a/registries is not a valid policy: policy.yaml: pods.allowedRegistrie: unknown field
func invalidPolicyMessage(src policy.Source, err error) string {
	var fes policy.FieldErrors
	if !errors.As(err, &fes) || len(fes) <= 1 {
		return src.String() + " is not a valid policy: " + err.Error()
	}
	var b strings.Builder
	b.WriteString(src.String())
	b.WriteString(" is not a valid policy: ")
	b.WriteString(strconv.Itoa(len(fes)))
	b.WriteString(" problems:")
	for _, fe := range fes {
		b.WriteString("\n- ")
		b.WriteString(fe.Error())
	}
	return b.String()
}
