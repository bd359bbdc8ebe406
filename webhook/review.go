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
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/review"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body: controller-runtime's
// generous bound, as an UPDATE carries two objects of up to etcd's limit.
const DefaultMaxRequestBytes = 7 << 20

// handler decides one admission request. An error is a resource the path
// does not judge, refused with 400 Bad Request.
type handler interface {
	Handle(ctx context.Context, r *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error)
}

// reviewHandler is the HTTP side of one webhook path. Problems with the HTTP
// request get a 4xx and a plain-text reason, which every client shows best.
type reviewHandler struct {
	handler  handler
	metrics  *Metrics
	log      logr.Logger
	maxBytes int64
}

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
		// A response already started gets this appended: broken, but no crash.
		http.Error(w, "policy-webhook: internal error while judging the request; the webhook's log has the details", http.StatusInternalServerError)
	}()

	if r.Method != http.MethodPost {
		h.metrics.requestError(errMethod)
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "policy-webhook: method "+r.Method+" is not allowed: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		h.metrics.requestError(errContentType)
		http.Error(w, "policy-webhook: content type "+strconv.Quote(ct)+" is not supported: send application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := h.readBody(w, r)
	if err != nil {
		var overloaded *errOverloaded
		if errors.As(err, &overloaded) {
			h.metrics.requestError(errShed)
			shed(w, overloaded)
			return
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.metrics.requestError(errTooLarge)
			http.Error(w, fmt.Sprintf("policy-webhook: the request body is larger than the limit of %d bytes", h.maxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		h.metrics.requestError(errMalformed)
		http.Error(w, "policy-webhook: reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}

	in, err := review.Read(body)
	if err != nil {
		h.metrics.requestError(errMalformed)
		http.Error(w, "policy-webhook: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := h.handler.Handle(r.Context(), in.Request)
	if err != nil {
		h.metrics.requestError(errWrongResource)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Answer in the review's version: v1beta1's envelope is the same as v1.
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

// readBody reads the whole body, refusing more than maxBytes, into a
// buffer sized up front from the announced length, as far as a typical
// review goes: a larger one grows as its bytes arrive, so a client that
// announces megabytes and sends them slowly holds no more than it sent.
const preallocBody = 64 << 10

func (h *reviewHandler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBytes {
		return nil, &http.MaxBytesError{Limit: h.maxBytes}
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0), preallocBody)+bytes.MinRead))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBytes))
	return buf.Bytes(), err
}

// isJSON reports whether a Content-Type names JSON, parameters accepted.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
