package webhook

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// policyHandler refuses invalid policy ConfigMaps and AdmissionPolicies, so
// a typo never reaches the cache. It needs no synced cache.
type policyHandler struct {
	policyNamespace string
	metrics         *Metrics
	log             logr.Logger
	// parses holds a token per policy being read: parsing is what a request
	// here can make cost memory, so parallel ones wait rather than multiply it.
	parses   chan struct{}
	wait     time.Duration     // how long a request waits for a token
	compiler *carrier.Compiler // the cache's, so a policy is compiled alike at admission and in force
	impact   *Impact           // nil: no impact warnings
	counter  PolicyCounter     // nil: a namespace's policies are not counted
}

// Bounds of the work policy objects can cause on a replica.
const (
	maxConcurrentParses = 2
	// parseWait is well within the API server's webhook timeout; then 429.
	parseWait = 3 * time.Second
)

func newPolicyHandler(compiler *carrier.Compiler, policyNamespace string, im *Impact, counter PolicyCounter, m *Metrics, log logr.Logger) *policyHandler {
	return &policyHandler{policyNamespace: policyNamespace, impact: im, counter: counter, metrics: m, log: log,
		parses: make(chan struct{}, maxConcurrentParses), wait: parseWait, compiler: compiler}
}

const resourceAdmissionPolicies = "admissionpolicies"

func (h *policyHandler) Handle(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	var kind string
	switch {
	case r.Resource.Group == "" && r.Resource.Resource == "configmaps":
		kind = policy.SourceConfigMap
	case r.Resource.Group == v1alpha1.GroupVersion.Group && r.Resource.Resource == resourceAdmissionPolicies:
		kind = policy.SourceAdmissionPolicy
	default:
		return nil, errors.New("policy-webhook: this path judges ConfigMaps and AdmissionPolicies, not " + resourceName(r))
	}
	resp, verdict := h.decide(ctx, r, kind)
	h.metrics.admission(kind, r.Operation, verdict)
	return resp, nil
}

func (h *policyHandler) decide(ctx context.Context, r *admissionv1.AdmissionRequest, kind string) (*admissionv1.AdmissionResponse, string) {
	// Deleting a policy is always allowed, and a subresource (an
	// AdmissionPolicy's status) carries no spec.
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
	u, err := carrierObject(r, kind)
	if err != nil {
		return errored(http.StatusBadRequest, "policy-webhook: cannot read request.object: "+err.Error()), verdictError
	}
	src, ours := carrier.SourceOf(u)
	if !ours {
		// Any ConfigMap may pass: only labelled ones carry policy.
		return allowed(nil), verdictSkipped
	}
	if h.counter != nil {
		if why := h.compiler.TooManyPolicies(src, h.policyNamespace, h.counter.NamespacePolicies(src.Namespace)); why != "" {
			h.log.V(1).Info("Refused a policy over the namespace's limit", "source", src.String(), "user", r.UserInfo.Username)
			return invalid(src.String() + " is refused: " + why), verdictDenied
		}
	}
	p, err := h.compiler.Validate(u, h.policyNamespace)
	if err != nil {
		var invalidErr *policy.InvalidError
		if !errors.As(err, &invalidErr) {
			return errored(http.StatusBadRequest, "policy-webhook: "+err.Error()), verdictError
		}
		h.log.V(1).Info("Refused an invalid policy", "source", invalidErr.Source.String(), "operation", r.Operation,
			"user", r.UserInfo.Username, "error", invalidErr.Problems())
		return invalid(err.Error()), verdictDenied
	}
	if h.impact == nil {
		return allowed(nil), verdictAllowed
	}
	// Read with the parse token held, so that impact checks, the one thing
	// here that reads the API server, are as bounded as parsing.
	return allowed(h.impact.warnings(ctx, p)), verdictAllowed
}

// carrierObject decodes the object a policy admission carries, taking its
// namespace and name from the request where the object leaves them out.
func carrierObject(r *admissionv1.AdmissionRequest, kind string) (*unstructured.Unstructured, error) {
	// Typed first, so a label of the wrong type is an error, not no label.
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(r.Object.Raw, &meta); err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	// apimachinery's decoder keeps integers int64, as the API's clients do.
	if err := utiljson.Unmarshal(r.Object.Raw, &u.Object); err != nil {
		return nil, err
	}
	if u.Object == nil {
		return nil, errors.New("the object is null")
	}
	u.SetKind(kind)
	if kind == policy.SourceConfigMap {
		u.SetAPIVersion("v1")
	} else {
		u.SetAPIVersion(v1alpha1.GroupVersion.String())
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(r.Namespace)
	}
	if u.GetName() == "" && u.GetGenerateName() == "" {
		u.SetName(r.Name)
	}
	return u, nil
}
