package webhook

import (
	"context"
	"encoding/json"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// podDecoder is an admission.Handler of Pods that takes them decoded in
// the pass that reads the AdmissionReview. Decoding was most of the cost
// of an admission; reading the review and then decoding request.object
// from its copied bytes went over the same ~3.5 KB twice.
type podDecoder interface {
	admission.Handler
	// decodesPods reports whether Pods should be decoded in the review pass.
	decodesPods() bool
	// handleDecoded is Handle with the Pods decoded already; a nil one is
	// decoded from the request's raw bytes, as Handle does.
	handleDecoded(ctx context.Context, req admission.Request, pod, oldPod *corev1.Pod) admission.Response
}

// decoded is what readReview found besides the AdmissionRequest.
type decoded struct {
	apiVersion, kind string
	pod, oldPod      *corev1.Pod
}

// readReview decodes body into r in one pass, and the Pods too when pods
// is set. The scanner (scanReview) reads what the API server sends. What it
// does not read exactly, encoding/json decodes: it defines what a review
// means, and words any problem with one as the API machinery always has.
// The Pods are then left for Handle, which refuses one that does not
// decode with a 400 verdict naming the field. Only unusual input pays for
// the second pass.
func readReview(body []byte, r *admissionv1.AdmissionRequest, pods bool) (decoded, error) {
	if in, ok := scanReview(body, r, pods); ok {
		return in, nil
	}
	*r = admissionv1.AdmissionRequest{}
	review := admissionv1.AdmissionReview{Request: r}
	if err := json.Unmarshal(body, &review); err != nil {
		return decoded{}, err
	}
	return decoded{apiVersion: review.APIVersion, kind: review.Kind}, nil
}
