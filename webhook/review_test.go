package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
)

// chunked hides a body's length, as a client streaming it would.
type chunked struct{ io.Reader }

func TestReviewHTTPErrors(t *testing.T) {
	good := func(t *testing.T) []byte {
		return reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))
	}
	tests := []struct {
		name        string
		method      string
		contentType string
		body        func(t *testing.T) []byte
		hideLength  bool
		maxBytes    int64

		code   int
		msg    string
		reason string
	}{
		{name: "GET is not allowed", method: http.MethodGet, contentType: "application/json", body: good,
			code: 405, msg: "policy-webhook: method GET is not allowed: POST an AdmissionReview", reason: errMethod},
		{name: "PUT is not allowed", method: http.MethodPut, contentType: "application/json", body: good,
			code: 405, msg: "method PUT is not allowed", reason: errMethod},
		{name: "text/plain is unsupported", contentType: "text/plain", body: good,
			code: 415, msg: `policy-webhook: content type "text/plain" is not supported: send application/json`, reason: errContentType},
		{name: "missing content type is unsupported", contentType: "", body: good,
			code: 415, msg: `content type "" is not supported`, reason: errContentType},
		{name: "YAML is unsupported", contentType: "application/yaml", body: good,
			code: 415, msg: "send application/json", reason: errContentType},
		{name: "oversized body with a length", contentType: "application/json", body: good, maxBytes: 256,
			code: 413, msg: "policy-webhook: the request body is larger than the limit of 256 bytes", reason: errTooLarge},
		{name: "oversized body streamed", contentType: "application/json", body: good, maxBytes: 256, hideLength: true,
			code: 413, msg: "larger than the limit of 256 bytes", reason: errTooLarge},
		{name: "empty body", contentType: "application/json", body: func(*testing.T) []byte { return nil },
			code: 400, msg: "policy-webhook: the request body is empty: POST an AdmissionReview", reason: errMalformed},
		{name: "malformed JSON", contentType: "application/json", body: func(*testing.T) []byte { return []byte(`{"apiVersion":"admission.k8s.io/v1",`) },
			code: 400, msg: "policy-webhook: the request body is not a valid AdmissionReview: jsontext: unexpected EOF", reason: errMalformed},
		{name: "wrong JSON type", contentType: "application/json", body: func(*testing.T) []byte { return []byte(`{"request":[]}`) },
			code: 400, msg: "unmarshal JSON array into Go v1.AdmissionRequest within \"/request\"", reason: errMalformed},
		{name: "no request", contentType: "application/json",
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)
			},
			code: 400, msg: "policy-webhook: the AdmissionReview has no request", reason: errMalformed},
		{name: "null request", contentType: "application/json",
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`)
			},
			code: 400, msg: "the AdmissionReview has no request", reason: errMalformed},
		{name: "no uid", contentType: "application/json",
			body: func(t *testing.T) []byte {
				r := podRequest(t, admissionv1.Create, "", goodPod(), nil)
				r.UID = ""
				return reviewBody(t, r)
			},
			code: 400, msg: "policy-webhook: the AdmissionReview request has no uid", reason: errMalformed},
		{name: "unknown apiVersion", contentType: "application/json",
			body: func(t *testing.T) []byte {
				return bytes.Replace(good(t), []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v2"`), 1)
			},
			code: 400, msg: `AdmissionReview apiVersion "admission.k8s.io/v2" is not supported: send admission.k8s.io/v1`, reason: errMalformed},
		{name: "wrong kind", contentType: "application/json",
			body: func(t *testing.T) []byte {
				return bytes.Replace(good(t), []byte(`"AdmissionReview"`), []byte(`"Pod"`), 1)
			},
			code: 400, msg: `expected kind AdmissionReview, got "Pod"`, reason: errMalformed},
	}
	set := compileSet(t, testPolicyNamespace, handlerPolicies...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, &setJudge{set: set, synced: true}, false)
			h := srv.handlers[PathPods].(*reviewHandler)
			if tc.maxBytes > 0 {
				h.maxBytes = tc.maxBytes
			}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			var body io.Reader = bytes.NewReader(tc.body(t))
			if tc.hideLength {
				body = chunked{body}
			}
			req := httptest.NewRequest(method, PathPods, body)
			if tc.hideLength {
				req.ContentLength = -1
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tc.code {
				t.Errorf("HTTP %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("body %q lacks %q", rec.Body, tc.msg)
			}
			if tc.code == 405 && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST")
			}
			if got := testutil.ToFloat64(srv.metrics.requestErrors.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("request_errors_total{%s} = %v, want 1", tc.reason, got)
			}
			if got := testutil.CollectAndCount(srv.metrics.admissions); got != 0 {
				t.Errorf("a refused HTTP request counted as an admission")
			}
		})
	}
}

// A charset parameter is still JSON; the API server sends none, but a
// client library may.
func TestReviewAcceptsJSONWithParameters(t *testing.T) {
	srv := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	req := httptest.NewRequest(http.MethodPost, PathPods, bytes.NewReader(reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil))))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	srv.handlers[PathPods].ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
}

// A v1beta1 review is answered in v1beta1, the version the API server
// asked in; the envelope is otherwise the same.
func TestReviewAnswersInTheRequestVersion(t *testing.T) {
	srv := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	r := podRequest(t, admissionv1.Create, "", withImage(goodPod(), "nginx"), nil)
	body := bytes.Replace(reviewBody(t, r), []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1)
	rec := srv.post(t, PathPods, body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1beta1" || out.Response == nil || out.Response.UID != r.UID || out.Response.Allowed {
		t.Fatalf("response %s", rec.Body)
	}
}
