package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/policy"
)

// TestReadReviewSameAsEncodingJSON: the one-pass read gives the
// AdmissionRequest encoding/json gives, raw objects byte for byte, and
// the Pods DecodeObject gives for them, whatever the order of the keys.
func TestReadReviewSameAsEncodingJSON(t *testing.T) {
	upd := podRequest(t, admissionv1.Update, "", withImage(goodPod(), "nginx"), goodPod())
	upd.DryRun = ptr.To(true)
	bodies := map[string][]byte{
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
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var want admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatal(err)
			}
			for _, pods := range []bool{true, false} {
				var got admissionv1.AdmissionRequest
				in, err := readReview(body, &got, pods)
				if err != nil {
					t.Fatalf("pods=%v: %v", pods, err)
				}
				if !apiequality.Semantic.DeepEqual(&got, want.Request) || in.apiVersion != want.APIVersion || in.kind != want.Kind {
					t.Fatalf("pods=%v:\ngot  %+v\nwant %+v", pods, got, want.Request)
				}
				if !pods || policy.KindOf(&got) != policy.KindPod || strings.Contains(name, "wrong") {
					if in.pod != nil || in.oldPod != nil {
						t.Fatalf("pods=%v: decoded a Pod for %s", pods, name)
					}
					continue
				}
				for _, o := range []struct {
					raw []byte
					pod any
				}{{got.Object.Raw, in.pod}, {got.OldObject.Raw, in.oldPod}} {
					if len(o.raw) == 0 {
						continue
					}
					p, _, err := policy.DecodeObject(policy.KindPod, o.raw)
					if err != nil {
						t.Fatal(err)
					}
					if name == "object first" {
						// The resource came after the object: decoded later,
						// from the raw bytes.
						continue
					}
					if !apiequality.Semantic.DeepEqual(o.pod, p) {
						t.Fatalf("in-pass Pod %+v, DecodeObject %+v", o.pod, p)
					}
				}
			}
		})
	}
}
