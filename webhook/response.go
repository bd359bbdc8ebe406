package webhook

import (
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Messages users read in kubectl, after the API server's
// `admission webhook "<name>" denied the request: `.
const (
	msgNotSynced = "policy-webhook: the policy cache has not synced yet, so this request cannot be judged; " +
		"retry in a few seconds"
	warnNotSynced = "policy-webhook: the policy cache has not synced yet; admitted without policy checks " +
		"(--fail-open-before-sync)"
)

// allowed admits with no status: the API server needs none, and leaving
// it out saves an allocation on the common path.
func allowed(warnings []string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}}
}

// notSynced refuses a request the webhook cannot judge yet. 503 with a
// retry delay, rather than 403, because nothing is wrong with the request:
// the API server passes the delay on as a Retry-After header, and client-go
// (kubectl, controllers) then retries by itself.
func notSynced() admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusServiceUnavailable,
			Reason:  metav1.StatusReasonServiceUnavailable,
			Message: msgNotSynced,
			Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
		},
	}}
}

// invalid refuses an object that is not valid, as the API server's own
// validation does (422 Invalid).
func invalid(msg string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusUnprocessableEntity,
			Reason:  metav1.StatusReasonInvalid,
			Message: msg,
		},
	}}
}
