package certmanager

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// awaitAdmissionConfig waits until the API server's admission chain uses
// every webhook configuration written so far, not only its storage.
//
// The API server judges requests from an informer's copy of the webhook
// configurations, so a caBundle that a Get already returns may not yet be
// the one it trusts. That lag is short but unbounded on a loaded machine;
// waiting it out with a sleep is what made the proofs flaky. The barrier:
// a configuration of its own whose one webhook, failing closed at an
// address nothing listens on, matches only ConfigMaps carrying its label.
// The informer delivers events in order, so once a dry-run create of such
// a ConfigMap is refused by that webhook, every earlier write, the
// caBundle included, is in force too.
func awaitAdmissionConfig(t *testing.T, cs kubernetes.Interface, what string) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	name := fmt.Sprintf("barrier-%d", start.UnixNano())
	const label = "policy-webhook.test/barrier"
	hook := name + ".policy-webhook.test"
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: hook,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL: ptr.To("https://127.0.0.1:1/barrier"),
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"},
				},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{label: name}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](1),
		}},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the admission barrier %s: %v", name, err)
	}
	defer func() {
		if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the admission barrier %s: %v", name, err)
		}
	}()

	probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: metav1.NamespaceDefault, Labels: map[string]string{label: name},
	}}
	err := testenv.Poll(ctx, 30*time.Second, func(context.Context) error {
		_, err := cs.CoreV1().ConfigMaps(probe.Namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err == nil:
			return fmt.Errorf("a ConfigMap labelled %s=%s was admitted: the barrier is not in force yet", label, name)
		case !strings.Contains(err.Error(), hook):
			return fmt.Errorf("a ConfigMap labelled %s=%s was refused, but not by the barrier: %w", label, name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the API server did not take up %s: %v", what, err)
	}
	t.Logf("the API server's admission chain took up %s within %s", what, time.Since(start).Round(time.Millisecond))
}
