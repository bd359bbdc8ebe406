package chart

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// changed sets every value of values.yaml to something other than its
// default, as a user would with --set.
var changed = []string{
	"image.repository=registry.example.com/platform/policy-webhook",
	"image.tag=v1.2.3",
	"image.digest=sha256:" + strings.Repeat("ab", 32),
	"image.pullPolicy=Always",
	"image.pullSecrets[0].name=regcred",
	"replicas=3",
	"resources.requests.cpu=250m",
	"resources.requests.memory=256Mi",
	"resources.limits.cpu=2",
	"resources.limits.memory=1Gi",
	"nodeSelector.node-role\\.kubernetes\\.io/admission=",
	"tolerations[0].key=node-role.kubernetes.io/control-plane",
	"tolerations[0].operator=Exists",
	"tolerations[0].effect=NoSchedule",
	"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/arch",
	"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
	"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values={amd64,arm64}",
	"priorityClassName=platform-critical",
	"extraArgs={--zap-log-level=debug,--shutdown-delay=10s}",
	"webhook.failOpen=true",
	"webhook.timeoutSeconds=3",
	"webhook.excludedNamespaces={kube-system,gatekeeper-system}",
	"audit.interval=5m",
	"audit.reportFormat=wgpolicyk8s",
	"audit.installOpenReportsCRDs=true",
	"audit.installPolicyReportCRDs=true",
	"certManager.issuerRef.name=corp-ca",
	"certManager.issuerRef.kind=ClusterIssuer",
	"certManager.issuerRef.group=cert-manager.io",
	"metrics.serviceMonitor.enabled=true",
	"metrics.serviceMonitor.labels.release=kube-prometheus-stack",
	"metrics.serviceMonitor.interval=15s",
	"metrics.serviceMonitor.prometheusServiceAccount.name=kube-prometheus-stack-prometheus",
	"metrics.serviceMonitor.prometheusServiceAccount.namespace=observability",
	"metrics.prometheusRule.enabled=true",
	"metrics.prometheusRule.labels.release=kube-prometheus-stack",
	"metrics.dashboard.enabled=true",
	"metrics.dashboard.namespace=monitoring",
	"metrics.dashboard.labels.grafana_dashboard=platform",
	"metrics.dashboard.labels.team=platform",
}

// changedElsewhere are values whose change TestEveryValueTakesEffect cannot
// show beside the others (it would undo them), by the test that does.
var changedElsewhere = map[string]string{
	// Off, audit.interval has no effect.
	"audit.enabled": "TestAuditOff",
}

// leaves lists the paths of the leaf values of vals (an empty map or list
// counts as a leaf: it is where a user puts theirs).
func leaves(prefix string, v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			*out = append(*out, prefix)
		}
		for k, e := range v {
			leaves(strings.TrimPrefix(prefix+"."+k, "."), e, out)
		}
	default:
		*out = append(*out, prefix)
	}
}

// TestEveryValueTakesEffect renders the chart into another namespace with
// every value changed, and checks that each change reached the objects.
func TestEveryValueTakesEffect(t *testing.T) {
	const namespace = "admission"
	c := loadChart(t)
	vals := setValues(t, changed...)
	// Every value of values.yaml is changed here: a new value needs a check.
	var defaults, set []string
	leaves("", c.Values, &defaults)
	leaves("", vals, &set)
	for _, d := range defaults {
		if _, ok := changedElsewhere[d]; ok {
			continue
		}
		if !slices.ContainsFunc(set, func(s string) bool { return s == d || strings.HasPrefix(s, d+".") }) {
			t.Errorf("value %s is not changed by this test", d)
		}
	}
	r, err := renderChart(c, namespace, vals)
	if err != nil {
		t.Fatal(err)
	}
	objs := r.objects

	// The release namespace, everywhere the install names its own.
	for _, o := range objs {
		switch {
		case o.GetKind() == "ConfigMap" && o.GetName() == "policy-webhook-dashboard":
			if o.GetNamespace() != "monitoring" {
				t.Errorf("%s: want namespace monitoring (metrics.dashboard.namespace)", key(o))
			}
		case o.GetNamespace() != "" && o.GetNamespace() != namespace:
			t.Errorf("%s: not in the release namespace %s", key(o), namespace)
		}
	}

	d := findTyped[appsv1.Deployment](t, objs, "Deployment", appName)
	pod := d.Spec.Template.Spec
	ctr := pod.Containers[0]
	if want := "registry.example.com/platform/policy-webhook:v1.2.3@sha256:" + strings.Repeat("ab", 32); ctr.Image != want {
		t.Errorf("image %q, want %q", ctr.Image, want)
	}
	if ctr.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("imagePullPolicy %q, want Always", ctr.ImagePullPolicy)
	}
	if !slices.Equal(pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}) {
		t.Errorf("imagePullSecrets %v", pod.ImagePullSecrets)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	wantRes := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if !equality.Semantic.DeepEqual(ctr.Resources, wantRes) {
		t.Errorf("resources %v, want %v", ctr.Resources, wantRes)
	}
	if !maps.Equal(pod.NodeSelector, map[string]string{"node-role.kubernetes.io/admission": ""}) {
		t.Errorf("nodeSelector %v", pod.NodeSelector)
	}
	wantTol := []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	if !equality.Semantic.DeepEqual(pod.Tolerations, wantTol) {
		t.Errorf("tolerations %v", pod.Tolerations)
	}
	if a := pod.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil ||
		!slices.Equal(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values, []string{"amd64", "arm64"}) {
		t.Errorf("affinity %+v", pod.Affinity)
	}
	if pod.PriorityClassName != "platform-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	wantArgs := []string{
		"serve", "--policy-namespace=" + namespace, "--port=9443", "--cert-dir=/etc/policy-webhook/serving-certs",
		"--metrics-bind-address=:8443", "--health-probe-bind-address=:8081", "--leader-elect=true", "--audit-interval=5m", "--report-format=wgpolicyk8s",
		"--fail-open-before-sync", "--zap-log-level=debug", "--shutdown-delay=10s",
	}
	if !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("args %q, want %q", ctr.Args, wantArgs)
	}
	// The hardening stays whatever the values.
	if sc := ctr.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot {
		t.Errorf("container securityContext %+v lost its hardening", sc)
	}
	pdb := findTyped[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", appName)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("PodDisruptionBudget %+v, want minAvailable 1", pdb.Spec)
	}

	t.Run("webhook registration", func(t *testing.T) {
		vwc := findTyped[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", appName)
		if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != namespace+"/policy-webhook-serving" {
			t.Errorf("inject-ca-from %q", got)
		}
		for _, wh := range vwc.Webhooks {
			wantFailure := admissionregistrationv1.Fail
			wantExcluded := []string{"kube-system", "gatekeeper-system"}
			switch {
			case strings.HasPrefix(wh.Name, "pods."), strings.HasPrefix(wh.Name, "podcontrollers."), strings.HasPrefix(wh.Name, "myapples."):
				wantFailure = admissionregistrationv1.Ignore
				wantExcluded = append(wantExcluded, namespace)
			case strings.HasPrefix(wh.Name, "admissionpolicies."), strings.HasPrefix(wh.Name, "policyexceptions."):
				wantExcluded = nil
			case strings.HasPrefix(wh.Name, "state."):
				// The webhook's own state is in its namespace alone, by
				// name: excluding namespaces does not apply to it.
				want := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{namespace},
				}}}
				if *wh.FailurePolicy != admissionregistrationv1.Fail || !equality.Semantic.DeepEqual(wh.NamespaceSelector, want) {
					t.Errorf("%s: failurePolicy %s, namespaceSelector %+v; want Fail, in %s alone", wh.Name, *wh.FailurePolicy, wh.NamespaceSelector, namespace)
				}
				continue
			}
			if *wh.FailurePolicy != wantFailure {
				t.Errorf("%s: failurePolicy %s, want %s", wh.Name, *wh.FailurePolicy, wantFailure)
			}
			if *wh.TimeoutSeconds != 3 {
				t.Errorf("%s: timeoutSeconds %d, want 3", wh.Name, *wh.TimeoutSeconds)
			}
			if wh.ClientConfig.Service == nil || wh.ClientConfig.Service.Namespace != namespace {
				t.Errorf("%s: clientConfig %+v, want the Service in %s", wh.Name, wh.ClientConfig, namespace)
			}
			var excluded []string
			if wh.NamespaceSelector != nil {
				want := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: wh.NamespaceSelector.MatchExpressions[0].Values,
				}}}
				if !equality.Semantic.DeepEqual(wh.NamespaceSelector, want) {
					t.Errorf("%s: namespaceSelector %+v", wh.Name, wh.NamespaceSelector)
				}
				excluded = wh.NamespaceSelector.MatchExpressions[0].Values
			}
			if !slices.Equal(excluded, wantExcluded) {
				t.Errorf("%s: leaves out %q, want %q", wh.Name, excluded, wantExcluded)
			}
		}
	})

	t.Run("certificates", func(t *testing.T) {
		for _, gone := range []string{"Issuer/" + namespace + "/policy-webhook-selfsigned", "Issuer/" + namespace + "/policy-webhook-ca",
			"Certificate/" + namespace + "/policy-webhook-ca"} {
			if slices.Contains(keys(objs), gone) {
				t.Errorf("%s is rendered although certManager.issuerRef names an issuer", gone)
			}
		}
		crt := findTyped[cmapi.Certificate](t, objs, "Certificate", "policy-webhook-serving")
		if crt.Spec.IssuerRef.Name != "corp-ca" || crt.Spec.IssuerRef.Kind != "ClusterIssuer" || crt.Spec.IssuerRef.Group != "cert-manager.io" {
			t.Errorf("issuerRef %+v, want ClusterIssuer corp-ca", crt.Spec.IssuerRef)
		}
		wantNames := []string{"policy-webhook", "policy-webhook." + namespace, "policy-webhook." + namespace + ".svc",
			"policy-webhook." + namespace + ".svc.cluster.local"}
		if !slices.Equal(crt.Spec.DNSNames, wantNames) {
			t.Errorf("dnsNames %v, want %v", crt.Spec.DNSNames, wantNames)
		}
	})

	t.Run("monitoring", func(t *testing.T) {
		sm := find(t, objs, "ServiceMonitor", appName)
		if sm.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor labels %v", sm.GetLabels())
		}
		ns, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if !slices.Equal(ns, []string{namespace}) || len(eps) != 1 || eps[0].(map[string]any)["interval"] != "15s" {
			t.Errorf("ServiceMonitor spec %v", sm.Object["spec"])
		}

		pr := find(t, objs, "PrometheusRule", appName)
		if pr.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("PrometheusRule labels %v", pr.GetLabels())
		}
		spec, _ := yaml.Marshal(pr.Object["spec"])
		if strings.Contains(string(spec), "policy-system") || !strings.Contains(string(spec), `namespace="`+namespace+`"`) {
			t.Errorf("the alerts do not select the release namespace %s:\n%s", namespace, spec)
		}

		if tls, _, _ := unstructured.NestedString(eps[0].(map[string]any), "tlsConfig", "serverName"); tls != "policy-webhook."+namespace+".svc" {
			t.Errorf("ServiceMonitor tlsConfig.serverName %q, want the Service in %s", tls, namespace)
		}
		crb := findTyped[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "policy-webhook-metrics-reader")
		wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kube-prometheus-stack-prometheus", Namespace: "observability"}}
		if crb.RoleRef.Name != "policy-webhook-metrics-reader" || !slices.Equal(crb.Subjects, wantSubjects) {
			t.Errorf("metrics reader binding %+v %+v, want %+v bound to policy-webhook-metrics-reader", crb.RoleRef, crb.Subjects, wantSubjects)
		}

		cm := findTyped[corev1.ConfigMap](t, objs, "ConfigMap", "policy-webhook-dashboard")
		if cm.Labels["grafana_dashboard"] != "platform" || cm.Labels["team"] != "platform" {
			t.Errorf("dashboard ConfigMap labels %v", cm.Labels)
		}
		if len(cm.Data["policy-webhook.json"]) == 0 {
			t.Error("dashboard ConfigMap has no policy-webhook.json")
		}
	})

	t.Run("audit", func(t *testing.T) {
		var crds []string
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o.GetName())
			}
		}
		slices.Sort(crds)
		if want := []string{"clusterpolicyreports.wgpolicyk8s.io", "clusterreports.openreports.io", "policyreports.wgpolicyk8s.io", "reports.openreports.io"}; !slices.Equal(crds, want) {
			t.Errorf("CRDs rendered %q, want %q (audit.installOpenReportsCRDs, audit.installPolicyReportCRDs)", crds, want)
		}
		// The audit's RBAC stays.
		role := findTyped[rbacv1.ClusterRole](t, objs, "ClusterRole", appName)
		for _, r := range auditResources {
			if !grants(role, r) {
				t.Errorf("the ClusterRole grants nothing on %s, which the audit reads or writes", r)
			}
		}
		d := findTyped[appsv1.Deployment](t, objs, "Deployment", appName)
		if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--report-format=wgpolicyk8s") {
			t.Errorf("args %q, want --report-format=wgpolicyk8s", args)
		}
	})
}

// auditResources are the resources only the background audit reads or writes.
var auditResources = []string{
	"pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs", "replicationcontrollers",
	"reports", "policyreports",
}

// grants reports whether role has a rule on resource.
func grants(role *rbacv1.ClusterRole, resource string) bool {
	return slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, resource) })
}

// TestAuditOff checks that audit.enabled=false turns the audit off and takes
// away the RBAC only it uses.
func TestAuditOff(t *testing.T) {
	r := mustRender(t, installNamespace, setValues(t, "audit.enabled=false", "audit.interval=5m"))
	d := findTyped[appsv1.Deployment](t, r.objects, "Deployment", appName)
	args := d.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--audit-interval=0") || slices.Contains(args, "--audit-interval=5m") {
		t.Errorf("args %q, want --audit-interval=0 and no other interval", args)
	}
	role := findTyped[rbacv1.ClusterRole](t, r.objects, "ClusterRole", appName)
	for _, res := range auditResources {
		if grants(role, res) {
			t.Errorf("the ClusterRole grants %s without the audit", res)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--report-format") }) {
		t.Errorf("args %q: a report format without the audit", args)
	}
	if !grants(role, "admissionpolicies/status") || !grants(role, "configmaps") {
		t.Errorf("the ClusterRole lost rules the webhook needs: %+v", role.Rules)
	}
}

// TestImageReference checks how image.repository, image.tag and
// image.digest make the image reference.
func TestImageReference(t *testing.T) {
	c := loadChart(t)
	digest := "sha256:" + strings.Repeat("cd", 32)
	for _, tc := range []struct {
		sets []string
		want string
	}{
		{nil, "policy-webhook:" + c.Metadata.AppVersion},
		{[]string{"image.repository=localhost:5000/policy-webhook"}, "localhost:5000/policy-webhook:" + c.Metadata.AppVersion},
		{[]string{"image.tag=v2"}, "policy-webhook:v2"},
		{[]string{"image.digest=" + digest}, "policy-webhook@" + digest},
		{[]string{"image.tag=v2", "image.digest=" + digest}, "policy-webhook:v2@" + digest},
	} {
		r, err := renderChart(c, installNamespace, setValues(t, tc.sets...))
		if err != nil {
			t.Fatalf("%v: %v", tc.sets, err)
		}
		d := findTyped[appsv1.Deployment](t, r.objects, "Deployment", appName)
		if got := d.Spec.Template.Spec.Containers[0].Image; got != tc.want {
			t.Errorf("%v: image %q, want %q", tc.sets, got, tc.want)
		}
	}
}

// TestOneReplica checks that a single replica does not get a
// PodDisruptionBudget that would block every drain of its node.
func TestOneReplica(t *testing.T) {
	r := mustRender(t, installNamespace, setValues(t, "replicas=1"))
	pdb := findTyped[policyv1.PodDisruptionBudget](t, r.objects, "PodDisruptionBudget", appName)
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("PodDisruptionBudget %+v, want maxUnavailable 1 and no minAvailable", pdb.Spec)
	}
}

// TestMonitoringOffByDefault checks that nothing needing the Prometheus
// Operator's CRDs is rendered unless asked for.
func TestMonitoringOffByDefault(t *testing.T) {
	r := mustRender(t, installNamespace, nil)
	var kinds []string
	for _, o := range r.objects {
		kinds = append(kinds, o.GetKind())
	}
	sort.Strings(kinds)
	for _, k := range []string{"ServiceMonitor", "PrometheusRule"} {
		if has(r.objects, k) {
			t.Errorf("a %s is rendered by default", k)
		}
	}
	for _, o := range r.objects {
		if o.GetKind() == "ConfigMap" {
			t.Errorf("%s is rendered by default", key(o))
		}
	}
}
