package webhook

import (
	"encoding/json"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/policy"
)

// TestReadReviewSameAsEncodingJSON: the one-pass read gives the
// AdmissionRequest encoding/json gives, raw objects byte for byte, and
// the Pods DecodeObject gives for them, whatever the order of the keys.
func TestReadReviewSameAsEncodingJSON(t *testing.T) {
	bodies := reviewSeeds(t)
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) { checkReadReview(t, body) })
	}
	// The scanner reads what the API server sends; the exact decoder is
	// only for the unusual.
	for _, name := range []string{"bench", "pod create", "pod update", "ephemeral", "myapple", "object first", "null objects", "deployment"} {
		var r admissionv1.AdmissionRequest
		if _, ok := scanReview(bodies[name], &r, true); !ok {
			t.Errorf("%s: the scanner gave up", name)
		}
	}
	// The pass itself is what the pods path relies on for speed.
	for _, name := range []string{"bench", "pod update", "ephemeral"} {
		var r admissionv1.AdmissionRequest
		in, err := readReview(bodies[name], &r, true)
		if err != nil || in.pod == nil || (len(r.OldObject.Raw) > 0) != (in.oldPod != nil) {
			t.Errorf("%s: Pods not decoded in the pass: %v %v %v", name, err, in.pod, in.oldPod)
		}
	}
}

// reviewSeeds are the bodies TestReadReviewSameAsEncodingJSON checks.
func reviewSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	upd := podRequest(t, admissionv1.Update, "", withImage(goodPod(), "nginx"), goodPod())
	upd.DryRun = ptr.To(true)
	return map[string][]byte{
		"bench":          benchReview(t),
		"pod create":     reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil)),
		"pod update":     reviewBody(t, upd),
		"ephemeral":      reviewBody(t, podRequest(t, admissionv1.Update, policy.SubResEphemeral, goodPod(), goodPod())),
		"myapple":        reviewBody(t, appleRequest(t, admissionv1.Create, apple("red", 2), nil)),
		"object first":   []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"name":"a"},"spec":{"containers":[{"image":"nginx"}]}},"uid":"1","resource":{"version":"v1","resource":"pods"},"operation":"CREATE"}}`),
		"null objects":   []byte(`{"request":{"uid":"1","resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":null,"oldObject":null,"options":null}}`),
		"spaced, cased":  []byte("{\"request\" : {\"UID\":\"1\",\"Resource\":{\"version\":\"v1\",\"resource\":\"pods\"},\"operation\":\"UPDATE\",\"object\" :\n {\"metadata\":{\"name\":\"a\"}} ,\"OldObject\":\t{\"spec\":{\"hostPID\":true}}}}"),
		"deployment":     []byte(`{"request":{"uid":"1","resource":{"group":"apps","version":"v1","resource":"deployments"},"operation":"CREATE","object":{"spec":{"template":{}}}}}`),
		"pod read wrong": []byte(`{"request":{"uid":"1","resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"containers":"web"}}}}`),
	}
}

// checkReadReview: whatever encoding/json reads as an AdmissionReview,
// readReview reads the same, with and without decoding Pods in the pass,
// and a Pod it decodes is the one DecodeObject gives for the raw bytes.
func checkReadReview(t *testing.T, body []byte) {
	t.Helper()
	var want admissionv1.AdmissionReview
	if json.Unmarshal(body, &want) != nil {
		return
	}
	if want.Request == nil {
		want.Request = &admissionv1.AdmissionRequest{}
	}
	for _, pods := range []bool{true, false} {
		// What the scanner reads, it reads exactly as encoding/json does,
		// down to nil and empty lists, which Semantic.DeepEqual does not
		// tell apart.
		var scanned admissionv1.AdmissionRequest
		if sin, ok := scanReview(body, &scanned, pods); ok {
			if !reflect.DeepEqual(&scanned, want.Request) || sin.apiVersion != want.APIVersion || sin.kind != want.Kind {
				t.Fatalf("pods=%v, %q:\nscanner       %+v %+v\nencoding/json %+v", pods, body, scanned, sin, want)
			}
		}
		var got admissionv1.AdmissionRequest
		in, err := readReview(body, &got, pods)
		if err != nil {
			t.Fatalf("pods=%v: encoding/json reads %q, readReview does not: %v", pods, body, err)
		}
		if !apiequality.Semantic.DeepEqual(&got, want.Request) || in.apiVersion != want.APIVersion || in.kind != want.Kind {
			t.Fatalf("pods=%v, %q:\ngot  %+v\nwant %+v", pods, body, got, want.Request)
		}
		for _, o := range []struct {
			raw []byte
			pod *corev1.Pod
		}{{got.Object.Raw, in.pod}, {got.OldObject.Raw, in.oldPod}} {
			if o.pod == nil {
				continue
			}
			if !pods || policy.KindOf(&got) != policy.KindPod {
				t.Fatalf("pods=%v: decoded a Pod for %q", pods, body)
			}
			p, _, err := policy.DecodeObject(policy.KindPod, o.raw)
			if err != nil {
				t.Fatalf("decoded in the pass, but DecodeObject(%q): %v", o.raw, err)
			}
			if !apiequality.Semantic.DeepEqual(o.pod, p) {
				t.Fatalf("in-pass Pod %+v, DecodeObject %+v", o.pod, p)
			}
		}
	}
}

// FuzzReadReview: the one-pass read agrees with encoding/json on any body.
func FuzzReadReview(f *testing.F) {
	for _, body := range reviewSeeds(f) {
		f.Add(body)
	}
	f.Fuzz(checkReadReview)
}
