package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Paths relative to this package (go test runs a package's tests in its
// own directory).
const (
	manifestsDir = "../../manifests"
	chartDir     = manifestsDir + "/chart/policy-webhook"
)

// The names the install is built around.
const (
	releaseName      = "policy-webhook"
	installNamespace = "policy-system"
	appName          = "policy-webhook"
)

// loadChart loads the chart from its directory, as `helm install <dir>`
// does: Helm 4's loader reads the chart's apiVersion and loads it as a
// chart of that version, which must be v2 (the API the actions install).
func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart %s: %v", chartDir, err)
	}
	c, ok := ch.(*chart.Chart)
	if !ok {
		t.Fatalf("the chart %s loads as a %T, want an apiVersion v2 chart (%T)", chartDir, ch, c)
	}
	return c
}

// setValues parses --set style assignments (`a.b=c`) into values, as
// `helm install --set` does.
func setValues(t testing.TB, sets ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return vals
}

// rendered is a release as `helm install --dry-run` renders it.
type rendered struct {
	rel *release.Release
	// objects are the release's objects, its post-install hooks (the
	// webhook registration) included, but not its other hooks.
	objects []*unstructured.Unstructured
	// hooks are every hook, by the events it runs on.
	hooks []*release.Hook
}

// renderChart renders the chart with vals into namespace, client side, as
// `helm install --dry-run` (or `helm template`) does: the schema is checked
// and the templates are executed, nothing reaches a cluster.
func renderChart(c *chart.Chart, namespace string, vals map[string]any) (*rendered, error) {
	kubeVersion, err := common.ParseKubeVersion("v1.37.2")
	if err != nil {
		return nil, err
	}
	inst := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler)))
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.KubeVersion = kubeVersion
	r, err := inst.Run(c, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm install returned a %T, want a %T", r, rel)
	}
	objs, err := decodeObjects([]byte(rel.Manifest))
	if err != nil {
		return nil, fmt.Errorf("decoding the release manifest: %w", err)
	}
	out := &rendered{rel: rel, objects: objs, hooks: rel.Hooks}
	for _, h := range rel.Hooks {
		if !slices.Contains(h.Events, release.HookPostInstall) {
			continue
		}
		hobjs, err := decodeObjects([]byte(h.Manifest))
		if err != nil {
			return nil, fmt.Errorf("decoding hook %s: %w", h.Path, err)
		}
		out.objects = append(out.objects, hobjs...)
	}
	return out, nil
}

// mustRender is renderChart, failing the test on error.
func mustRender(t testing.TB, namespace string, vals map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(loadChart(t), namespace, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

// chartCRDs are the CRDs in the chart's crds/ directory, which Helm
// installs before the templates and never templates.
func chartCRDs(t testing.TB, c *chart.Chart) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, crd := range c.CRDObjects() {
		o, err := decodeObjects(crd.File.Data)
		if err != nil {
			t.Fatalf("decoding %s: %v", crd.Filename, err)
		}
		objs = append(objs, o...)
	}
	return objs
}

// renderKustomize builds the kustomization in dir the way `kubectl
// kustomize dir` does: kustomize's API with kubectl's options (legacy
// resource order), on the real file system.
func renderKustomize(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	resMap, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatalf("writing the build of %s as YAML: %v", dir, err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("decoding the build of %s: %v", dir, err)
	}
	return objs
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

// key names an object in failure messages and lookups: Kind/namespace/name.
func key(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + "/" + ns + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetName()
}

// keys lists the keys of objs, sorted.
func keys(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, key(o))
	}
	slices.Sort(out)
	return out
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
	t.Fatalf("no %s %q among %s", kind, name, strings.Join(keys(objs), ", "))
	return nil
}

// has reports whether objs hold an object of kind.
func has(objs []*unstructured.Unstructured, kind string) bool {
	return slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

// typed converts a rendered object into its Go type, failing the test on a
// field the type does not have: a misspelt field would otherwise render,
// apply and silently do nothing.
func typed[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("%s: %v", key(o), err)
	}
	return out
}

// findTyped is find then typed.
func findTyped[T any](t testing.TB, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	return typed[T](t, find(t, objs, kind, name))
}

// abs is path made absolute, failing the test on error.
func abs(t testing.TB, path string) string {
	t.Helper()
	a, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
