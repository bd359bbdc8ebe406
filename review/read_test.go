package review

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"

	"github.com/policy-webhook/policy-webhook/policy"
)

const podReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1",` +
	`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
	`"namespace":"team-a","operation":"CREATE","userInfo":{"username":"alice","groups":["system:authenticated"]},` +
	`"object":{"metadata":{"name":"web","namespace":"team-a"},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`

func TestVersionsAreTheAPIs(t *testing.T) {
	if V1 != admissionv1.SchemeGroupVersion.String() || V1beta1 != admissionv1beta1.SchemeGroupVersion.String() {
		t.Errorf("V1, V1beta1 = %q, %q; the API says %q, %q", V1, V1beta1,
			admissionv1.SchemeGroupVersion.String(), admissionv1beta1.SchemeGroupVersion.String())
	}
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"pod review", podReview, ""},
		{"empty", "", "the request body is empty"},
		{"not JSON", "{", "not a valid AdmissionReview"},
		{"unknown version", strings.Replace(podReview, "admission.k8s.io/v1", "admission.k8s.io/v2", 1), `apiVersion "admission.k8s.io/v2" is not supported`},
		{"other kind", strings.Replace(podReview, `"kind":"AdmissionReview"`, `"kind":"Pod"`, 1), `expected kind AdmissionReview, got "Pod"`},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "has no request"},
		{"no uid", strings.Replace(podReview, `"uid":"1",`, "", 1), "has no uid"},
		// Kubernetes decodes case-sensitively: "Request" is not "request".
		{"case differs", strings.Replace(podReview, `"request"`, `"Request"`, 1), "has no request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Read([]byte(tc.body))
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			case tc.err == "":
				req, err := NewRequest(KindOf(r.Request), r.Request)
				if err != nil {
					t.Fatal(err)
				}
				if req.Kind != policy.KindPod || req.Pod.Spec.Containers[0].Image != "nginx" || r.Request.UserInfo.Username != "alice" {
					t.Fatalf("request %+v", req)
				}
			}
		})
	}
}

func TestKindAndJudged(t *testing.T) {
	for _, tc := range []struct {
		r      admissionv1.AdmissionRequest
		kind   policy.Kind
		judged bool
	}{
		{admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: gvr("", "pods")}, policy.KindPod, true},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Update, Resource: gvr("", "pods"), SubResource: "ephemeralcontainers"}, policy.KindPod, true},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Update, Resource: gvr("", "pods"), SubResource: "status"}, policy.KindPod, false},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Delete, Resource: gvr("", "pods")}, policy.KindPod, false},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: gvr("stable.example.com", "myapples")}, policy.KindMyApple, true},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Update, Resource: gvr("stable.example.com", "myapples"), SubResource: "ephemeralcontainers"}, policy.KindMyApple, false},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: gvr("", "configmaps")}, "", false},
		{admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: gvr("evil.io", "pods")}, "", false},
	} {
		kind := KindOf(&tc.r)
		if kind != tc.kind || (kind != "" && Judged(kind, &tc.r) != tc.judged) {
			t.Errorf("%s %s/%s: kind %q judged %v, want %q %v", tc.r.Operation, tc.r.Resource.Resource, tc.r.SubResource, kind, Judged(kind, &tc.r), tc.kind, tc.judged)
		}
	}
}

// FuzzRead: whatever body reaches the webhook, reading it and turning it
// into a request never panics; an envelope it accepts decodes alike with
// the reference decoder (never more leniently), and judging it never panics.
func FuzzRead(f *testing.F) {
	f.Add([]byte(podReview))
	f.Add([]byte(`{"request":{"uid":"1","resource":{"group":"stable.example.com","resource":"myapples"},"operation":"UPDATE","object":{"spec":{"quantity":5}},"oldObject":{"spec":{"quantity":7}}}}`))
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Read(body)
		if err != nil {
			return
		}
		var ref admissionv1.AdmissionReview
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &ref); err != nil {
			t.Fatalf("Read accepts an AdmissionReview the reference refuses (%v): %q", err, body)
		}
		if ref.Request == nil || ref.Request.UID != r.Request.UID || ref.Request.Operation != r.Request.Operation ||
			ref.Request.Resource != r.Request.Resource || ref.Request.Namespace != r.Request.Namespace {
			t.Fatalf("Read %+v, reference %+v", r.Request, ref.Request)
		}
		kind := KindOf(r.Request)
		if kind == "" || !Judged(kind, r.Request) {
			return
		}
		req, err := NewRequest(kind, r.Request)
		if err != nil {
			return
		}
		d := set.Evaluate(req, nil)
		_ = d.Message()
		_ = d.Warnings()
	})
}

func gvr(group, resource string) metav1.GroupVersionResource {
	return metav1.GroupVersionResource{Group: group, Version: "v1", Resource: resource}
}
