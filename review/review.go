// Package review decodes AdmissionReviews, and the Pods and MyApples they
// carry, into policy requests, with the API server's JSON semantics
// (case-sensitive struct tags, never fields mapped by hand). The webhook and
// `policy-webhook check` both read through it, so an object means the same to both.
package review

import (
	"errors"
	"fmt"
	"sync"

	"github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Versions of the AdmissionReview envelope; v1beta1 has the same fields.
const (
	V1      = "admission.k8s.io/v1"
	V1beta1 = "admission.k8s.io/v1beta1"
)

// Kind is the envelope's kind.
const Kind = "AdmissionReview"

// Read decodes an AdmissionReview and checks its envelope: a known version,
// the right kind, a request with a uid. request.object and oldObject are kept
// raw, for NewRequest to decode as what the request says they are.
func Read(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(body) == 0 {
		return nil, errors.New("the request body is empty: POST an AdmissionReview")
	}
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("the request body is not a valid AdmissionReview: %w", err)
	}
	switch r.APIVersion {
	case V1, V1beta1, "":
	default:
		return nil, fmt.Errorf("AdmissionReview apiVersion %q is not supported: send %s", r.APIVersion, V1)
	}
	if r.Kind != Kind && r.Kind != "" {
		return nil, fmt.Errorf("expected kind AdmissionReview, got %q", r.Kind)
	}
	if r.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	if r.Request.UID == "" {
		return nil, errors.New("the AdmissionReview request has no uid")
	}
	return &r, nil
}

// KindOf names the judged kind of a request by its resource, which covers
// subresources too, or by its kind when it has no resource; "" otherwise.
func KindOf(r *admissionv1.AdmissionRequest) policy.Kind {
	switch {
	case r.Resource.Group == "" && r.Resource.Resource == policy.ResourcePods:
		return policy.KindPod
	case r.Resource.Group == policy.GroupMyApple && r.Resource.Resource == policy.ResourceApples:
		return policy.KindMyApple
	case r.Resource.Resource == "" && r.Kind.Group == "" && r.Kind.Kind == policy.KindPod:
		return policy.KindPod
	case r.Resource.Resource == "" && r.Kind.Group == policy.GroupMyApple && r.Kind.Kind == policy.KindMyApple:
		return policy.KindMyApple
	}
	if c, ok := ControllerOf(r); ok {
		return c.Kind
	}
	return ""
}

// Judged reports whether an admission of a judged kind is judged at all:
// CREATE and UPDATE of the object, and of a Pod's ephemeralcontainers, which
// change what runs. Other subresources carry nothing a rule reads.
func Judged(kind policy.Kind, r *admissionv1.AdmissionRequest) bool {
	if r.Operation != admissionv1.Create && r.Operation != admissionv1.Update {
		return false
	}
	switch r.SubResource {
	case "":
		return true
	case policy.SubResEphemeral:
		return kind == policy.KindPod
	}
	return false
}

// NewRequest turns an admission of kind (see KindOf) into the engine's
// Request, decoding the object and, on UPDATE, the old one.
func NewRequest(kind policy.Kind, r *admissionv1.AdmissionRequest) (*policy.Request, error) {
	req, err := Decode(kind, r.Object.Raw, r.OldObject.Raw, r.Namespace)
	if err != nil {
		return nil, err
	}
	req.Operation = policy.Operation(r.Operation)
	req.SubResource = r.SubResource
	if r.Namespace != "" {
		req.Namespace = r.Namespace
	}
	req.UserInfo = r.UserInfo
	req.DryRun = r.DryRun != nil && *r.DryRun
	req.Resource = r.Resource
	req.RequestKind = r.Kind
	return req, nil
}

// Decode builds the request that judges an object of kind — a Pod, a
// MyApple, or a Pod controller by the Pod of its template — as a CREATE,
// or as an UPDATE of oldRaw when it is not empty. namespace is the
// object's when it names none. Admission, audit and check all build their
// requests here, so an object means the same to the three.
func Decode(kind policy.Kind, raw, oldRaw []byte, namespace string) (*policy.Request, error) {
	if len(raw) == 0 {
		return nil, errors.New("request.object is empty")
	}
	req := &policy.Request{Kind: kind, Operation: policy.Create}
	if len(oldRaw) > 0 {
		req.Operation = policy.Update
	}
	c, isController := policy.PodControllerOf(kind)
	var err error
	switch {
	case isController:
		req.Kind = policy.KindPod
		var meta *policy.ObjectMeta
		if meta, req.Pod, err = decodeController(c, raw); err != nil {
			return nil, fmt.Errorf("request.object: %w", err)
		}
		req.Controller = &policy.Controller{PodController: c, Meta: *meta}
		if len(oldRaw) > 0 {
			if _, req.OldPod, err = decodeController(c, oldRaw); err != nil {
				return nil, fmt.Errorf("request.oldObject: %w", err)
			}
		}
	default:
		if req.Pod, req.MyApple, err = DecodeObject(kind, raw); err != nil {
			return nil, fmt.Errorf("request.object: %w", err)
		}
		if len(oldRaw) > 0 {
			if req.OldPod, req.OldMyApple, err = DecodeObject(kind, oldRaw); err != nil {
				return nil, fmt.Errorf("request.oldObject: %w", err)
			}
		}
	}
	meta := req.Object()
	if meta.Namespace == "" {
		meta.Namespace = namespace
	}
	if req.Controller != nil {
		req.Controller.Meta.Namespace = meta.Namespace
		if req.OldPod != nil && req.OldPod.Namespace == "" {
			req.OldPod.Namespace = meta.Namespace
		}
	}
	req.Namespace = meta.Namespace
	req.Unstructured = unstructuredOf(c, isController, raw, oldRaw, meta.Namespace)
	return req, nil
}

// unstructuredOf is Unstructured, or for a Pod controller the same of the
// Pods of its templates.
func unstructuredOf(c policy.PodController, isController bool, raw, oldRaw []byte, namespace string) func() (map[string]any, map[string]any, error) {
	decode := Unstructured(raw, oldRaw, namespace)
	if !isController {
		return decode
	}
	return func() (map[string]any, map[string]any, error) {
		obj, old, err := decode()
		if err != nil {
			return nil, nil, err
		}
		pod, err := templateUnstructured(c, obj)
		if err != nil {
			return nil, nil, fmt.Errorf("request.object: %w", err)
		}
		var oldPod map[string]any
		if old != nil {
			if oldPod, err = templateUnstructured(c, old); err != nil {
				return nil, nil, fmt.Errorf("request.oldObject: %w", err)
			}
		}
		return pod, oldPod, nil
	}
}

// Unstructured returns a function that decodes an object and its old
// version (nil when oldRaw is empty) as CEL reads them, once. It decodes
// with apimachinery's JSON, as the API server does, since CEL needs int64
// integers. namespace, when not "", fills a missing metadata.namespace.
func Unstructured(raw, oldRaw []byte, namespace string) func() (object, oldObject map[string]any, err error) {
	var (
		once     sync.Once
		obj, old map[string]any
		err      error
	)
	return func() (map[string]any, map[string]any, error) {
		once.Do(func() {
			if obj, err = decodeUnstructured(raw, namespace); err != nil {
				obj, err = nil, fmt.Errorf("request.object: %w", err)
				return
			}
			if len(oldRaw) > 0 {
				if old, err = decodeUnstructured(oldRaw, namespace); err != nil {
					obj, old, err = nil, nil, fmt.Errorf("request.oldObject: %w", err)
				}
			}
		})
		return obj, old, err
	}
}

func decodeUnstructured(raw []byte, namespace string) (map[string]any, error) {
	var m map[string]any
	if err := utiljson.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("is null")
	}
	if namespace != "" {
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			m["metadata"] = md
		}
		if ns, _ := md["namespace"].(string); ns == "" {
			md["namespace"] = namespace
		}
	}
	return m, nil
}

// DecodeObject decodes the part of a Pod or a MyApple that rules read; an
// error names the field it fails on.
func DecodeObject(kind policy.Kind, raw []byte) (*policy.Pod, *policy.MyApple, error) {
	switch kind {
	case policy.KindPod:
		pod := &policy.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			return nil, nil, fmt.Errorf("decoding Pod: %w", err)
		}
		return pod, nil, nil
	case policy.KindMyApple:
		apple := &policy.MyApple{}
		if err := json.Unmarshal(raw, apple); err != nil {
			return nil, nil, fmt.Errorf("decoding MyApple: %w", err)
		}
		return nil, apple, nil
	}
	return nil, nil, fmt.Errorf("kind %q is not judged: only Pod and MyApple are", kind)
}
