package devenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Names of the ValidatingWebhookConfiguration and of its webhooks. The API
// server quotes a webhook's name in every refusal:
// `admission webhook "pods.policy-webhook.policy.example.com" denied the request: ...`.
const (
	ConfigurationName              = "policy-webhook"
	PodsWebhook                    = "pods.policy-webhook.policy.example.com"
	PodControllersWebhook          = "podcontrollers.policy-webhook.policy.example.com"
	MyApplesWebhook                = "myapples.policy-webhook.policy.example.com"
	PolicyConfigMapsWebhook        = "configmaps.policy-webhook.policy.example.com"
	AdmissionPoliciesWebhook       = "admissionpolicies.policy-webhook.policy.example.com"
	PolicyExceptionsWebhook        = "policyexceptions.policy-webhook.policy.example.com"
	StateWebhook                   = "state.policy-webhook.policy.example.com"
	webhookTimeoutSeconds    int32 = 5
)

// WebhookConfiguration is the registration of a webhook served at baseURL
// (https://host:port) with a certificate signed by caBundle, configured as
// the production manifests configure it: fail closed, no side effects, and
// the API server's own namespaces left alone so a broken webhook cannot lock
// the cluster out of repairing itself.
func WebhookConfiguration(baseURL string, caBundle []byte, policyNamespace string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	createUpdate := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	timeout := webhookTimeoutSeconds
	notIn := func(namespaces ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: namespaces,
		}}}
	}
	// The webhook's own Pods must always be able to start, or an outage
	// could never heal itself; the policy namespace stays in for policy
	// ConfigMaps, since cluster-wide policy lives there.
	skipSystem := notIn(metav1.NamespaceSystem, policyNamespace)
	namespaced := admissionregistrationv1.NamespacedScope
	cluster := admissionregistrationv1.ClusterScope
	rule := func(group, version string, scope *admissionregistrationv1.ScopeType, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: createUpdate, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{version}, Resources: resources, Scope: scope,
		}}
	}
	hook := func(name, path string, nsSel, objSel *metav1.LabelSelector, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook {
		url := strings.TrimSuffix(baseURL, "/") + path
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    name,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       nsSel,
			ObjectSelector:          objSel,
		}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			hook(PodsWebhook, "/validate-pods", skipSystem, nil,
				rule("", "v1", &namespaced, policy.ResourcePods, policy.ResourcePods+"/"+policy.SubResEphemeral)),
			// The Pod controllers themselves, not their scale or status
			// subresources, which cannot change the template.
			hook(PodControllersWebhook, "/validate-podcontrollers", skipSystem, nil,
				rule("apps", "v1", &namespaced, "deployments", "replicasets", "statefulsets", "daemonsets"),
				rule("batch", "v1", &namespaced, "jobs", "cronjobs"),
				rule("", "v1", &namespaced, "replicationcontrollers")),
			hook(MyApplesWebhook, "/validate-myapples", skipSystem, nil,
				rule(policy.GroupMyApple, "v1", &namespaced, policy.ResourceApples)),
			// Only labelled ConfigMaps: sending every ConfigMap write in the
			// cluster through the webhook would make it a dependency of
			// everything for no reason.
			hook(PolicyConfigMapsWebhook, "/validate-policies",
				notIn(metav1.NamespaceSystem), &metav1.LabelSelector{MatchLabels: map[string]string{policy.PolicyLabel: "true"}},
				rule("", "v1", &namespaced, "configmaps")),
			hook(AdmissionPoliciesWebhook, "/validate-policies", nil, nil,
				rule("policy.example.com", "v1alpha1", &cluster, "admissionpolicies")),
			hook(PolicyExceptionsWebhook, "/validate-policyexceptions", nil, nil,
				rule("policy.example.com", "v1alpha1", &namespaced, "policyexceptions")),
			stateHook(hook, policyNamespace),
		},
	}
}

// The webhook's own state, by name: cache.LastGoodConfigMap,
// cache.LastGoodKeySecret and quota.LedgerPrefix, which this package
// cannot import (the cache's tests import it).
const (
	LastGoodConfigMap = "policy-webhook-last-good"
	LastGoodKeySecret = "policy-webhook-last-good-key"
	LedgerPrefix      = "policy-webhook-quota-"
)

// WebhookUser is the user the webhook runs as in a cluster: its
// ServiceAccount's (manifests/rbac/service_account.yaml).
func WebhookUser(policyNamespace string) string {
	return "system:serviceaccount:" + policyNamespace + ":policy-webhook"
}

// stateHook is the entry that has every write of the webhook's own state
// in the policy namespace, by anyone but the webhook, judged: matched by
// name (a label would be the writer's to leave off), in matchConditions
// the API server evaluates, so no other write waits on the webhook.
func stateHook(hook func(string, string, *metav1.LabelSelector, *metav1.LabelSelector, ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook,
	policyNamespace string,
) admissionregistrationv1.ValidatingWebhook {
	namespaced := admissionregistrationv1.NamespacedScope
	h := hook(StateWebhook, "/validate-state", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{policyNamespace},
	}}}, nil, admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"},
			Resources: []string{"configmaps", "secrets"}, Scope: &namespaced,
		},
	})
	h.MatchConditions = []admissionregistrationv1.MatchCondition{
		{Name: "webhook-state", Expression: strings.Join([]string{
			"[object, oldObject].exists(o, o != null && has(o.metadata.name) &&",
			"(request.resource.resource == 'configmaps' && (o.metadata.name == '" + LastGoodConfigMap + "' || o.metadata.name.startsWith('" + LedgerPrefix + "')) ||",
			"request.resource.resource == 'secrets' && o.metadata.name == '" + LastGoodKeySecret + "'))",
		}, " ")},
		{Name: "not-the-webhook", Expression: "request.userInfo.username != '" + WebhookUser(policyNamespace) + "'"},
	}
	return h
}

// Register creates the configuration, or replaces one of the same name.
func Register(ctx context.Context, cs kubernetes.Interface, vwc *admissionregistrationv1.ValidatingWebhookConfiguration) error {
	api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	_, err := api.Create(ctx, vwc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *admissionregistrationv1.ValidatingWebhookConfiguration
		if cur, err = api.Get(ctx, vwc.Name, metav1.GetOptions{}); err == nil {
			upd := vwc.DeepCopy()
			upd.ResourceVersion = cur.ResourceVersion
			_, err = api.Update(ctx, upd, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("registering ValidatingWebhookConfiguration %s: %w", vwc.Name, err)
	}
	return nil
}

// Unregister deletes the configuration; a missing one is not an error.
func Unregister(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ValidatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}

// ProbeCalled makes one dry-run create of an invalid policy ConfigMap in
// namespace and reports whether the webhook refused it. Only the webhook
// judges a policy's content (the API server takes any ConfigMap), so a
// refusal that quotes the bad value proves the API server called it over
// TLS with the registered CA bundle. Nothing is stored: it is a dry run.
func ProbeCalled(ctx context.Context, cs kubernetes.Interface, namespace string) (bool, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "policy-webhook-registration-probe",
			Labels: map[string]string{policy.PolicyLabel: "true"},
		},
		Data: map[string]string{policy.ConfigMapDataKey: "enforcement: RegistrationProbe\nmyApples:\n  minQuantity: 1\n"},
	}
	_, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return false, nil
	}
	msg := err.Error()
	if strings.Contains(msg, "denied the request") && strings.Contains(msg, "RegistrationProbe") {
		return true, nil
	}
	return false, err
}

// WaitCalled polls ProbeCalled until the API server routes policy writes in
// namespace through the webhook, or ctx ends.
func WaitCalled(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	err := Poll(ctx, time.Hour, func(ctx context.Context) error {
		ok, err := ProbeCalled(ctx, cs, namespace)
		if err == nil && !ok {
			err = errors.New("an invalid policy was still admitted")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server to call the webhook: %w", err)
	}
	return nil
}
