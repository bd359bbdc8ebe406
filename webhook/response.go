package webhook

import (
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Messages users read in kubectl, after the API server's
// `admission webhook "<name>" denied the request: `.
const (
	msgNotSynced = "policy-webhook: the policy cache has not synced yet, so this request cannot be judged; " +
		"retry in a few seconds"
	warnNotSynced = "policy-webhook: the policy cache has not synced yet; admitted without policy checks " +
		"(--fail-open-before-sync)"
)

// allowed admits with no status: the API server needs none.
func allowed(warnings []string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

// denied refuses with the policy violations, as 403 Forbidden.
func denied(msg string, warnings []string) *admissionv1.AdmissionResponse {
	return refused(http.StatusForbidden, metav1.StatusReasonForbidden, msg, warnings)
}

// errored refuses an object that could not be judged at all.
func errored(code int32, msg string) *admissionv1.AdmissionResponse {
	return refused(code, metav1.StatusReasonBadRequest, msg, nil)
}

// invalid refuses an object that is not valid, as the API server's own
// validation does (422 Invalid).
func invalid(msg string) *admissionv1.AdmissionResponse {
	return refused(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, msg, nil)
}

// notSynced refuses a request the webhook cannot judge yet: 503 with a delay
// the API server passes on as Retry-After, so client-go retries by itself.
func notSynced() *admissionv1.AdmissionResponse {
	r := refused(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, msgNotSynced, nil)
	r.Result.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	return r
}

// unknownNamespace refuses a request whose namespace the webhook could not
// confirm (err says why): 503 with a retry delay, as notSynced, since the
// informer or the API server is about to know better.
func unknownNamespace(err error) *admissionv1.AdmissionResponse {
	r := refused(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
		"policy-webhook: "+err.Error()+"; the request is refused rather than judged without the namespace's labels; retry in a few seconds", nil)
	r.Result.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	return r
}

// busy refuses a request the replica has no room to judge now, with a retry delay.
func busy() *admissionv1.AdmissionResponse {
	r := refused(http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests,
		"policy-webhook: too many policy objects are being checked at once; retry in a second", nil)
	r.Result.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	return r
}

func refused(code int32, reason metav1.StatusReason, msg string, warnings []string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Warnings: warnings,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    code,
			Reason:  reason,
			Message: msg,
		},
	}
}
