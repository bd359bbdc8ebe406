package policy

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team-a","labels":{"app":"web"}},
"spec":{"initContainers":[{"name":"init","image":"busybox:1.36"}],"containers":[{"name":"web","image":"nginx","securityContext":{"privileged":true}}],
"ephemeralContainers":[{"name":"debug","image":"busybox"}]}}`

const appleJSON = `{"apiVersion":"stable.example.com/v1","kind":"MyApple","metadata":{"name":"gala","namespace":"team-a"},"spec":{"color":"red","size":"small","quantity":3}}`

func TestDecodeObject(t *testing.T) {
	pod, a, err := DecodeObject(KindPod, []byte(podJSON))
	if err != nil || a != nil {
		t.Fatalf("Pod: %v %v", err, a)
	}
	if pod.Name != "web" || len(pod.Spec.InitContainers) != 1 || pod.Spec.Containers[0].Image != "nginx" || !*pod.Spec.Containers[0].SecurityContext.Privileged || pod.Spec.EphemeralContainers[0].Name != "debug" {
		t.Errorf("decoded Pod %+v", pod)
	}
	pod, a, err = DecodeObject(KindMyApple, []byte(appleJSON))
	if err != nil || pod != nil {
		t.Fatalf("MyApple: %v %v", err, pod)
	}
	if a.Name != "gala" || a.Namespace != "team-a" || a.Spec != (MyAppleSpec{Color: "red", Size: "small", Quantity: 3}) {
		t.Errorf("decoded MyApple %+v", a)
	}

	for _, tt := range []struct{ kind, raw, err string }{
		{"Deployment", `{}`, `kind "Deployment" is not judged`},
		{KindPod, `{"spec":`, "decoding Pod: unexpected end of JSON input"},
		{KindPod, `{"spec":{"containers":"x"}}`, "decoding Pod: json: cannot unmarshal string into Go struct field"},
		{KindMyApple, `{"spec":{"quantity":"many"}}`, "decoding MyApple: json: cannot unmarshal string into Go struct field"},
		{KindMyApple, `[]`, "decoding MyApple: json: cannot unmarshal array"},
	} {
		_, _, err := DecodeObject(tt.kind, []byte(tt.raw))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("DecodeObject(%s, %s) = %v, want %q", tt.kind, tt.raw, err, tt.err)
		}
	}
}

func admission(op admissionv1.Operation, group, resource, sub, ns, obj, old string) *admissionv1.AdmissionRequest {
	r := &admissionv1.AdmissionRequest{
		Operation:   op,
		Resource:    metav1.GroupVersionResource{Group: group, Version: "v1", Resource: resource},
		SubResource: sub,
		Namespace:   ns,
		Object:      runtime.RawExtension{Raw: []byte(obj)},
	}
	if old != "" {
		r.OldObject = runtime.RawExtension{Raw: []byte(old)}
	}
	return r
}

func TestRequestFromAdmission(t *testing.T) {
	req, err := RequestFromAdmission(admission(admissionv1.Create, "", "pods", "", "team-a", podJSON, ""))
	if err != nil {
		t.Fatal(err)
	}
	if req.Kind != KindPod || req.Operation != Create || req.Namespace != "team-a" || req.Pod == nil || req.OldPod != nil || req.Name() != "web" {
		t.Errorf("pod CREATE: %+v", req)
	}

	req, err = RequestFromAdmission(admission(admissionv1.Update, "", "pods", "ephemeralcontainers", "team-a", podJSON, podJSON))
	if err != nil {
		t.Fatal(err)
	}
	if req.Kind != KindPod || req.Operation != Update || req.SubResource != SubResEphemeral || req.OldPod == nil {
		t.Errorf("ephemeralcontainers UPDATE: %+v", req)
	}

	// The namespace comes from the object when the request has none.
	req, err = RequestFromAdmission(admission(admissionv1.Update, GroupMyApple, "myapples", "", "", appleJSON, appleJSON))
	if err != nil {
		t.Fatal(err)
	}
	if req.Kind != KindMyApple || req.Namespace != "team-a" || req.MyApple.Spec.Quantity != 3 || req.OldMyApple == nil {
		t.Errorf("myapple UPDATE: %+v", req)
	}

	gen := admission(admissionv1.Create, "", "pods", "", "team-a", `{"metadata":{"generateName":"web-"},"spec":{}}`, "")
	if req, err := RequestFromAdmission(gen); err != nil || req.Name() != "web-*" {
		t.Errorf("generateName: %v %q", err, req.Name())
	}

	for _, tt := range []struct {
		r   *admissionv1.AdmissionRequest
		err string
	}{
		{admission(admissionv1.Create, "apps", "deployments", "", "team-a", `{}`, ""), "resource apps/v1, Resource=deployments is not judged"},
		{admission(admissionv1.Create, "", "configmaps", "", "team-a", `{}`, ""), "is not judged"},
		{admission(admissionv1.Create, "", "pods", "", "team-a", ``, ""), "request.object is empty"},
		{admission(admissionv1.Create, "", "pods", "", "team-a", `{"spec":1}`, ""), "request.object: decoding Pod"},
		{admission(admissionv1.Update, "", "pods", "", "team-a", podJSON, `{"spec":1}`), "request.oldObject: decoding Pod"},
	} {
		if _, err := RequestFromAdmission(tt.r); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("RequestFromAdmission(%s): %v, want %q", tt.r.Resource, err, tt.err)
		}
	}
}

// TestAdmissionEndToEnd decodes a request and judges it, as the webhook does.
func TestAdmissionEndToEnd(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  disallowedTags: [latest]\n  forbidPrivileged: true\n")
	req, err := RequestFromAdmission(admission(admissionv1.Create, "", "pods", "", "team-a", podJSON, ""))
	if err != nil {
		t.Fatal(err)
	}
	d := set.Evaluate(req, testCluster())
	checkViolations(t, d.Violations,
		want{ruleTags, "spec.containers[0].image", `image "nginx" has no tag`},
		want{rulePrivileged, "spec.containers[0].securityContext.privileged", `container "web" is privileged`},
		want{ruleTags, "spec.ephemeralContainers[0].image", `image "busybox" has no tag`},
	)
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		resource metav1.GroupVersionResource
		kind     metav1.GroupVersionKind
		want     string
	}{
		{metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, metav1.GroupVersionKind{}, KindPod},
		{metav1.GroupVersionResource{Group: GroupMyApple, Version: "v1", Resource: "myapples"}, metav1.GroupVersionKind{}, KindMyApple},
		{metav1.GroupVersionResource{Group: "other.example.com", Version: "v1", Resource: "myapples"}, metav1.GroupVersionKind{}, ""},
		{metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "pods"}, metav1.GroupVersionKind{}, ""},
		{metav1.GroupVersionResource{}, metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, KindPod},
		{metav1.GroupVersionResource{}, metav1.GroupVersionKind{Group: GroupMyApple, Version: "v1", Kind: "MyApple"}, KindMyApple},
		{metav1.GroupVersionResource{}, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, ""},
	}
	for _, tt := range tests {
		if got := KindOf(&admissionv1.AdmissionRequest{Resource: tt.resource, Kind: tt.kind}); got != tt.want {
			t.Errorf("KindOf(%v, %v) = %q, want %q", tt.resource, tt.kind, got, tt.want)
		}
	}
}

func TestIsJudged(t *testing.T) {
	pods := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	apples := metav1.GroupVersionResource{Group: GroupMyApple, Version: "v1", Resource: ResourceApples}
	tests := []struct {
		name string
		r    admissionv1.AdmissionRequest
		want bool
	}{
		{"pod create", admissionv1.AdmissionRequest{Resource: pods, Operation: admissionv1.Create}, true},
		{"pod update", admissionv1.AdmissionRequest{Resource: pods, Operation: admissionv1.Update}, true},
		{"pod delete", admissionv1.AdmissionRequest{Resource: pods, Operation: admissionv1.Delete}, false},
		{"pod exec connect", admissionv1.AdmissionRequest{Resource: pods, SubResource: "exec", Operation: admissionv1.Connect}, false},
		{"ephemeral containers", admissionv1.AdmissionRequest{Resource: pods, SubResource: SubResEphemeral, Operation: admissionv1.Update}, true},
		{"pod status", admissionv1.AdmissionRequest{Resource: pods, SubResource: "status", Operation: admissionv1.Update}, false},
		{"myapple create", admissionv1.AdmissionRequest{Resource: apples, Operation: admissionv1.Create}, true},
		{"myapple status", admissionv1.AdmissionRequest{Resource: apples, SubResource: "status", Operation: admissionv1.Update}, false},
		{"myapple ephemeralcontainers is no such thing", admissionv1.AdmissionRequest{Resource: apples, SubResource: SubResEphemeral, Operation: admissionv1.Update}, false},
	}
	for _, tt := range tests {
		if got := IsJudged(&tt.r); got != tt.want {
			t.Errorf("%s: IsJudged = %v, want %v", tt.name, got, tt.want)
		}
	}
}
