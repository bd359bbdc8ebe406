package webhook

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const testWebhookUser = "system:serviceaccount:" + testPolicyNamespace + ":policy-webhook"

func TestStateWrittenOnlyByTheWebhook(t *testing.T) {
	s := newTestServer(t, nil, false)
	h, err := NewStateHandler(StateOptions{
		Namespace: testPolicyNamespace, Username: testWebhookUser, Metrics: s.metrics, Log: s.logs.logger(),
		Objects: []StateObject{
			{Resource: "configmaps", Name: "policy-webhook-last-good", What: "the persisted last good versions"},
			{Resource: "secrets", Name: "policy-webhook-last-good-key", What: "their key"},
			{Resource: "configmaps", Name: "policy-webhook-quota-", Prefix: true, What: "a quota ledger"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.handlers[PathState] = h
	secrets := metav1.GroupVersionResource{Version: "v1", Resource: "secrets"}
	request := func(op admissionv1.Operation, res metav1.GroupVersionResource, ns, name, user string) *admissionv1.AdmissionRequest {
		r := &admissionv1.AdmissionRequest{
			UID: nextUID(), Kind: cmGVK, Resource: res, Namespace: ns, Operation: op, UserInfo: authUser(user),
		}
		var obj runtime.Object = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		if op == admissionv1.Delete {
			r.Name, r.OldObject = name, raw(t, obj)
			return r
		}
		// A create names the object only in its body (generateName).
		r.Object = raw(t, obj)
		if op == admissionv1.Update {
			r.Name, r.OldObject = name, raw(t, obj)
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		r       *admissionv1.AdmissionRequest
		allowed bool
		says    string
	}{
		{"the webhook updates the last good versions", request(admissionv1.Update, cmGVR, testPolicyNamespace, "policy-webhook-last-good", testWebhookUser), true, ""},
		{"the webhook creates a ledger", request(admissionv1.Create, cmGVR, testPolicyNamespace, "policy-webhook-quota-team-a", testWebhookUser), true, ""},
		{"the webhook deletes a ledger", request(admissionv1.Delete, cmGVR, testPolicyNamespace, "policy-webhook-quota-team-a", testWebhookUser), true, ""},
		{"an admin updates the last good versions", request(admissionv1.Update, cmGVR, testPolicyNamespace, "policy-webhook-last-good", "admin"), false,
			`policy-webhook: ConfigMap policy-system/policy-webhook-last-good is the persisted last good versions, state only the webhook writes: update by "admin" is refused (only "` + testWebhookUser + `" may write it)`},
		{"an admin creates them", request(admissionv1.Create, cmGVR, testPolicyNamespace, "policy-webhook-last-good", "admin"), false, "create by \"admin\""},
		{"an admin deletes them", request(admissionv1.Delete, cmGVR, testPolicyNamespace, "policy-webhook-last-good", "admin"), false, "delete by \"admin\""},
		{"an admin creates a ledger", request(admissionv1.Create, cmGVR, testPolicyNamespace, "policy-webhook-quota-team-a", "admin"), false, "a quota ledger"},
		{"an admin replaces the key", request(admissionv1.Update, secrets, testPolicyNamespace, "policy-webhook-last-good-key", "admin"), false, "Secret policy-system/policy-webhook-last-good-key is their key"},
		{"the namespace controller deletes the webhook's namespace", request(admissionv1.Delete, cmGVR, testPolicyNamespace, "policy-webhook-last-good", "system:serviceaccount:kube-system:namespace-controller"), true, ""},
		{"the namespace controller may only delete", request(admissionv1.Update, cmGVR, testPolicyNamespace, "policy-webhook-last-good", "system:serviceaccount:kube-system:namespace-controller"), false, "update by"},
		{"another ConfigMap of the namespace", request(admissionv1.Update, cmGVR, testPolicyNamespace, "settings", "admin"), true, ""},
		{"the same name in another namespace", request(admissionv1.Update, cmGVR, "team-a", "policy-webhook-last-good", "admin"), true, ""},
		{"a Secret of a ConfigMap's name", request(admissionv1.Update, secrets, testPolicyNamespace, "policy-webhook-last-good", "admin"), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.review(t, PathState, tc.r)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			if !tc.allowed && !strings.Contains(resp.Result.Message, tc.says) {
				t.Errorf("message %q, want it to say %q", resp.Result.Message, tc.says)
			}
		})
	}
	rec := s.post(t, PathState, reviewBody(t, &admissionv1.AdmissionRequest{UID: nextUID(), Kind: podGVK, Resource: podsGVR, Namespace: "a", Name: "p", Operation: admissionv1.Create}))
	if rec.Code != 400 {
		t.Errorf("a Pod on the state path: HTTP %d, want 400", rec.Code)
	}
	if _, err := NewStateHandler(StateOptions{Username: testWebhookUser}); err == nil {
		t.Error("a state handler with no namespace")
	}

	// Until the webhook knows who it is, it cannot tell its own writes from
	// others': every write is refused, retryably.
	unknown, err := NewStateHandler(StateOptions{Namespace: testPolicyNamespace, Metrics: s.metrics, Log: s.logs.logger(),
		Objects: []StateObject{{Resource: "configmaps", Name: "policy-webhook-last-good", What: "the persisted last good versions"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.handlers[PathState] = unknown
	write := request(admissionv1.Update, metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}, testPolicyNamespace, "policy-webhook-last-good", testWebhookUser)
	if resp := s.review(t, PathState, write); resp.Allowed || resp.Result == nil || resp.Result.Code != 503 {
		t.Errorf("before the user is known: %+v, want 503", resp)
	}
	unknown.SetUsername(testWebhookUser)
	write.UID = nextUID()
	if resp := s.review(t, PathState, write); !resp.Allowed {
		t.Errorf("the webhook's own write once its user is known: %+v", resp.Result)
	}
}
