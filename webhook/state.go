package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PathState judges writes of the webhook's own state.
const PathState = "/validate-state"

// kindState labels the admissions of PathState in the metrics.
const kindState = "WebhookState"

// StateObject names objects of the webhook's own state: Name exactly, or
// every name that begins with it if Prefix.
type StateObject struct {
	// Resource is the plural resource of the core group: configmaps, secrets.
	Resource string
	Name     string
	Prefix   bool
	// What it is, for the refusal: "the quota ledger of a namespace".
	What string
}

// StateOptions configure NewStateHandler.
type StateOptions struct {
	// Namespace holds the state, the webhook's own.
	Namespace string
	// Username is the webhook's own user (its ServiceAccount's,
	// system:serviceaccount:NAMESPACE:NAME): its writes alone are allowed.
	// Empty: not known yet (see StateHandler.SetUsername); until then every
	// write of the state is refused as retryable.
	Username string
	// Objects are the state: what the webhook writes and reads back as
	// the truth, so that nobody else may write it.
	Objects []StateObject
	Metrics *Metrics
	Log     logr.Logger
}

// stateHandler refuses every write of the webhook's state by anyone but
// the webhook. It reads only the request's metadata: it needs no cache.
type stateHandler struct {
	opts StateOptions
	user atomic.Pointer[string]
}

// StateHandler is the handler of PathState.
type StateHandler struct {
	http.Handler
	h *stateHandler
}

// NewStateHandler is the handler of PathState.
func NewStateHandler(opts StateOptions) (*StateHandler, error) {
	if opts.Namespace == "" {
		return nil, errors.New("policy-webhook: the state handler needs the webhook's namespace")
	}
	h := &stateHandler{opts: opts}
	if opts.Username != "" {
		h.user.Store(&opts.Username)
	}
	return &StateHandler{Handler: newReviewHandler(h, opts.Metrics, opts.Log), h: h}, nil
}

// SetUsername sets the webhook's own user, once it is known.
func (s *StateHandler) SetUsername(user string) { s.h.user.Store(&user) }

func (h *stateHandler) Handle(_ context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	if r.Resource.Group != "" || (r.Resource.Resource != "configmaps" && r.Resource.Resource != "secrets") {
		return nil, errors.New("policy-webhook: this path judges ConfigMaps and Secrets, not " + resourceName(r))
	}
	resp, verdict := h.decide(r)
	h.opts.Metrics.admission(kindState, r.Operation, verdict)
	return resp, nil
}

func (h *stateHandler) decide(r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	name := r.Name
	if name == "" {
		// A create may leave the name to the object (or to generateName,
		// which the API server has filled in by now).
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if len(r.Object.Raw) > 0 {
			if err := json.Unmarshal(r.Object.Raw, &meta); err != nil {
				return errored(http.StatusBadRequest, "policy-webhook: cannot read request.object: "+err.Error()), verdictError
			}
		}
		name = meta.Metadata.Name
	}
	obj, ok := h.protected(r.Resource.Resource, name)
	if r.Namespace != h.opts.Namespace || !ok {
		return allowed(nil), verdictSkipped
	}
	self := h.user.Load()
	if self == nil {
		return errored(http.StatusServiceUnavailable, "policy-webhook: the webhook has not yet learnt which user it is, so it cannot tell its own writes of its state from others': retry"), verdictNotSynced
	}
	user := r.UserInfo.Username
	switch {
	case user == *self:
		return allowed(nil), verdictAllowed
	case r.Operation == admissionv1.Delete && isNamespaceController(user):
		return allowed(nil), verdictAllowed
	case r.Operation != admissionv1.Create && r.Operation != admissionv1.Update && r.Operation != admissionv1.Delete:
		return allowed(nil), verdictSkipped
	}
	kind := "ConfigMap"
	if r.Resource.Resource == "secrets" {
		kind = "Secret"
	}
	h.opts.Log.Info("Refused a write of the webhook's own state", "object", kind+" "+r.Namespace+"/"+name, "operation", r.Operation, "user", user)
	return denied(fmt.Sprintf("policy-webhook: %s %s/%s is %s, state only the webhook writes: %s by %q is refused (only %q may write it)",
		kind, r.Namespace, name, obj.What, strings.ToLower(string(r.Operation)), user, *self), nil), verdictDenied
}

func (h *stateHandler) protected(resource, name string) (StateObject, bool) {
	for _, o := range h.opts.Objects {
		if o.Resource == resource && (name == o.Name || (o.Prefix && strings.HasPrefix(name, o.Name))) {
			return o, true
		}
	}
	return StateObject{}, false
}

// isNamespaceController: the users the namespace controller deletes a
// terminating namespace's objects as (with and without
// --use-service-account-credentials). Deleting the webhook's namespace
// must not hang on the webhook.
func isNamespaceController(user string) bool {
	return user == "system:serviceaccount:kube-system:namespace-controller" || user == "system:kube-controller-manager"
}
