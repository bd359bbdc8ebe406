package certmanager

import (
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policy-webhook/policy-webhook/cache"
)

// The names the install is built around.
const (
	installNamespace  = "policy-system"
	appName           = "policy-webhook" // ServiceAccount, Deployment, Service, webhook configuration, ...
	servingCertName   = "policy-webhook-serving"
	webhookPort       = 9443
	metricsPort       = 8443
	healthPort        = 8081
	certManagerAPIVer = "cert-manager.io/v1"
)

// TestDefaultRendersTheInstall checks that manifests/default is exactly the
// install the README promises: every object, and every setting a platform
// engineer relies on for safety and least privilege.
func TestDefaultRendersTheInstall(t *testing.T) {
	objs := render(t, "default")

	var got []string
	for _, o := range objs {
		got = append(got, key(o))
	}
	want := []string{
		"Namespace/policy-system",
		"CustomResourceDefinition/admissionpolicies.policy.example.com",
		"CustomResourceDefinition/policyexceptions.policy.example.com",
		"CustomResourceDefinition/myapples.stable.example.com",
		"ServiceAccount/policy-system/policy-webhook",
		"ClusterRole/policy-webhook",
		"ClusterRoleBinding/policy-webhook",
		"ClusterRole/policy-webhook-metrics-auth",
		"ClusterRoleBinding/policy-webhook-metrics-auth",
		"ClusterRole/policy-webhook-metrics-reader",
		"ClusterRole/policy-webhook-exception-editor",
		"Role/policy-system/policy-webhook-leases",
		"RoleBinding/policy-system/policy-webhook-leases",
		"Role/policy-system/policy-webhook-quota",
		"RoleBinding/policy-system/policy-webhook-quota",
		"Role/policy-system/policy-webhook-last-good",
		"RoleBinding/policy-system/policy-webhook-last-good",
		"Issuer/policy-system/policy-webhook-selfsigned",
		"Issuer/policy-system/policy-webhook-ca",
		"Certificate/policy-system/policy-webhook-ca",
		"Certificate/policy-system/policy-webhook-serving",
		"Deployment/policy-system/policy-webhook",
		"PodDisruptionBudget/policy-system/policy-webhook",
		"Service/policy-system/policy-webhook",
		"NetworkPolicy/policy-system/policy-webhook",
		"ValidatingWebhookConfiguration/policy-webhook",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the build has\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, o := range objs {
		if l := o.GetLabels()["app.kubernetes.io/part-of"]; l != appName {
			t.Errorf("%s: label app.kubernetes.io/part-of = %q, want %q", key(o), l, appName)
		}
	}

	t.Run("rbac", func(t *testing.T) { checkRBAC(t, objs) })
	t.Run("deployment", func(t *testing.T) { checkDeployment(t, objs) })
	t.Run("service and network policy", func(t *testing.T) { checkService(t, objs) })
	t.Run("webhook configuration", func(t *testing.T) { checkWebhooks(t, objs, admissionregistrationv1.Fail) })
	t.Run("cert-manager", func(t *testing.T) { checkCertManager(t, objs) })
}

func checkRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	sa := findTyped[corev1.ServiceAccount](t, objs, "ServiceAccount", appName)
	subject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}

	// Exactly these rules: anything more is a grant nobody reviewed.
	cr := findTyped[rbacv1.ClusterRole](t, objs, "ClusterRole", appName)
	wantCluster := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
		{APIGroups: []string{"policy.example.com"}, Resources: []string{"admissionpolicies"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"policy.example.com"}, Resources: []string{"admissionpolicies/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{"policy.example.com"}, Resources: []string{"policyexceptions"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"policy.example.com"}, Resources: []string{"policyexceptions/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{"stable.example.com"}, Resources: []string{"myapples"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: []string{"list"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"list"}},
		{APIGroups: []string{""}, Resources: []string{"replicationcontrollers"}, Verbs: []string{"list"}},
		{APIGroups: []string{"openreports.io"}, Resources: []string{"reports"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
		{APIGroups: []string{"wgpolicyk8s.io"}, Resources: []string{"policyreports"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
	}
	if !equality.Semantic.DeepEqual(cr.Rules, wantCluster) {
		t.Errorf("ClusterRole rules:\n got %+v\nwant %+v", cr.Rules, wantCluster)
	}
	if cr.AggregationRule != nil {
		t.Errorf("ClusterRole aggregates other roles: %+v", cr.AggregationRule)
	}
	crb := findTyped[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", appName)
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name}) ||
		!slices.Equal(crb.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("ClusterRoleBinding binds %+v to %+v, want the ClusterRole to %+v", crb.RoleRef, crb.Subjects, subject)
	}

	// Metrics: the webhook may create token and access reviews, to check
	// scrapers; a scraper bound to the reader role may get /metrics.
	auth := findTyped[rbacv1.ClusterRole](t, objs, "ClusterRole", "policy-webhook-metrics-auth")
	wantAuth := []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
	if !equality.Semantic.DeepEqual(auth.Rules, wantAuth) {
		t.Errorf("ClusterRole %s rules:\n got %+v\nwant %+v", auth.Name, auth.Rules, wantAuth)
	}
	authBinding := findTyped[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "policy-webhook-metrics-auth")
	if authBinding.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: auth.Name}) ||
		!slices.Equal(authBinding.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("ClusterRoleBinding %s binds %+v to %+v, want the ClusterRole to %+v", authBinding.Name, authBinding.RoleRef, authBinding.Subjects, subject)
	}
	reader := findTyped[rbacv1.ClusterRole](t, objs, "ClusterRole", "policy-webhook-metrics-reader")
	if want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}; !equality.Semantic.DeepEqual(reader.Rules, want) {
		t.Errorf("ClusterRole %s rules %+v, want %+v", reader.Name, reader.Rules, want)
	}

	// Leases: a Role, so only in the webhook's own namespace.
	role := findTyped[rbacv1.Role](t, objs, "Role", "policy-webhook-leases")
	wantRole := []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
		Verbs: []string{"get", "list", "create", "update", "delete"},
	}}
	if role.Namespace != installNamespace || !equality.Semantic.DeepEqual(role.Rules, wantRole) {
		t.Errorf("Role %s/%s rules %+v, want %+v in %s", role.Namespace, role.Name, role.Rules, wantRole, installNamespace)
	}
	rb := findTyped[rbacv1.RoleBinding](t, objs, "RoleBinding", "policy-webhook-leases")
	if rb.Namespace != installNamespace || rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) ||
		!slices.Equal(rb.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("RoleBinding binds %+v to %+v, want the Role to %+v", rb.RoleRef, rb.Subjects, subject)
	}

	// The quota ledgers: ConfigMaps written only in the webhook's own
	// namespace, and deleted by the leader once their namespace is gone.
	quotaRole := findTyped[rbacv1.Role](t, objs, "Role", "policy-webhook-quota")
	wantQuota := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update", "delete"}}}
	if quotaRole.Namespace != installNamespace || !equality.Semantic.DeepEqual(quotaRole.Rules, wantQuota) {
		t.Errorf("Role %s/%s rules %+v, want %+v in %s", quotaRole.Namespace, quotaRole.Name, quotaRole.Rules, wantQuota, installNamespace)
	}
	qrb := findTyped[rbacv1.RoleBinding](t, objs, "RoleBinding", "policy-webhook-quota")
	if qrb.Namespace != installNamespace || qrb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: quotaRole.Name}) ||
		!slices.Equal(qrb.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("RoleBinding binds %+v to %+v, want the quota Role to %+v", qrb.RoleRef, qrb.Subjects, subject)
	}

	// The last good versions: create ConfigMaps, update that one, and the
	// Secret of the key they are signed with, only in the webhook's own
	// namespace.
	lg := findTyped[rbacv1.Role](t, objs, "Role", "policy-webhook-last-good")
	wantLG := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{cache.LastGoodConfigMap}, Verbs: []string{"update"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{cache.LastGoodKeySecret}, Verbs: []string{"get", "list", "watch"}},
	}
	if lg.Namespace != installNamespace || !equality.Semantic.DeepEqual(lg.Rules, wantLG) {
		t.Errorf("Role %s/%s rules %+v, want %+v in %s", lg.Namespace, lg.Name, lg.Rules, wantLG, installNamespace)
	}
	lgb := findTyped[rbacv1.RoleBinding](t, objs, "RoleBinding", "policy-webhook-last-good")
	if lgb.Namespace != installNamespace || lgb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: lg.Name}) ||
		!slices.Equal(lgb.Subjects, []rbacv1.Subject{subject}) {
		t.Errorf("RoleBinding binds %+v to %+v, want the Role to %+v", lgb.RoleRef, lgb.Subjects, subject)
	}
}

// webhookDeployment returns the Deployment and its one container.
func webhookDeployment(t *testing.T, objs []*unstructured.Unstructured) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := findTyped[appsv1.Deployment](t, objs, "Deployment", appName)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment has %d containers, want 1", n)
	}
	return d, &d.Spec.Template.Spec.Containers[0]
}

func checkDeployment(t *testing.T, objs []*unstructured.Unstructured) {
	d, c := webhookDeployment(t, objs)
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %v, want 2 or more", show(d.Spec.Replicas))
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not select its own Pods %v (%v)", d.Spec.Selector, podLabels, err)
	}
	if pod.ServiceAccountName != appName {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, appName)
	}
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName = %q, want system-cluster-critical", pod.PriorityClassName)
	}
	spreadsNodes := false
	for _, tsc := range pod.TopologySpreadConstraints {
		s, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if tsc.TopologyKey == corev1.LabelHostname && tsc.WhenUnsatisfiable == corev1.DoNotSchedule &&
			tsc.MaxSkew == 1 && err == nil && s.Matches(podLabels) {
			spreadsNodes = true
		}
	}
	if !spreadsNodes {
		t.Errorf("no hard topology spread of the webhook's Pods across nodes: %+v", pod.TopologySpreadConstraints)
	}

	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("Pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Error("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want all dropped and none added", sc.Capabilities)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container is privileged")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s: want both, request <= limit", r, req.String(), lim.String())
		}
	}

	// The serve flags of the contract, each once.
	wantArgs := []string{
		"serve",
		"--policy-namespace=" + installNamespace,
		"--port=9443",
		"--cert-dir=/etc/policy-webhook/serving-certs",
		"--metrics-bind-address=:8443",
		"--health-probe-bind-address=:8081",
		"--leader-elect=true",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	// The replica's name, --replica-name's default, is the Pod's.
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("env %+v lacks POD_NAME from metadata.name", c.Env)
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probePort := func(p *corev1.Probe) (string, int32) {
		if p == nil || p.HTTPGet == nil {
			return "", 0
		}
		if p.HTTPGet.Port.Type == intstr.String {
			return p.HTTPGet.Path, ports[p.HTTPGet.Port.StrVal]
		}
		return p.HTTPGet.Path, p.HTTPGet.Port.IntVal
	}
	if path, port := probePort(c.ReadinessProbe); path != "/readyz" || port != healthPort {
		t.Errorf("readiness probe %s on %d, want /readyz on %d", path, port, healthPort)
	}
	if path, port := probePort(c.LivenessProbe); path != "/healthz" || port != healthPort {
		t.Errorf("liveness probe %s on %d, want /healthz on %d", path, port, healthPort)
	}
	if ports["webhook"] != webhookPort || ports["metrics"] != metricsPort {
		t.Errorf("container ports %v, want webhook %d and metrics %d", ports, webhookPort, metricsPort)
	}

	// The serving certificate's Secret, read-only, where --cert-dir points.
	cert := findTyped[cmapi.Certificate](t, objs, "Certificate", servingCertName)
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == "/etc/policy-webhook/serving-certs" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatalf("--cert-dir is not a read-only mount: %+v", c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == mount.Name {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != cert.Spec.SecretName {
		t.Errorf("volume %q is %+v, want the Secret %q of Certificate %s", mount.Name, vol, cert.Spec.SecretName, cert.Name)
	}

	pdb := findTyped[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", appName)
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the webhook's Pods (%v)", pdb.Spec.Selector, err)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || int32(pdb.Spec.MinAvailable.IntValue()) >= *d.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and fewer than the %d replicas, or no drain could proceed",
			show(pdb.Spec.MinAvailable), *d.Spec.Replicas)
	}
}

func checkService(t *testing.T, objs []*unstructured.Unstructured) {
	d, _ := webhookDeployment(t, objs)
	podLabels := labels.Set(d.Spec.Template.Labels)

	svc := findTyped[corev1.Service](t, objs, "Service", appName)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the webhook's Pods %v", svc.Spec.Selector, podLabels)
	}
	svcPorts := map[int32]intstr.IntOrString{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Port] = p.TargetPort
	}
	if svcPorts[443] != intstr.FromString("webhook") || svcPorts[metricsPort] != intstr.FromString("metrics") || len(svcPorts) != 2 {
		t.Errorf("Service ports %v, want 443 -> webhook (9443) and 8443 -> metrics", svcPorts)
	}

	np := findTyped[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", appName)
	npSel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !npSel.Matches(podLabels) || npSel.Empty() {
		t.Errorf("NetworkPolicy selects %v, want the webhook's Pods", np.Spec.PodSelector)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("NetworkPolicy types %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	var open []int
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("an ingress rule admits every port: %+v", rule)
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.EndPort != nil || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				t.Errorf("ingress port %+v: want a single TCP port", p)
				continue
			}
			open = append(open, p.Port.IntValue())
		}
	}
	slices.Sort(open)
	if !slices.Equal(open, []int{metricsPort, webhookPort}) {
		t.Errorf("NetworkPolicy admits ports %v, want only %d and %d", open, metricsPort, webhookPort)
	}
}

// checkWebhooks checks the ValidatingWebhookConfiguration; workloads is the
// failurePolicy wanted for Pods, Pod controllers and MyApples (policy
// objects always Fail).
func checkWebhooks(t *testing.T, objs []*unstructured.Unstructured, workloads admissionregistrationv1.FailurePolicyType) {
	vwc := findTyped[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", appName)
	if got, want := vwc.Annotations["cert-manager.io/inject-ca-from"], installNamespace+"/"+servingCertName; got != want {
		t.Errorf("annotation cert-manager.io/inject-ca-from = %q, want %q", got, want)
	}
	type want struct {
		path         string
		failure      admissionregistrationv1.FailurePolicyType
		rules        []admissionregistrationv1.RuleWithOperations
		excluded     []string          // namespaces the namespaceSelector leaves out
		objectLabels map[string]string // the objectSelector's matchLabels, nil for none
		conditions   []string          // the names of its matchConditions
	}
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	namespaced, cluster := admissionregistrationv1.NamespacedScope, admissionregistrationv1.ClusterScope
	rule := func(group, version string, scope admissionregistrationv1.ScopeType, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{version}, Resources: resources, Scope: &scope,
		}}
	}
	rules := func(r ...admissionregistrationv1.RuleWithOperations) []admissionregistrationv1.RuleWithOperations {
		return r
	}
	wants := map[string]want{
		"pods.policy-webhook.policy.example.com": {
			path: "/validate-pods", failure: workloads,
			rules:    rules(rule("", "v1", namespaced, "pods", "pods/ephemeralcontainers")),
			excluded: []string{"kube-system", installNamespace},
		},
		// Judged where their Pods are, and failing as they do.
		"podcontrollers.policy-webhook.policy.example.com": {
			path: "/validate-podcontrollers", failure: workloads,
			rules: rules(
				rule("apps", "v1", namespaced, "deployments", "replicasets", "statefulsets", "daemonsets"),
				rule("batch", "v1", namespaced, "jobs", "cronjobs"),
				rule("", "v1", namespaced, "replicationcontrollers"),
			),
			excluded: []string{"kube-system", installNamespace},
		},
		"myapples.policy-webhook.policy.example.com": {
			path: "/validate-myapples", failure: workloads,
			rules:    rules(rule("stable.example.com", "v1", namespaced, "myapples")),
			excluded: []string{"kube-system", installNamespace},
		},
		// Cluster-wide policy lives in policy-system: it must be judged.
		"configmaps.policy-webhook.policy.example.com": {
			path: "/validate-policies", failure: admissionregistrationv1.Fail,
			rules:        rules(rule("", "v1", namespaced, "configmaps")),
			excluded:     []string{"kube-system"},
			objectLabels: map[string]string{"policy.example.com/policy": "true"},
		},
		"admissionpolicies.policy-webhook.policy.example.com": {
			path: "/validate-policies", failure: admissionregistrationv1.Fail,
			rules: rules(rule("policy.example.com", "v1alpha1", cluster, "admissionpolicies")),
		},
		"policyexceptions.policy-webhook.policy.example.com": {
			path: "/validate-policyexceptions", failure: admissionregistrationv1.Fail,
			rules: rules(rule("policy.example.com", "v1alpha1", namespaced, "policyexceptions")),
		},
		// The webhook's own state: its namespace only, by name, writes by
		// others than the webhook (matchConditions).
		"state.policy-webhook.policy.example.com": {
			path: "/validate-state", failure: admissionregistrationv1.Fail,
			rules: rules(admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps", "secrets"}, Scope: &namespaced},
			}),
			excluded:   []string{"kube-system", "default", "team-a", "cert-manager"},
			conditions: []string{"webhook-state", "not-the-webhook"},
		},
	}
	if len(vwc.Webhooks) != len(wants) {
		t.Errorf("%d webhooks, want %d", len(vwc.Webhooks), len(wants))
	}
	for _, wh := range vwc.Webhooks {
		w, ok := wants[wh.Name]
		if !ok {
			t.Errorf("unexpected webhook %q", wh.Name)
			continue
		}
		svc := wh.ClientConfig.Service
		if svc == nil || svc.Name != appName || svc.Namespace != installNamespace || svc.Path == nil || *svc.Path != w.path ||
			svc.Port == nil || *svc.Port != 443 || wh.ClientConfig.URL != nil || len(wh.ClientConfig.CABundle) != 0 {
			t.Errorf("%s: clientConfig %+v, want Service %s/%s port 443 path %s and no caBundle (cainjector's)",
				wh.Name, wh.ClientConfig, installNamespace, appName, w.path)
		}
		if wh.FailurePolicy == nil || *wh.FailurePolicy != w.failure {
			t.Errorf("%s: failurePolicy %v, want %s", wh.Name, show(wh.FailurePolicy), w.failure)
		}
		if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects %v, want None", wh.Name, show(wh.SideEffects))
		}
		if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds > 5 || *wh.TimeoutSeconds < 1 {
			t.Errorf("%s: timeoutSeconds %v, want 1 to 5", wh.Name, show(wh.TimeoutSeconds))
		}
		if !slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("%s: admissionReviewVersions %v, want [v1]", wh.Name, wh.AdmissionReviewVersions)
		}
		if wh.MatchPolicy == nil || *wh.MatchPolicy != admissionregistrationv1.Equivalent {
			t.Errorf("%s: matchPolicy %v, want Equivalent", wh.Name, show(wh.MatchPolicy))
		}
		if !equality.Semantic.DeepEqual(wh.Rules, w.rules) {
			t.Errorf("%s: rules %+v, want %+v", wh.Name, wh.Rules, w.rules)
		}
		checkNamespaceSelector(t, wh.Name, wh.NamespaceSelector, w.excluded)
		var conditions []string
		for _, c := range wh.MatchConditions {
			conditions = append(conditions, c.Name)
		}
		if !slices.Equal(conditions, w.conditions) {
			t.Errorf("%s: matchConditions %v, want %v", wh.Name, conditions, w.conditions)
		}
		switch {
		case w.objectLabels == nil && wh.ObjectSelector != nil && (len(wh.ObjectSelector.MatchLabels) > 0 || len(wh.ObjectSelector.MatchExpressions) > 0):
			t.Errorf("%s: objectSelector %+v, want none", wh.Name, wh.ObjectSelector)
		case w.objectLabels != nil && (wh.ObjectSelector == nil || !equality.Semantic.DeepEqual(wh.ObjectSelector.MatchLabels, w.objectLabels) ||
			len(wh.ObjectSelector.MatchExpressions) > 0):
			t.Errorf("%s: objectSelector %+v, want matchLabels %v", wh.Name, wh.ObjectSelector, w.objectLabels)
		}
	}
}

// checkNamespaceSelector checks that sel leaves out exactly the excluded
// namespaces, judging by the label every namespace carries,
// kubernetes.io/metadata.name.
func checkNamespaceSelector(t *testing.T, webhook string, sel *metav1.LabelSelector, excluded []string) {
	t.Helper()
	s := labels.Everything()
	if sel != nil {
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel); err != nil {
			t.Errorf("%s: namespaceSelector: %v", webhook, err)
			return
		}
	}
	for _, ns := range []string{"kube-system", installNamespace, "default", "team-a", "cert-manager"} {
		matched := s.Matches(labels.Set{corev1.LabelMetadataName: ns})
		if matched == slices.Contains(excluded, ns) {
			t.Errorf("%s: namespace %s matched=%v, want the webhook to leave out exactly %v", webhook, ns, matched, excluded)
		}
	}
}

func checkCertManager(t *testing.T, objs []*unstructured.Unstructured) {
	for _, o := range objs {
		if (o.GetKind() == "Issuer" || o.GetKind() == "Certificate") && o.GetAPIVersion() != certManagerAPIVer {
			t.Errorf("%s: apiVersion %s, want %s", key(o), o.GetAPIVersion(), certManagerAPIVer)
		}
	}
	selfSigned := findTyped[cmapi.Issuer](t, objs, "Issuer", "policy-webhook-selfsigned")
	if selfSigned.Spec.SelfSigned == nil {
		t.Errorf("Issuer %s is not self-signed: %+v", selfSigned.Name, selfSigned.Spec)
	}
	ca := findTyped[cmapi.Certificate](t, objs, "Certificate", "policy-webhook-ca")
	if !ca.Spec.IsCA || ca.Spec.IssuerRef.Name != selfSigned.Name || ca.Spec.IssuerRef.Kind != "Issuer" {
		t.Errorf("Certificate %s: isCA %v issued by %+v, want a CA from Issuer %s", ca.Name, ca.Spec.IsCA, ca.Spec.IssuerRef, selfSigned.Name)
	}
	caIssuer := findTyped[cmapi.Issuer](t, objs, "Issuer", "policy-webhook-ca")
	if caIssuer.Spec.CA == nil || caIssuer.Spec.CA.SecretName != ca.Spec.SecretName {
		t.Errorf("Issuer %s: %+v, want a CA Issuer on Secret %s", caIssuer.Name, caIssuer.Spec, ca.Spec.SecretName)
	}

	serving := findTyped[cmapi.Certificate](t, objs, "Certificate", servingCertName)
	if serving.Spec.IsCA || serving.Spec.IssuerRef.Name != caIssuer.Name || serving.Spec.IssuerRef.Kind != "Issuer" {
		t.Errorf("Certificate %s issued by %+v, want a leaf from Issuer %s", serving.Name, serving.Spec.IssuerRef, caIssuer.Name)
	}
	wantNames := []string{
		appName,
		appName + "." + installNamespace,
		appName + "." + installNamespace + ".svc",
		appName + "." + installNamespace + ".svc.cluster.local",
	}
	if !slices.Equal(serving.Spec.DNSNames, wantNames) {
		t.Errorf("dnsNames %v, want %v", serving.Spec.DNSNames, wantNames)
	}
	if !slices.Contains(serving.Spec.Usages, cmapi.UsageServerAuth) {
		t.Errorf("usages %v lack server auth", serving.Spec.Usages)
	}
	for _, c := range []*cmapi.Certificate{ca, serving} {
		if c.Spec.Duration == nil || c.Spec.RenewBefore == nil || c.Spec.RenewBefore.Duration <= 0 ||
			c.Spec.RenewBefore.Duration >= c.Spec.Duration.Duration {
			t.Errorf("Certificate %s: duration %v renewBefore %v, want both, renewal before expiry", c.Name, c.Spec.Duration, c.Spec.RenewBefore)
		}
		pk := c.Spec.PrivateKey
		if pk == nil || pk.RotationPolicy != cmapi.RotationPolicyAlways || pk.Algorithm != cmapi.ECDSAKeyAlgorithm {
			t.Errorf("Certificate %s: privateKey %+v, want ECDSA with rotationPolicy Always", c.Name, pk)
		}
	}
	// Every serving certificate is issued by a CA that outlives it: the CA
	// renews earlier before its expiry than a serving certificate lasts (see
	// manifests/certmanager/certificates.yaml).
	if serving.Spec.Duration != nil && ca.Spec.RenewBefore != nil && ca.Spec.RenewBefore.Duration <= serving.Spec.Duration.Duration {
		t.Errorf("CA renewBefore %v is not longer than the serving duration %v: a serving certificate issued just before "+
			"the CA renews would outlive its CA", ca.Spec.RenewBefore, serving.Spec.Duration)
	}
	if serving.Spec.RenewBefore != nil && serving.Spec.RenewBefore.Duration < 7*24*time.Hour {
		t.Errorf("serving renewBefore %v leaves less than a week to notice a failed renewal", serving.Spec.RenewBefore)
	}
}

// show is what a pointer field holds, for failure messages.
func show[T any](p *T) any {
	if p == nil {
		return "<unset>"
	}
	return *p
}
