package certmanager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifestsDir is the repository's manifests/, relative to this package
// (go test runs a package's tests in its own directory).
const manifestsDir = "../../manifests"

// renderDir builds the kustomization in dir the way `kubectl kustomize dir`
// does: kustomize's API with kubectl's options (its default options, load
// restricted to the kustomization's root, and the legacy resource order:
// namespaces and CRDs first, webhook configurations last), on the real file
// system.
func renderDir(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	k := krusty.MakeKustomizer(opts)
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("writing the build of %s as YAML: %w", dir, err)
	}
	return decodeObjects(out)
}

// decodeObjects splits a multi-document YAML stream into objects.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding document %d: %w", len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// render is renderDir for a directory under manifests/, failing the test on
// error.
func render(t testing.TB, sub string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderDir(filepath.Join(manifestsDir, sub))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// key names an object in failure messages and lookups: Kind/namespace/name.
func key(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + "/" + ns + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetName()
}

// find returns the one object of kind and name, failing the test if there
// is none.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("the build has no %s %q", kind, name)
	return nil
}
