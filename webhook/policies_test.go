package webhook

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

func labelledConfigMap(ns, name string, labelled bool, data map[string]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       data,
	}
	if labelled {
		cm.Labels = map[string]string{"policy.example.com/policy": "true"}
	}
	return cm
}

func configMapRequest(t *testing.T, op admissionv1.Operation, cm *corev1.ConfigMap) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: cmGVK, Resource: cmGVR, Name: cm.Name, Namespace: cm.Namespace,
		Operation: op, UserInfo: authUser("platform"), Object: raw(t, cm),
	}
}

func admissionPolicyRequest(t *testing.T, op admissionv1.Operation, name, spec string) *admissionv1.AdmissionRequest {
	obj := map[string]any{
		"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": name},
	}
	if spec != "" {
		obj["spec"] = json.RawMessage(spec)
	}
	return &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: apGVK, Resource: apGVR, Name: name,
		Operation: op, UserInfo: authUser("platform"), Object: raw(t, obj),
	}
}

func TestPolicyValidation(t *testing.T) {
	tests := []struct {
		name    string
		req     func(t *testing.T) *admissionv1.AdmissionRequest
		allowed bool
		code    int32
		message string // the whole message, exactly
		prefix  string // or its start
		verdict string
		kind    string
	}{
		{
			name: "valid policy ConfigMap",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "registries", true,
					map[string]string{"policy.yaml": "pods:\n  allowedRegistries: [registry.example.com/]\n"}))
			},
			allowed: true, verdict: "allowed", kind: "ConfigMap",
		},
		{
			name: "policy ConfigMap with a typo",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "registries", true,
					map[string]string{"policy.yaml": "pods:\n  allowedRegistrie: [registry.example.com/]\n"}))
			},
			code:    422,
			message: "ConfigMap team-a/registries is not a valid policy: policy.yaml: pods.allowedRegistrie: unknown field",
			verdict: "denied", kind: "ConfigMap",
		},
		{
			name: "policy ConfigMap update with several problems lists them all",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return configMapRequest(t, admissionv1.Update, labelledConfigMap("team-a", "registries", true,
					map[string]string{"policy.yaml": "enforcment: Deny\npods:\n  allowedRegistrie: [x]\n"}))
			},
			code:    422,
			message: "ConfigMap team-a/registries is not a valid policy: 2 problems:\n- policy.yaml: enforcment: unknown field\n- policy.yaml: pods.allowedRegistrie: unknown field",
			verdict: "denied", kind: "ConfigMap",
		},
		{
			name: "policy ConfigMap without policy.yaml",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return configMapRequest(t, admissionv1.Create, labelledConfigMap("policy-system", "empty", true, map[string]string{"other": "x"}))
			},
			code:    422,
			message: `ConfigMap policy-system/empty is not a valid policy: data: missing key "policy.yaml" holding the policy`,
			verdict: "denied", kind: "ConfigMap",
		},
		{
			name: "unlabelled ConfigMap is anybody's business",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "settings", false,
					map[string]string{"policy.yaml": "not: [a policy"}))
			},
			allowed: true, verdict: "skipped", kind: "ConfigMap",
		},
		{
			name: "deleting a policy ConfigMap is not judged",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := configMapRequest(t, admissionv1.Delete, labelledConfigMap("team-a", "registries", true, nil))
				r.Object = runtime.RawExtension{}
				return r
			},
			allowed: true, verdict: "skipped", kind: "ConfigMap",
		},
		{
			name: "valid AdmissionPolicy",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return admissionPolicyRequest(t, admissionv1.Create, "trusted-registries",
					`{"enforcement":"Warn","pods":{"allowedRegistries":["ghcr.io/acme/"]}}`)
			},
			allowed: true, verdict: "allowed", kind: "AdmissionPolicy",
		},
		{
			name: "AdmissionPolicy with a wrong type",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return admissionPolicyRequest(t, admissionv1.Update, "trusted-registries",
					`{"pods":{"allowedRegistries":"ghcr.io/acme/"}}`)
			},
			code:    422,
			prefix:  "AdmissionPolicy trusted-registries is not a valid policy: spec.pods.allowedRegistries: must be a list",
			verdict: "denied", kind: "AdmissionPolicy",
		},
		{
			name: "AdmissionPolicy without spec",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return admissionPolicyRequest(t, admissionv1.Create, "nothing", "")
			},
			code:    422,
			message: "AdmissionPolicy nothing is not a valid policy: spec: required",
			verdict: "denied", kind: "AdmissionPolicy",
		},
		{
			name: "AdmissionPolicy status update is not judged",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := admissionPolicyRequest(t, admissionv1.Update, "trusted-registries", `{"pods":{"allowedRegistrie":[]}}`)
				r.SubResource = "status"
				return r
			},
			allowed: true, verdict: "skipped", kind: "AdmissionPolicy",
		},
		{
			name: "undecodable ConfigMap refused with 400",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "x", true, nil))
				r.Object.Raw = []byte(`{"metadata":{"labels":["policy"]}}`)
				return r
			},
			code:    400,
			prefix:  "policy-webhook: cannot read request.object: json: ",
			verdict: "error", kind: "ConfigMap",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// No judge at all, and one never synced: validating policy is
			// pure parsing and must not wait for the cache.
			srv := newTestServer(t, &setJudge{synced: false}, false)
			resp := srv.review(t, PathPolicies, tc.req(t))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			if tc.code != 0 {
				if resp.Result == nil || resp.Result.Code != tc.code {
					t.Fatalf("result %+v, want code %d", resp.Result, tc.code)
				}
				if tc.code == 422 && resp.Result.Reason != metav1.StatusReasonInvalid {
					t.Errorf("reason %q, want Invalid", resp.Result.Reason)
				}
				if tc.message != "" && resp.Result.Message != tc.message {
					t.Errorf("message\n%s\nwant\n%s", resp.Result.Message, tc.message)
				}
				if tc.prefix != "" && !strings.HasPrefix(resp.Result.Message, tc.prefix) {
					t.Errorf("message\n%s\nwant prefix\n%s", resp.Result.Message, tc.prefix)
				}
			}
			if got := testutil.ToFloat64(srv.metrics.admissions.WithLabelValues(tc.kind, string(tc.req(t).Operation), tc.verdict)); got != 1 {
				t.Errorf("admissions_total{%s,%s} = %v, want 1", tc.kind, tc.verdict, got)
			}
		})
	}
}

func TestPolicyPathRefusesOtherResources(t *testing.T) {
	srv := newTestServer(t, &setJudge{}, false)
	rec := srv.post(t, PathPolicies, reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil)))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "judges ConfigMaps and AdmissionPolicies, not pods") {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
}

// Policy objects are read a few at a time: one that finds no room within
// the wait is refused with 429 and a retry delay, and counted.
func TestPolicyParsingIsBounded(t *testing.T) {
	srv := newTestServer(t, &setJudge{}, false)
	h := srv.handlers[PathPolicies].(*reviewHandler).handler.(*policyHandler)
	h.wait = 10 * time.Millisecond
	for range maxConcurrentParses {
		h.parses <- struct{}{} // reads in flight elsewhere
	}
	req := configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "x", true, map[string]string{"policy.yaml": "pods:\n  forbidPrivileged: true\n"}))
	resp := srv.review(t, PathPolicies, req)
	if resp.Allowed || resp.Result.Code != http.StatusTooManyRequests || resp.Result.Details.RetryAfterSeconds != 1 {
		t.Fatalf("response %+v", resp.Result)
	}
	<-h.parses
	if resp := srv.review(t, PathPolicies, req); !resp.Allowed {
		t.Fatalf("with room: %+v", resp.Result)
	}
	if got := testutil.ToFloat64(srv.metrics.admissions.WithLabelValues("ConfigMap", "CREATE", "busy")); got != 1 {
		t.Errorf("admissions_total{busy} = %v, want 1", got)
	}
}

// countingJudge holds the policy ConfigMaps of each namespace.
type countingJudge struct {
	setJudge
	names map[string][]string
}

func (j *countingJudge) NamespacePolicies(ns string) []string { return j.names[ns] }

func TestPoliciesPerNamespace(t *testing.T) {
	full := make([]string, carrier.DefaultPoliciesPerNamespace)
	for i := range full {
		full[i] = "p" + strconv.Itoa(i)
	}
	srv := newTestServer(t, &countingJudge{names: map[string][]string{"team-b": full, testPolicyNamespace: full}}, false)
	policyYAML := map[string]string{"policy.yaml": "pods:\n  allowedRegistries: [registry.example.com/]\n"}
	for _, tt := range []struct {
		ns, name string
		allowed  bool
	}{
		{"team-b", "one-more", false},
		{"team-b", "p3", true},              // a change to one it holds
		{"team-a", "one-more", true},        // another namespace's count
		{testPolicyNamespace, "more", true}, // cluster-wide ones are not counted
	} {
		resp := srv.review(t, PathPolicies, configMapRequest(t, admissionv1.Create, labelledConfigMap(tt.ns, tt.name, true, policyYAML)))
		if resp.Allowed != tt.allowed {
			t.Errorf("%s/%s: allowed %v, want %v (%+v)", tt.ns, tt.name, resp.Allowed, tt.allowed, resp.Result)
		}
		if want := "ConfigMap team-b/one-more is refused: namespace team-b already holds 32 policy ConfigMaps, the most a namespace may hold"; !tt.allowed &&
			(resp.Result == nil || !strings.HasPrefix(resp.Result.Message, want)) {
			t.Errorf("%s/%s: got %+v, want %q", tt.ns, tt.name, resp.Result, want)
		}
	}
}

// TestPolicyCostAtApply is issue 22 at the policy path: the VAP-style
// registries rule is accepted in either carrier, and a namespace's loop
// over 300 params in a loop over them is refused naming its estimate.
func TestPolicyCostAtApply(t *testing.T) {
	registries := workload.RegistriesCELPolicy
	specJSON := `{"match":{"kinds":["Pod"]},"params":{"allowed":["registry.example.com/","ghcr.io/acme/"]},
"variables":[{"name":"images","expression":"object.spec.containers.map(c, c.image) + (has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.image) : [])"},
{"name":"bad","expression":"variables.images.filter(i, !params.allowed.exists(p, i.startsWith(p)))"}],
"validations":[{"name":"registries","expression":"size(variables.bad) == 0","messageExpression":"'denied: images not from an allowed registry: ' + variables.bad.join(', ')"}]}`
	square := "match: {kinds: [Pod]}\nparams: {l: [" + strings.TrimSuffix(strings.Repeat("same, ", 300), ", ") + "]}\n" +
		"validations:\n- expression: \"params.l.all(x, params.l.all(y, x == y))\"\n"

	srv := newTestServer(t, &setJudge{}, false)
	for name, req := range map[string]*admissionv1.AdmissionRequest{
		"a team's ConfigMap":       configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "registries", true, map[string]string{"policy.yaml": registries})),
		"a cluster-wide ConfigMap": configMapRequest(t, admissionv1.Create, labelledConfigMap(testPolicyNamespace, "registries", true, map[string]string{"policy.yaml": registries})),
		"an AdmissionPolicy":       admissionPolicyRequest(t, admissionv1.Create, "registries", specJSON),
	} {
		if resp := srv.review(t, PathPolicies, req); !resp.Allowed {
			t.Errorf("%s: refused: %+v", name, resp.Result)
		}
	}
	resp := srv.review(t, PathPolicies, configMapRequest(t, admissionv1.Create, labelledConfigMap("team-b", "square", true, map[string]string{"policy.yaml": square})))
	if want := "policy.yaml: validations[0].expression: Forbidden: estimated cost 541502, with these params and whatever the object, exceeds the limit of 100000 per expression of a namespace's own policy"; resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, want) {
		t.Errorf("the 300² loop in team-b: got %+v, want refused with %q", resp.Result, want)
	}
}
