package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNoopJudgesTheRegistry(t *testing.T) {
	review := func(images ...string) string {
		var cs []string
		for _, img := range images {
			cs = append(cs, `{"name":"c","image":"`+img+`"}`)
		}
		return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","object":{"spec":{"containers":[` +
			strings.Join(cs, ",") + `]}}}}`
	}
	for _, tc := range []struct {
		body    string
		allowed bool
	}{
		{review("registry.example.com/a:1", "ghcr.io/acme/b@sha256:00"), true},
		{review("registry.example.com/a:1", "docker.io/library/nginx:1.27"), false},
	} {
		rec := httptest.NewRecorder()
		noopHandle(rec, httptest.NewRequest(http.MethodPost, "/validate-pods", strings.NewReader(tc.body)))
		var out noopResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d %s", rec.Code, rec.Body)
		}
		if out.Response.UID != "u-1" || out.Response.Allowed != tc.allowed || out.Kind != "AdmissionReview" {
			t.Errorf("%s: got %+v", tc.body, out)
		}
	}
	rec := httptest.NewRecorder()
	noopHandle(rec, httptest.NewRequest(http.MethodPost, "/validate-pods", strings.NewReader("{")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("malformed review: HTTP %d, want 400", rec.Code)
	}
}
