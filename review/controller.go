package review

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/policy"
)

// ControllerOf returns the Pod controller an admission is for, by its
// resource, or by its kind when it has no resource.
func ControllerOf(r *admissionv1.AdmissionRequest) (policy.PodController, bool) {
	for _, c := range policy.PodControllers() {
		if r.Resource.Resource == "" {
			if r.Kind.Group == c.Group && r.Kind.Kind == string(c.Kind) {
				return c, true
			}
		} else if r.Resource.Group == c.Group && r.Resource.Resource == c.Resource {
			return c, true
		}
	}
	return policy.PodController{}, false
}

// template is a Pod template: the Pod a controller creates.
type template struct {
	Metadata policy.ObjectMeta `json:"metadata"`
	Spec     policy.PodSpec    `json:"spec"`
}

// controllerObject is the part of a Pod controller that rules read: its
// metadata and its template, at spec.template or, for a CronJob, at
// spec.jobTemplate.spec.template.
type controllerObject struct {
	Metadata policy.ObjectMeta `json:"metadata"`
	Spec     struct {
		Template    *template `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *template `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// decodeController decodes a Pod controller's metadata and the Pod its
// template describes, in the controller's namespace.
func decodeController(c policy.PodController, raw []byte) (*policy.ObjectMeta, *policy.Pod, error) {
	var o controllerObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %w", c.Kind, err)
	}
	t := o.Spec.Template
	if c.Kind == policy.KindCronJob {
		t = nil
		if o.Spec.JobTemplate != nil {
			t = o.Spec.JobTemplate.Spec.Template
		}
	}
	if t == nil {
		return nil, nil, fmt.Errorf("decoding %s: %s: required", c.Kind, c.Template)
	}
	pod := &policy.Pod{ObjectMeta: t.Metadata, Spec: t.Spec}
	pod.Namespace = o.Metadata.Namespace
	pod.DeletionTimestamp = o.Metadata.DeletionTimestamp
	return &o.Metadata, pod, nil
}

// templateUnstructured turns a decoded Pod controller into the Pod of its
// template as CEL reads it: apiVersion v1, kind Pod, the template's
// metadata in the controller's namespace, and its spec.
func templateUnstructured(c policy.PodController, obj map[string]any) (map[string]any, error) {
	t, found, err := unstructured.NestedMap(obj, strings.Split(c.Template, ".")...)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", c.Template, err)
	case !found:
		return nil, fmt.Errorf("%s: required", c.Template)
	}
	meta, _ := t["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	if ns, _, _ := unstructured.NestedString(obj, "metadata", "namespace"); ns != "" {
		meta["namespace"] = ns
	}
	spec, _ := t["spec"].(map[string]any)
	if spec == nil {
		return nil, errors.New(c.Template + ".spec: required")
	}
	return map[string]any{"apiVersion": "v1", "kind": policy.KindPod, "metadata": meta, "spec": spec}, nil
}
