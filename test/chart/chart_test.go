package chart

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// helmLabels are the labels the chart adds to every object's metadata on top
// of manifests/default's, and helmAnnotations the annotations that make the
// webhook registration a hook and keep the PolicyReport CRDs on uninstall.
var (
	helmLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmAnnotations = []string{"helm.sh/hook", "helm.sh/hook-delete-policy", "helm.sh/resource-policy"}
)

// TestLint runs `helm lint --strict` on the chart, with its default values
// and with every optional object on.
func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults": nil,
		"every option on": setValues(t, "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
			"metrics.dashboard.enabled=true", "audit.installOpenReportsCRDs=true", "audit.installPolicyReportCRDs=true"),
	} {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = installNamespace
			res := lint.Run([]string{chartDir}, vals)
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint: %v", err)
			}
		})
	}
}

// stripHelm removes, from a copy of o, what the chart adds to
// manifests/default's objects: Helm's standard labels and the hook
// annotations.
func stripHelm(o *unstructured.Unstructured) *unstructured.Unstructured {
	o = o.DeepCopy()
	if l := o.GetLabels(); l != nil {
		for _, k := range helmLabels {
			delete(l, k)
		}
		o.SetLabels(l)
	}
	if a := o.GetAnnotations(); a != nil {
		for _, k := range helmAnnotations {
			delete(a, k)
		}
		if len(a) == 0 {
			unstructured.RemoveNestedField(o.Object, "metadata", "annotations")
		} else {
			o.SetAnnotations(a)
		}
	}
	return o
}

// TestDefaultsRenderTheKustomizeInstall renders the chart with its default
// values into policy-system and compares it, object by object, with
// `kubectl kustomize manifests/default`: same names, same specs, same
// hardening. The only differences allowed are Helm's standard labels, the
// hook annotations of the webhook registration, and the Namespace, which
// the chart leaves to Helm (`-n policy-system --create-namespace`): a
// release cannot own the namespace it is stored in.
func TestDefaultsRenderTheKustomizeInstall(t *testing.T) {
	c := loadChart(t)
	r := mustRender(t, installNamespace, nil)
	got := append(chartCRDs(t, c), r.objects...)
	want := renderKustomize(t, filepath.Join(manifestsDir, "default"))
	want = slices.DeleteFunc(want, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" })

	if g, w := keys(got), keys(want); !slices.Equal(g, w) {
		t.Fatalf("the chart renders\n  %s\nmanifests/default\n  %s", strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range want {
		byKey[key(o)] = o
	}
	for _, o := range got {
		w := byKey[key(o)]
		for _, l := range helmLabels {
			if _, ok := o.GetLabels()[l]; !ok && o.GetKind() != "CustomResourceDefinition" {
				t.Errorf("%s: no label %s", key(o), l)
			}
		}
		g := stripHelm(o)
		if !equality.Semantic.DeepEqual(g.Object, w.Object) {
			t.Errorf("%s differs from manifests/default's (-kustomize +chart):\n%s", key(o), cmp.Diff(w.Object, g.Object))
		}
	}
	t.Logf("%d objects, each the same as manifests/default's", len(got))

	// The registration is applied after everything else, by a hook, and
	// removed first on uninstall by another.
	var events []string
	for _, h := range r.hooks {
		for _, e := range h.Events {
			events = append(events, fmt.Sprintf("%s %s/%s", e, h.Kind, h.Name))
		}
	}
	slices.Sort(events)
	wantEvents := []string{
		"post-install ValidatingWebhookConfiguration/policy-webhook",
		"post-upgrade ValidatingWebhookConfiguration/policy-webhook",
		"pre-delete ValidatingWebhookConfiguration/policy-webhook",
	}
	if !slices.Equal(events, wantEvents) {
		t.Errorf("hooks %q, want %q", events, wantEvents)
	}
	// The notes say how to check the install and write a first policy.
	for _, want := range []string{"rollout status deployment/policy-webhook", "kubectl create --dry-run=server",
		"policy.example.com/policy: \"true\"", "namespace: " + installNamespace, "policy-webhook-metrics-reader"} {
		if !strings.Contains(r.rel.Info.Notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, r.rel.Info.Notes)
		}
	}
	if strings.Contains(r.rel.Manifest, "kind: ValidatingWebhookConfiguration") {
		t.Error("the webhook registration is in the release manifest: it would be applied with the Deployment, not after it")
	}
}

// The chart's copies of CRDs that `make chart-crds` writes.
const (
	crdsFile = chartDir + "/crds/crds.yaml"
	// keepAnnotation keeps the templated report CRDs on uninstall.
	keepAnnotation = "helm.sh/resource-policy"
)

// optionalCRDs are the report CRDs the chart templates from a kustomize
// component's, when a value asks for them.
var optionalCRDs = []struct{ component, group, file, value string }{
	{"openreports", "openreports.io", chartDir + "/files/openreports-crds.yaml", "audit.installOpenReportsCRDs"},
	{"policyreports", "wgpolicyk8s.io", chartDir + "/files/policyreport-crds.yaml", "audit.installPolicyReportCRDs"},
}

// TestChartCRDsAreTheInstalls checks that the chart's crds/ hold exactly
// the CRDs manifests/default renders, and its files/openreports-crds.yaml
// and files/policyreport-crds.yaml those manifests/components/openreports
// and manifests/components/policyreports add to it, labels included.
// `make chart-crds` writes them; UPDATE_CHART_CRDS=1 makes this test do it.
func TestChartCRDsAreTheInstalls(t *testing.T) {
	isCRD := func(o *unstructured.Unstructured) bool { return o.GetKind() == "CustomResourceDefinition" }
	want := slices.DeleteFunc(renderKustomize(t, filepath.Join(manifestsDir, "default")), func(o *unstructured.Unstructured) bool { return !isCRD(o) })
	if os.Getenv("UPDATE_CHART_CRDS") != "" {
		writeObjects(t, crdsFile, "the CRDs of `kubectl kustomize manifests/default`", want)
	}
	got := chartCRDs(t, loadChart(t))
	if len(got) != len(want) {
		t.Fatalf("the chart has %d CRDs, manifests/crds %d: run `make chart-crds`", len(got), len(want))
	}
	for i := range got {
		if !equality.Semantic.DeepEqual(got[i].Object, want[i].Object) {
			t.Errorf("%s differs from manifests/crds' %s: run `make chart-crds`", key(got[i]), key(want[i]))
		}
	}
	// The report CRDs are rendered only when asked for, as the
	// components', kept on uninstall.
	if has(mustRender(t, installNamespace, nil).objects, "CustomResourceDefinition") {
		t.Error("CRDs are rendered from templates with the default values")
	}
	for _, opt := range optionalCRDs {
		wantReports := slices.DeleteFunc(renderWithDefault(t, opt.component), func(o *unstructured.Unstructured) bool {
			return !isCRD(o) || !strings.HasSuffix(o.GetName(), "."+opt.group)
		})
		if len(wantReports) != 2 {
			t.Fatalf("manifests/components/%s adds %s, want the two report CRDs", opt.component, strings.Join(keys(wantReports), ", "))
		}
		if os.Getenv("UPDATE_CHART_CRDS") != "" {
			kept := make([]*unstructured.Unstructured, len(wantReports))
			for i, o := range wantReports {
				kept[i] = o.DeepCopy()
				kept[i].SetAnnotations(merge(o.GetAnnotations(), map[string]string{keepAnnotation: "keep"}))
			}
			writeObjects(t, opt.file, "the CRDs manifests/components/"+opt.component+" adds, kept on uninstall", kept)
		}
		r := mustRender(t, installNamespace, setValues(t, opt.value+"=true"))
		var gotReports []*unstructured.Unstructured
		for _, o := range r.objects {
			if isCRD(o) {
				gotReports = append(gotReports, o)
			}
		}
		if g, w := keys(gotReports), keys(wantReports); !slices.Equal(g, w) {
			t.Fatalf("%s renders %q, want %q", opt.value, g, w)
		}
		for i, o := range gotReports {
			if o.GetAnnotations()[keepAnnotation] != "keep" {
				t.Errorf("%s: no %s: keep annotation, so helm uninstall would delete every report", key(o), keepAnnotation)
			}
			if !equality.Semantic.DeepEqual(stripHelm(o).Object, wantReports[i].Object) {
				t.Errorf("%s differs from manifests/components/%s' (-component +chart), run `make chart-crds`:\n%s",
					key(o), opt.component, cmp.Diff(wantReports[i].Object, stripHelm(o).Object))
			}
		}
	}
}

// writeObjects writes objs to file as a YAML stream, under a header saying
// what they are.
func writeObjects(t *testing.T, file, what string, objs []*unstructured.Unstructured) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Generated by `make chart-crds`: " + what + "; do not edit.\n")
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", file)
}

// TestMonitoringMatchesTheComponents renders the chart with every
// monitoring option on and checks that it ships what the kustomize
// components do: the same ServiceMonitor and the binding that lets
// Prometheus scrape, the same alert rules, the same dashboard.
func TestMonitoringMatchesTheComponents(t *testing.T) {
	r := mustRender(t, installNamespace, setValues(t,
		"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "metrics.dashboard.enabled=true"))
	for _, tc := range []struct {
		component string
		want      []string
	}{
		{"servicemonitor", []string{"ClusterRoleBinding/policy-webhook-metrics-reader", "ServiceMonitor/policy-system/policy-webhook"}},
		{"prometheus-rules", []string{"PrometheusRule/policy-system/policy-webhook"}},
		{"grafana-dashboard", []string{"ConfigMap/policy-system/policy-webhook-dashboard"}},
	} {
		t.Run(tc.component, func(t *testing.T) {
			objs := renderComponent(t, tc.component)
			if !slices.Equal(keys(objs), tc.want) {
				t.Fatalf("the component renders %q, want %q", keys(objs), tc.want)
			}
			for _, want := range objs {
				got := stripHelm(find(t, r.objects, want.GetKind(), want.GetName()))
				// The chart adds the part-of label to everything it installs.
				want = want.DeepCopy()
				want.SetLabels(merge(want.GetLabels(), map[string]string{"app.kubernetes.io/part-of": appName}))
				if !equality.Semantic.DeepEqual(got.Object, want.Object) {
					t.Errorf("%s differs (-component +chart):\n%s", key(want), cmp.Diff(want.Object, got.Object))
				}
			}
		})
	}
}

// renderComponent renders manifests/components/<name> on its own, through a
// kustomization in a temporary directory that uses only it.
func renderComponent(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	return renderTemp(t, "", name)
}

// renderWithDefault renders manifests/default with the component name, as
// `make deploy COMPONENTS=manifests/components/<name>` does.
func renderWithDefault(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	return renderTemp(t, "default", name)
}

// renderTemp renders a kustomization in a temporary directory with the
// resources of manifests/<base> (none if empty) and the component
// manifests/components/<component>.
func renderTemp(t *testing.T, base, component string) []*unstructured.Unstructured {
	t.Helper()
	dir := t.TempDir()
	rel := func(path string) string {
		r, err := filepath.Rel(dir, abs(t, filepath.Join(manifestsDir, path)))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	if base != "" {
		k += fmt.Sprintf("resources:\n- %s\n", rel(base))
	}
	k += fmt.Sprintf("components:\n- %s\n", rel(filepath.Join("components", component)))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return renderKustomize(t, dir)
}

// merge is a new map with the entries of ms, later ones winning.
func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// TestSchemaRefusesBadValues checks that values.schema.json turns a typo
// or a wrong type in --set into an install error naming the value, before
// anything is rendered.
func TestSchemaRefusesBadValues(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct{ set, want string }{
		{"replica=3", "replica"},
		{"replicas=0", "replicas"},
		{"replicas=two", "replicas"},
		{"image.repo=registry.example.com/policy-webhook", "repo"},
		{"image.repository=Registry.example.com/Policy-Webhook", "repository"},
		{"image.digest=sha256:abc", "digest"},
		{"image.pullPolicy=Sometimes", "pullPolicy"},
		{"webhook.timeoutSeconds=60", "timeoutSeconds"},
		{"webhook.failOpen=yes", "failOpen"},
		{"webhook.failurePolicy=Ignore", "failurePolicy"},
		{"webhook.excludedNamespaces={Kube_System}", "excludedNamespaces"},
		{"certManager.issuer=my-ca", "issuer"},
		{"metrics.serviceMonitor.enable=true", "enable"},
		{"metrics.dashboard.labels.grafana_dashboard=1", "grafana_dashboard"},
		{"metrics.serviceMonitor.prometheusServiceAccount.name=Prometheus", "name"},
		{"audit.interval=0s", "interval"},
		{"audit.interval=hourly", "interval"},
		{"audit.enable=false", "enable"},
		{"audit.installPolicyReportCRDs=yes", "installPolicyReportCRDs"},
		{"audit.reportFormat=policyreports", "reportFormat"},
		{"extraArgs={-v}", "extraArgs"},
		{"resources.limits.cpu=lots", "cpu"},
		{"tolerations[0].keys=x", "keys"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			_, err := renderChart(c, installNamespace, setValues(t, tc.set))
			if err == nil {
				t.Fatalf("--set %s was accepted", tc.set)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("--set %s: %v; want a schema error naming %q", tc.set, err, tc.want)
			}
		})
	}
	// Every value of values.yaml is allowed by the schema.
	if err := util.ValidateAgainstSchema(c, c.Values); err != nil {
		t.Errorf("the default values break the schema: %v", err)
	}
}
