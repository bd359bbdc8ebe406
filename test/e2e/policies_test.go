package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
)

// TestPolicyEditPropagation edits a policy ConfigMap and measures how long
// after the API server accepted the write the next admission follows it.
// The time is logged, not asserted: it depends on the machine.
func TestPolicyEditPropagation(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	redOnly := "myApples:\n  allowedColors: [red]\n"
	redGreen := "myApples:\n  allowedColors: [red, green]\n"
	greenRefused := appleDenial(fmt.Sprintf(
		`policy violation: ConfigMap %s/colors myApples.allowedColors spec.color: color "green" is not allowed: use one of red`, ns))
	green := func() error {
		return createApple(ctx, apple(ns, "probe", "green", "small", 1), metav1.CreateOptions{DryRun: dryRun})
	}
	mustPutPolicy(t, ns, "colors", redOnly)
	eventuallyDenied(t, green, greenRefused)

	const edits = 20
	var took []time.Duration
	for i := range edits {
		allow := i%2 == 0
		spec := redOnly
		if allow {
			spec = redGreen
		}
		if err := putPolicy(ctx, ns, "colors", spec); err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
		accepted := time.Now() // the API server has stored the edit
		for {
			err := green()
			if allow && err == nil || !allow && err != nil && err.Error() == greenRefused {
				break
			}
			if !allow && err != nil {
				t.Fatalf("edit %d: refused with %q, want %q", i, err, greenRefused)
			}
			if time.Since(accepted) > propagationTimeout {
				t.Fatalf("edit %d (allow green: %v) not in force after %s; last answer: %v", i, allow, propagationTimeout, err)
			}
		}
		took = append(took, time.Since(accepted))
	}
	slices.Sort(took)
	// What a probe costs by itself, to read the figures above against.
	var rtt []time.Duration
	for range 20 {
		start := time.Now()
		_ = green()
		rtt = append(rtt, time.Since(start))
	}
	slices.Sort(rtt)
	t.Logf("policy edit -> next admission follows it, over %d edits: min %s, p50 %s, max %s "+
		"(each includes the probing admission's own round trip through the API server, p50 %s)",
		edits, took[0], took[len(took)/2], took[len(took)-1], rtt[len(rtt)/2])
}

func TestInvalidPolicyRefusedAtAdmission(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	t.Run("ConfigMap", func(t *testing.T) {
		err := putPolicy(ctx, ns, "strict", "enforcement: Strict\nmyApples:\n  minQuantity: 1\n")
		wantDenied(t, err, denial(devenv.PolicyConfigMapsWebhook, fmt.Sprintf(
			`ConfigMap %s/strict is not a valid policy: policy.yaml: enforcement: unsupported value "Strict": must be one of Deny, Warn, Audit`, ns)))
	})
	t.Run("ConfigMap, every problem listed", func(t *testing.T) {
		err := putPolicy(ctx, ns, "typos", "pods:\n  allowedRegistrys: [registry.example.com/]\n  disallowedTags: [\"bad tag\"]\n")
		if err == nil {
			t.Fatal("admitted")
		}
		prefix := denial(devenv.PolicyConfigMapsWebhook, fmt.Sprintf("ConfigMap %s/typos is not a valid policy: 2 problems:\n- ", ns))
		if !strings.HasPrefix(err.Error(), prefix) ||
			!strings.Contains(err.Error(), "policy.yaml: pods.allowedRegistrys: unknown field") ||
			!strings.Contains(err.Error(), `policy.yaml: pods.disallowedTags[0]: invalid tag "bad tag"`) {
			t.Fatalf("refused with:\n%s\nwant both problems, after %q", err, prefix)
		}
	})
	t.Run("valid policy made invalid by an update", func(t *testing.T) {
		mustPutPolicy(t, ns, "colors", "myApples:\n  allowedColors: [red]\n")
		err := putPolicy(ctx, ns, "colors", "myApples:\n  allowedColors: red\n")
		if err == nil || !strings.HasPrefix(err.Error(), denial(devenv.PolicyConfigMapsWebhook, "ConfigMap "+ns+"/colors is not a valid policy: policy.yaml: myApples.allowedColors")) {
			t.Fatalf("got %v, want a refusal naming policy.yaml: myApples.allowedColors", err)
		}
		cm, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, "colors", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data[policy.ConfigMapDataKey]; got != "myApples:\n  allowedColors: [red]\n" {
			t.Fatalf("stored policy changed to %q", got)
		}
	})
	t.Run("AdmissionPolicy", func(t *testing.T) {
		name := "e2e-invalid-" + ns
		ap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1",
			"kind":       "AdmissionPolicy",
			"metadata":   map[string]any{"name": name},
			"spec":       map[string]any{"pods": map[string]any{"disallowedTags": []any{"bad tag!"}}},
		}}
		_, err := env.dyn.Resource(admissionPolicies).Create(ctx, ap, metav1.CreateOptions{})
		t.Cleanup(func() { _ = env.dyn.Resource(admissionPolicies).Delete(ctx, name, metav1.DeleteOptions{}) })
		wantDenied(t, err, denial(devenv.AdmissionPoliciesWebhook, fmt.Sprintf(
			`AdmissionPolicy %s is not a valid policy: spec.pods.disallowedTags[0]: invalid tag "bad tag!": tags are letters, digits, '_', '.' and '-', at most 128`, name)))
	})
	t.Run("unlabelled ConfigMaps are not policies", func(t *testing.T) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "not-a-policy", Namespace: ns},
			Data:       map[string]string{policy.ConfigMapDataKey: "enforcement: Strict"},
		}
		_, err := env.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		wantAdmitted(t, err)
	})
}

// TestInvalidPolicyWrittenBehindTheWebhooksBack writes an invalid policy
// while the webhook is not registered, the way one gets in on a cluster
// where the webhook was down with failurePolicy Ignore, or was installed
// after the policy: the cache must ignore it, keep the last good version in
// force, and say so with an Event.
func TestInvalidPolicyWrittenBehindTheWebhooksBack(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	mustPutPolicy(t, ns, "colors", "myApples:\n  allowedColors: [red]\n")
	greenRefused := appleDenial(fmt.Sprintf(
		`policy violation: ConfigMap %s/colors myApples.allowedColors spec.color: color "green" is not allowed: use one of red`, ns))
	probe := func(color string) error {
		return createApple(ctx, apple(ns, "probe", color, "small", 1), metav1.CreateOptions{DryRun: dryRun})
	}
	eventuallyDenied(t, func() error { return probe("green") }, greenRefused)

	vwc := devenv.WebhookConfiguration(env.wh.URL, env.wh.CA.CertPEM(), env.wh.PolicyNamespace)
	if err := devenv.Unregister(ctx, env.client, vwc.Name); err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, the other tests need the webhook back.
	t.Cleanup(func() {
		if err := devenv.Register(context.Background(), env.client, vwc); err != nil {
			t.Errorf("re-registering the webhook: %v", err)
		}
	})
	invalid := "myApples:\n  allowedColors: [red, green]\n  maxQuantity: lots\n"
	// The API server drops the webhook from its own informer shortly after
	// the delete; until then the write is still refused.
	eventually(t, "writing an invalid policy with the webhook unregistered", func() error {
		return putPolicy(ctx, ns, "colors", invalid)
	})

	if err := devenv.Register(ctx, env.client, vwc); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, env.client, env.wh.PolicyNamespace); err != nil {
		t.Fatal(err)
	}

	// The webhook saw the invalid version (the Event says so) and ...
	var ev corev1.Event
	eventually(t, "an Event on the invalid ConfigMap", func() error {
		list, err := env.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "colors").String(),
		})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no Event yet")
		}
		ev = list.Items[0]
		return nil
	})
	t.Logf("Event: type=%s reason=%s message=%q", ev.Type, ev.Reason, ev.Message)
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "myApples.maxQuantity") {
		t.Errorf("Event %s %s %q: want a Warning that names myApples.maxQuantity", ev.Type, ev.Reason, ev.Message)
	}
	// ... kept the previous version in force: green is still refused, by
	// the same policy, and red still admitted.
	wantDenied(t, probe("green"), greenRefused)
	wantAdmitted(t, probe("red"))

	// A valid version replaces it.
	mustPutPolicy(t, ns, "colors", "myApples:\n  allowedColors: [red, green]\n")
	eventuallyAdmitted(t, func() error { return probe("green") })
}
