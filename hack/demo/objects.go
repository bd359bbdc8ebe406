package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/policy"
)

// expectAnnotation is where each judged sample says what should happen to it.
const expectAnnotation = "policy.example.com/expect"

// object is one document of a sample file.
type object struct {
	file      string
	raw       []byte
	kind      string
	namespace string
	name      string
	expect    string // allow | warn | deny | ""
	replicas  int    // of a Deployment: spec.replicas (default 1)
}

// judged reports whether the webhook judges the object's kind, the kinds
// demo reports on: Pods, MyApples, and Pod controllers by their template.
func (o *object) judged() bool {
	_, controller := policy.PodControllerOf(policy.Kind(o.kind))
	return o.kind == policy.KindPod || o.kind == policy.KindMyApple || controller
}

func (o *object) ref() string {
	if o.namespace == "" {
		return o.kind + " " + o.name
	}
	return o.kind + " " + o.namespace + "/" + o.name
}

// readSamples splits every sample file into its objects, in order.
func readSamples(dir string) ([]*object, error) {
	files, err := sampleFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []*object
	for _, f := range files {
		objs, err := readFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no objects in %s", dir)
	}
	return out, nil
}

func readFile(path string) ([]*object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting %s: %w", path, err)
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("parsing document %d of %s: %w", i+1, path, err)
		}
		if len(u.Object) == 0 {
			continue // comments only
		}
		if u.GetKind() == "" {
			return nil, fmt.Errorf("document %d of %s has no kind", i+1, path)
		}
		var scale struct {
			Spec struct {
				Replicas *int32 `json:"replicas"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &scale); err != nil {
			return nil, fmt.Errorf("parsing document %d of %s: %w", i+1, path, err)
		}
		replicas := int32(1)
		if scale.Spec.Replicas != nil {
			replicas = *scale.Spec.Replicas
		}
		out = append(out, &object{
			file: path, raw: doc, kind: u.GetKind(), namespace: u.GetNamespace(), name: u.GetName(),
			expect: u.GetAnnotations()[expectAnnotation], replicas: int(replicas),
		})
	}
}
