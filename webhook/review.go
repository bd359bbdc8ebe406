package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/review"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body. An UPDATE carries
// two objects, each up to etcd's 1.5 MiB limit and larger again as JSON;
// refusing a legitimate review would fail the user's request, so the bound
// is controller-runtime's generous 7 MiB rather than something tighter.
const DefaultMaxRequestBytes = 7 << 20

// handler decides one admission request; reviewHandler does everything
// HTTP around it. An error is a request that should never have come to the
// path: it is refused with its HTTP status rather than answered.
type handler interface {
	Handle(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error)
}

// httpError is a request refused at the HTTP level, with its status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// reviewHandler is the HTTP side of one webhook path: it checks the HTTP
// request, decodes the AdmissionReview, asks its handler for the verdict
// and writes the review back. Problems with the HTTP request itself get a
// 4xx status and a plain-text reason, which is what a person with curl, a
// load generator and the API server's error message all show best;
// anything about the object being admitted is a verdict instead.
type reviewHandler struct {
	handler  handler
	metrics  *Metrics
	log      logr.Logger
	maxBytes int64
	// bodies recycles body buffers up to maxPooledBody: a review is a few
	// KB read in full for every admission, and nothing decoded from it
	// keeps a reference once the response is written.
	bodies sync.Pool
}

// maxPooledBody bounds the buffers kept for reuse, so that one huge review
// does not pin megabytes in the pool.
const maxPooledBody = 64 << 10

func newReviewHandler(h handler, m *Metrics, log logr.Logger) *reviewHandler {
	return &reviewHandler{handler: h, metrics: m, log: log, maxBytes: DefaultMaxRequestBytes}
}

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
		writeError(w, http.StatusInternalServerError, "policy-webhook: internal error while judging the request; the webhook's log has the details")
	}()

	if r.Method != http.MethodPost {
		h.metrics.requestError(errMethod)
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "policy-webhook: method "+r.Method+" is not allowed: POST an AdmissionReview")
		return
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		h.metrics.requestError(errContentType)
		writeError(w, http.StatusUnsupportedMediaType, "policy-webhook: content type "+strconv.Quote(ct)+" is not supported: send application/json")
		return
	}
	buf, err := h.readBody(w, r)
	defer h.recycle(buf)
	if err != nil {
		if isOverloaded(err) {
			h.metrics.requestError(errShed)
			shed(w, err)
			return
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.metrics.requestError(errTooLarge)
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("policy-webhook: the request body is larger than the limit of %d bytes", h.maxBytes))
			return
		}
		h.metrics.requestError(errMalformed)
		writeError(w, http.StatusBadRequest, "policy-webhook: reading the request body: "+err.Error())
		return
	}

	in, err := review.Read(buf.Bytes())
	if err != nil {
		h.metrics.requestError(errMalformed)
		writeError(w, http.StatusBadRequest, "policy-webhook: "+err.Error())
		return
	}
	resp, err := h.handler.Handle(r.Context(), in.Request)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{code: http.StatusInternalServerError, msg: err.Error()}
		}
		h.metrics.requestError(errWrongResource)
		writeError(w, he.code, he.msg)
		return
	}
	// The response must answer the same review and speak its version: the
	// v1beta1 envelope is field for field the same as v1.
	resp.UID = in.Request.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: in.APIVersion, Kind: review.Kind},
		Response: resp,
	}
	if out.APIVersion == "" {
		out.APIVersion = review.V1
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.MarshalWrite(w, &out); err != nil {
		// The client went away: nothing left to tell it.
		h.metrics.requestError(errWrite)
		h.log.V(1).Info("Writing an admission response failed", "uid", in.Request.UID, "error", err.Error())
	}
	h.metrics.duration(in.Request.Kind.Kind, time.Since(start))
}

// readBody reads the whole body, refusing more than maxBytes. The buffer
// grows with the bytes that arrive, never to a length the client merely
// announces; it goes back to the pool with recycle.
func (h *reviewHandler) readBody(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, error) {
	if r.ContentLength > h.maxBytes {
		return nil, &http.MaxBytesError{Limit: h.maxBytes}
	}
	buf, _ := h.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBytes))
	return buf, err
}

// recycle keeps a body buffer for a later request. Called when the
// response has been written, as nothing refers to the body after that.
func (h *reviewHandler) recycle(buf *bytes.Buffer) {
	if buf != nil && buf.Cap() <= maxPooledBody {
		h.bodies.Put(buf)
	}
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

func writeError(w http.ResponseWriter, code int, msg string) {
	http.Error(w, msg, code)
}
