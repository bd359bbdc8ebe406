package webhook

import (
	"bytes"
	"context"
	"encoding/json"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/policy-webhook/policy-webhook/internal/jsonscan"
	"github.com/policy-webhook/policy-webhook/policy"
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

// reviewIn is an AdmissionReview as read off the wire: the request is
// admissionv1's, but for where object and oldObject go.
type reviewIn struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Request    *requestIn `json:"request"`
}

// requestIn shadows the AdmissionRequest's object and oldObject (a
// shallower field of the same name wins, as in Go) so that they are
// decoded by objectIn.
type requestIn struct {
	*admissionv1.AdmissionRequest `json:",inline"`
	Object                        objectIn `json:"object"`
	OldObject                     objectIn `json:"oldObject"`
	Options                       objectIn `json:"options"`
}

// objectIn takes a raw object of the review without copying it: its
// bytes are a slice of the request body, which lives as long as the
// request. When asked, and when the resource read so far says pods (the
// API server writes resource before object), it decodes the Pod in the
// same pass.
type objectIn struct {
	body []byte
	raw  *runtime.RawExtension
	req  *admissionv1.AdmissionRequest
	pods bool
	pod  *corev1.Pod
}

var _ jsonv2.UnmarshalerFrom = (*objectIn)(nil)

func (o *objectIn) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	start := dec.InputOffset()
	if dec.PeekKind() == 'n' {
		// null: no object, as RawExtension reads it.
		_, err := dec.ReadToken()
		return err
	}
	if o.pods && policy.KindOf(o.req) == policy.KindPod {
		pod, err := policy.DecodePodFrom(dec)
		if err != nil {
			return err
		}
		o.pod = pod
	} else if err := dec.SkipValue(); err != nil {
		return err
	}
	// From after the member name to the end of the value: the name
	// separator and whitespace come first.
	o.raw.Raw = bytes.TrimLeft(o.body[start:dec.InputOffset()], " \t\r\n:")
	return nil
}

// decoded is what readReview found besides the AdmissionRequest.
type decoded struct {
	apiVersion, kind string
	pod, oldPod      *corev1.Pod
}

// readReview decodes body into r in one pass, and the Pods too when pods
// is set. The scanner (scanReview) reads what the API server sends; what it
// does not read exactly goes to the json/v2 decoder, and anything that one
// refuses (syntax, a wrong type in a field read) is decoded again with
// encoding/json, which finds the same problem and words it as the API
// machinery always did; a Pod the fast pass could not decode is then left
// for Handle to refuse with a 400 verdict that names the field. Only
// unusual input pays for that.
func readReview(body []byte, r *admissionv1.AdmissionRequest, pods bool) (decoded, error) {
	if in, ok := scanReview(body, r, pods); ok {
		return in, nil
	}
	*r = admissionv1.AdmissionRequest{}
	return readReviewExact(body, r, pods)
}

// readReviewExact is readReview for what the scanner does not read: the
// json/v2 decoder with encoding/json's semantics, and encoding/json itself
// to word an error.
func readReviewExact(body []byte, r *admissionv1.AdmissionRequest, pods bool) (decoded, error) {
	in := reviewIn{Request: &requestIn{AdmissionRequest: r}}
	rq := in.Request
	rq.Object = objectIn{body: body, raw: &r.Object, req: r, pods: pods}
	rq.OldObject = objectIn{body: body, raw: &r.OldObject, req: r, pods: pods}
	rq.Options = objectIn{body: body, raw: &r.Options, req: r}
	err := jsonv2.Unmarshal(body, &in, jsonscan.DecodeOptions)
	if err == nil {
		return decoded{apiVersion: in.APIVersion, kind: in.Kind, pod: rq.Object.pod, oldPod: rq.OldObject.pod}, nil
	}
	*r = admissionv1.AdmissionRequest{}
	review := admissionv1.AdmissionReview{Request: r}
	if lerr := json.Unmarshal(body, &review); lerr != nil {
		return decoded{}, lerr
	}
	// The envelope is sound and the Pod is not: Handle decodes it again
	// and refuses it with the reason.
	return decoded{apiVersion: review.APIVersion, kind: review.Kind}, nil
}
