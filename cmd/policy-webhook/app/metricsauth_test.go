package app

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// A token the API server's TokenReview does not authenticate is 401, even
// when the review carries an error (a malformed token); one it
// authenticates but does not authorize is 403; an API server that cannot
// be asked is 503; the reader's token gets the metrics.
func TestMetricsAuthentication(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/apis/authentication.k8s.io/v1/tokenreviews":
			var tr authenticationv1.TokenReview
			if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			switch tr.Spec.Token {
			case "reader", "stranger":
				tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: tr.Spec.Token}}
			case "forbidden-to-review":
				w.WriteHeader(http.StatusForbidden)
				_ = json.NewEncoder(w).Encode(&metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
					Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden, Message: "tokenreviews is forbidden"})
				return
			default:
				// What kube-apiserver answers for a token it cannot read.
				tr.Status = authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, square/go-jose: compact JWS format must have three parts]"}
			}
			_ = json.NewEncoder(w).Encode(&tr)
		case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
			var sar authorizationv1.SubjectAccessReview
			if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			sar.Status.Allowed = sar.Spec.User == "reader" && sar.Spec.NonResourceAttributes != nil && sar.Spec.NonResourceAttributes.Path == "/metrics"
			_ = json.NewEncoder(w).Encode(&sar)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	// An address nothing listens on: the API server down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()

	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) })
	handler := func(host string) http.Handler {
		t.Helper()
		cfg := &rest.Config{Host: host}
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		filter, err := authenticateAndAuthorize(cfg, hc)
		if err != nil {
			t.Fatal(err)
		}
		h, err := filter(logr.Discard(), metrics)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	up, unreachable := handler(api.URL), handler(down)
	for name, c := range map[string]struct {
		h     http.Handler
		token string
		code  int
		body  string
	}{
		"no token":                         {up, "", http.StatusUnauthorized, "Unauthorized"},
		"a token the API server rejects":   {up, "not-a-token", http.StatusUnauthorized, "Unauthorized"},
		"a token not authorized":           {up, "stranger", http.StatusForbidden, "user stranger may not get /metrics"},
		"the reader's token":               {up, "reader", http.StatusOK, "metrics"},
		"the webhook may not review":       {up, "forbidden-to-review", http.StatusServiceUnavailable, "could not review the token"},
		"the API server cannot be reached": {unreachable, "reader", http.StatusServiceUnavailable, "could not review the token"},
	} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, req)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s: HTTP %d %q, want %d %q", name, rec.Code, rec.Body.String(), c.code, c.body)
		}
	}
}
