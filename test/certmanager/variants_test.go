package certmanager

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// TestFailOpenOverlay checks manifests/overlays/fail-open: Pods, Pod
// controllers and MyApples fail open, the server admits before its cache has synced, the
// policy objects stay fail-closed, and nothing else changes.
func TestFailOpenOverlay(t *testing.T) {
	base := render(t, "default")
	objs := render(t, "overlays/fail-open")

	checkWebhooks(t, objs, admissionregistrationv1.Ignore)
	_, c := webhookDeployment(t, objs)
	_, baseC := webhookDeployment(t, base)
	if want := append(slices.Clone(baseC.Args), "--fail-open-before-sync"); !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}

	if len(objs) != len(base) {
		t.Fatalf("the overlay has %d objects, the default %d", len(objs), len(base))
	}
	for i, o := range objs {
		if o.GetKind() == "Deployment" || o.GetKind() == "ValidatingWebhookConfiguration" {
			continue
		}
		if !equality.Semantic.DeepEqual(o.Object, base[i].Object) {
			t.Errorf("%s differs from the default's %s", key(o), key(base[i]))
		}
	}
}

// TestServiceMonitorComponent renders the default with
// manifests/components/servicemonitor, as a user's kustomization would, and
// checks that the ServiceMonitor scrapes the metrics port of the webhook's
// Service.
func TestServiceMonitorComponent(t *testing.T) {
	dir := t.TempDir()
	// kustomize refuses absolute paths to other kustomizations.
	rel := func(p string) string {
		a, err := filepath.Abs(filepath.Join(manifestsDir, p))
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(dir, a)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
components:
- %s
`, rel("default"), rel("components/servicemonitor"))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := renderDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(render(t, "default")) + 2; len(objs) != n {
		t.Errorf("%d objects, want the default's, a ServiceMonitor and a ClusterRoleBinding: %d", len(objs), n)
	}
	// Prometheus's ServiceAccount may get /metrics.
	crb := findTyped[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "policy-webhook-metrics-reader")
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "policy-webhook-metrics-reader"}) ||
		len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("ClusterRoleBinding %s binds %+v to %+v, want the metrics reader to a ServiceAccount", crb.Name, crb.RoleRef, crb.Subjects)
	}
	find(t, objs, "ClusterRole", "policy-webhook-metrics-reader")

	sm := find(t, objs, "ServiceMonitor", appName)
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetNamespace() != installNamespace {
		t.Errorf("%s: apiVersion %s, want monitoring.coreos.com/v1 in %s", key(sm), sm.GetAPIVersion(), installNamespace)
	}
	svc := findTyped[corev1.Service](t, objs, "Service", appName)
	matchLabels, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(matchLabels) == 0 || !labels.SelectorFromSet(matchLabels).Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selects Services labelled %v; the webhook's Service has %v", matchLabels, svc.Labels)
	}
	namespaces, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	if !slices.Equal(namespaces, []string{installNamespace}) {
		t.Errorf("ServiceMonitor looks in namespaces %v, want [%s]", namespaces, installNamespace)
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(endpoints))
	}
	ep, _ := endpoints[0].(map[string]any)
	var metricsPortName string
	for _, p := range svc.Spec.Ports {
		if p.Port == metricsPort {
			metricsPortName = p.Name
		}
	}
	if ep["port"] != metricsPortName || ep["path"] != "/metrics" || ep["scheme"] != "https" ||
		ep["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("ServiceMonitor endpoint %v, want port %q path /metrics over https with the ServiceAccount token", ep, metricsPortName)
	}
	// The serving certificate verified: its CA, and a name it carries.
	cert := findTyped[cmapi.Certificate](t, objs, "Certificate", servingCertName)
	serverName, _, _ := unstructured.NestedString(ep, "tlsConfig", "serverName")
	caSecret, _, _ := unstructured.NestedString(ep, "tlsConfig", "ca", "secret", "name")
	caKey, _, _ := unstructured.NestedString(ep, "tlsConfig", "ca", "secret", "key")
	if !slices.Contains(cert.Spec.DNSNames, serverName) || caSecret != cert.Spec.SecretName || caKey != "ca.crt" {
		t.Errorf("ServiceMonitor tlsConfig %v, want serverName one of %v and ca.crt of Secret %s", ep["tlsConfig"], cert.Spec.DNSNames, cert.Spec.SecretName)
	}
}
