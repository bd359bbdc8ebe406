package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body. An UPDATE carries
// two objects, each up to etcd's 1.5 MiB limit and larger again as JSON;
// refusing a legitimate review would fail the user's request, so the bound
// is controller-runtime's generous 7 MiB rather than something tighter.
const DefaultMaxRequestBytes = 7 << 20

// reviewHandler is the HTTP side of one webhook path: it checks the HTTP
// request, decodes the AdmissionReview, asks its admission.Handler for the
// verdict and writes the review back. Problems with the HTTP request
// itself get a 4xx status and a plain-text reason, which is what a person
// with curl, a load generator and the API server's error message all show
// best; anything about the object being admitted is a verdict instead.
type reviewHandler struct {
	handler  admission.Handler
	metrics  *metrics
	log      logr.Logger
	maxBytes int64
	// bodies recycles request bodies (*[]byte) up to maxPooledBody: a
	// review is a few KB read in full for every admission, and nothing
	// decoded from it keeps a reference once the response is written
	// (decoded strings are copies; raw objects are used in the request).
	bodies sync.Pool
}

// maxPooledBody bounds the bodies kept for reuse, so that one huge review
// does not pin megabytes in every pool.
const maxPooledBody = 64 << 10

func newReviewHandler(h admission.Handler, m *metrics, log logr.Logger) *reviewHandler {
	return &reviewHandler{handler: h, metrics: m, log: log, maxBytes: DefaultMaxRequestBytes}
}

var (
	reviewV1      = admissionv1.SchemeGroupVersion.String()
	reviewV1beta1 = admissionv1beta1.SchemeGroupVersion.String()
)

const reviewKind = "AdmissionReview"

func (h *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler { //nolint:errorlint // sentinel value, compared as net/http does
			panic(p)
		}
		h.metrics.requestError(errPanic)
		h.log.Error(fmt.Errorf("panic: %v", p), "Recovered from a panic while serving an admission review",
			"path", r.URL.Path, "stack", string(debug.Stack()))
		// If the response was already started this only appends, which
		// the client sees as a broken response: still not a crash.
		httpError(w, http.StatusInternalServerError, "policy-webhook: internal error while judging the request; the webhook's log has the details")
	}()

	if r.Method != http.MethodPost {
		h.metrics.requestError(errMethod)
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "policy-webhook: method "+r.Method+" is not allowed: POST an AdmissionReview")
		return
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		h.metrics.requestError(errContentType)
		httpError(w, http.StatusUnsupportedMediaType, "policy-webhook: content type "+strconv.Quote(ct)+" is not supported: send application/json")
		return
	}
	buf, body, err := h.readBody(w, r)
	defer h.recycle(buf)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.metrics.requestError(errTooLarge)
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("policy-webhook: the request body is larger than the limit of %d bytes", h.maxBytes))
			return
		}
		h.metrics.requestError(errMalformed)
		httpError(w, http.StatusBadRequest, "policy-webhook: reading the request body: "+err.Error())
		return
	}

	var req admission.Request
	pd, pods := h.handler.(podDecoder)
	pods = pods && pd.decodesPods()
	in, msg := decodeReview(body, &req.AdmissionRequest, pods)
	if msg != "" {
		h.metrics.requestError(errMalformed)
		httpError(w, http.StatusBadRequest, "policy-webhook: "+msg)
		return
	}

	var resp admission.Response
	if pods {
		resp = pd.handleDecoded(r.Context(), req, in.pod, in.oldPod)
	} else {
		resp = h.handler.Handle(r.Context(), req)
	}
	// The response must answer the same review and speak its version: the
	// v1beta1 envelope is field for field the same as v1.
	resp.UID = req.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: in.apiVersion, Kind: reviewKind},
		Response: &resp.AdmissionResponse,
	}
	if out.APIVersion == "" {
		out.APIVersion = reviewV1
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		// The client went away: nothing left to tell it.
		h.metrics.requestError(errWrite)
		h.log.V(1).Info("Writing an admission response failed", "uid", req.UID, "error", err.Error())
	}
	h.metrics.duration(kindOf(req.Kind.Kind), time.Since(start))
}

// readBody reads the whole body, refusing more than maxBytes. A known
// length is checked before reading and sizes the buffer exactly; that
// buffer, when not nil, goes back to the pool with recycle.
func (h *reviewHandler) readBody(w http.ResponseWriter, r *http.Request) (*[]byte, []byte, error) {
	if r.ContentLength > h.maxBytes {
		return nil, nil, &http.MaxBytesError{Limit: h.maxBytes}
	}
	body := http.MaxBytesReader(w, r.Body, h.maxBytes)
	if r.ContentLength >= 0 {
		// net/http stops the body at the announced length.
		buf := h.buffer(int(r.ContentLength))
		if _, err := io.ReadFull(body, *buf); err != nil {
			return buf, nil, err
		}
		return buf, *buf, nil
	}
	b, err := io.ReadAll(body)
	return nil, b, err
}

// buffer returns a body buffer of length n, recycled when one is big
// enough. Its pointer goes back to the pool with recycle: putting the same
// *[]byte back costs no allocation.
func (h *reviewHandler) buffer(n int) *[]byte {
	if n <= maxPooledBody {
		if p, ok := h.bodies.Get().(*[]byte); ok {
			if cap(*p) >= n {
				*p = (*p)[:n]
				return p
			}
			h.bodies.Put(p)
		}
	}
	b := make([]byte, n)
	return &b
}

// recycle keeps a body for a later request. Called when the response has
// been written, as nothing refers to the body after that.
func (h *reviewHandler) recycle(p *[]byte) {
	if p != nil && cap(*p) > 0 && cap(*p) <= maxPooledBody {
		h.bodies.Put(p)
	}
}

// decodeReview decodes body into r (and, with pods, the Pods: see
// readReview). It returns what is wrong, or "".
func decodeReview(body []byte, r *admissionv1.AdmissionRequest, pods bool) (decoded, string) {
	if len(body) == 0 {
		return decoded{}, "the request body is empty: POST an AdmissionReview"
	}
	in, err := readReview(body, r, pods)
	if err != nil {
		return in, "the request body is not a valid AdmissionReview: " + err.Error()
	}
	switch in.apiVersion {
	case reviewV1, reviewV1beta1, "":
	default:
		return in, "AdmissionReview apiVersion " + strconv.Quote(in.apiVersion) + " is not supported: send " + reviewV1
	}
	if in.kind != reviewKind && in.kind != "" {
		return in, "expected kind AdmissionReview, got " + strconv.Quote(in.kind)
	}
	// r was the caller's value before decoding, to save a copy: without
	// a "request" key it stays there, empty.
	if r.UID == "" && r.Operation == "" && r.Kind.Kind == "" && r.Resource.Resource == "" && len(r.Object.Raw) == 0 {
		return in, "the AdmissionReview has no request"
	}
	if r.UID == "" {
		return in, "the AdmissionReview request has no uid"
	}
	return in, ""
}

// isJSON reports whether a Content-Type names JSON. The API server sends
// exactly "application/json"; parameters such as a charset are accepted.
func isJSON(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func httpError(w http.ResponseWriter, code int, msg string) {
	http.Error(w, msg, code)
}
