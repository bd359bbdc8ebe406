package policy

import (
	"encoding/json"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// decodeOptions give the json/v2 decoder encoding/json's semantics
// (case-insensitive names, duplicate names and invalid UTF-8 accepted,
// the same error texts), so that what is accepted does not change with the
// decoder, only its speed. Options are immutable values.
var decodeOptions = jsonv2.JoinOptions(jsonv1.DefaultOptionsV1(), jsonv1.ReportErrorsWithLegacySemantics(false))

// Resources the webhook judges, as the API server names them.
const (
	GroupMyApple    = "stable.example.com"
	ResourcePods    = "pods"
	ResourceApples  = "myapples"
	SubResEphemeral = "ephemeralcontainers"
)

// DecodeObject decodes a Pod or a MyApple from JSON. A Pod holds only the
// fields rules read (see podFields): the rest of a Pod was most of the cost
// of an admission and no rule looks at it. Input that is not valid JSON, or
// whose read fields have the wrong type, is an error.
func DecodeObject(kind string, raw []byte) (pod *corev1.Pod, apple *MyApple, err error) {
	switch kind {
	case KindPod:
		pod, err := decodePod(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("decoding Pod: %w", err)
		}
		return pod, nil, nil
	case KindMyApple:
		apple = &MyApple{}
		if err := jsonv2.Unmarshal(raw, apple, decodeOptions); err != nil {
			return nil, nil, fmt.Errorf("decoding MyApple: %w", legacyError(err, raw, &MyApple{}))
		}
		return nil, apple, nil
	}
	return nil, nil, fmt.Errorf("kind %q is not judged: only Pod and MyApple are", kind)
}

// IsJudged reports whether an admission of a judged kind is judged at all:
// CREATE and UPDATE of the object itself, and of a Pod's
// ephemeralcontainers subresource, which changes what runs. Other
// operations and subresources (status, binding, exec, scale) carry nothing a
// rule reads. The webhook and check both ask it, so that offline verdicts
// cannot drift from the webhook's.
func IsJudged(r *admissionv1.AdmissionRequest) bool {
	if r.Operation != admissionv1.Create && r.Operation != admissionv1.Update {
		return false
	}
	switch r.SubResource {
	case "":
		return true
	case SubResEphemeral:
		return KindOf(r) == KindPod
	}
	return false
}

// KindOf names the kind of an admission by its resource, which, unlike the
// object's kind, says "pods" for the ephemeralcontainers subresource too.
// It returns "" for anything else.
func KindOf(r *admissionv1.AdmissionRequest) string {
	switch {
	case r.Resource.Group == "" && r.Resource.Resource == ResourcePods:
		return KindPod
	case r.Resource.Group == GroupMyApple && r.Resource.Resource == ResourceApples:
		return KindMyApple
	case r.Resource.Resource == "" && r.Kind.Group == "" && r.Kind.Kind == KindPod:
		return KindPod
	case r.Resource.Resource == "" && r.Kind.Group == GroupMyApple && r.Kind.Kind == KindMyApple:
		return KindMyApple
	}
	return ""
}

// RequestFromAdmission turns an AdmissionRequest for a Pod or MyApple into
// a Request, decoding the object and, on UPDATE, the old one.
func RequestFromAdmission(r *admissionv1.AdmissionRequest) (*Request, error) {
	return RequestFromDecoded(r, nil, nil)
}

// RequestFromDecoded is RequestFromAdmission for a caller that decoded the
// Pods already, with ScanPod in the same pass that read the review.
// A nil pod or oldPod is decoded from the request's raw bytes as usual.
func RequestFromDecoded(r *admissionv1.AdmissionRequest, pod, oldPod *corev1.Pod) (*Request, error) {
	kind := KindOf(r)
	if kind == "" {
		return nil, fmt.Errorf("resource %s is not judged: only pods and myapples.stable.example.com are", r.Resource.String())
	}
	req := &Request{Kind: kind, Operation: Operation(r.Operation), SubResource: r.SubResource, Namespace: r.Namespace}
	if len(r.Object.Raw) == 0 {
		return nil, fmt.Errorf("request.object is empty")
	}
	var err error
	if kind == KindPod && pod != nil {
		req.Pod = pod
	} else if req.Pod, req.MyApple, err = DecodeObject(kind, r.Object.Raw); err != nil {
		return nil, fmt.Errorf("request.object: %w", err)
	}
	if len(r.OldObject.Raw) > 0 {
		if kind == KindPod && oldPod != nil {
			req.OldPod = oldPod
		} else if req.OldPod, req.OldMyApple, err = DecodeObject(kind, r.OldObject.Raw); err != nil {
			return nil, fmt.Errorf("request.oldObject: %w", err)
		}
	}
	if req.Namespace == "" {
		req.Namespace = req.Object().Namespace
	}
	return req, nil
}

// legacyError reports why raw does not decode into v as encoding/json
// words it ("unexpected end of JSON input", "cannot unmarshal string into
// Go struct field Pod.spec.containers..."), which names the Kubernetes
// type and is what users and tests have always seen. It costs a second
// decode, only on the error path; the fast decoder's own error is kept
// if encoding/json finds nothing wrong.
func legacyError(fast error, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return err
	}
	return fast
}
