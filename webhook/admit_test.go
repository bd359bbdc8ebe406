package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

const testPolicyNamespace = "policy-system"

// The policies of the handler tests: a cluster-wide Deny on registries and
// tags, a team-a Warn on a label, a cluster-wide Audit on privileged
// containers, and a MyApple colour and quantity rule.
var handlerPolicies = []testPolicy{
	{testPolicyNamespace, "registries", `
pods:
  allowedRegistries: [registry.example.com/]
  disallowedTags: [latest]
`},
	{"team-a", "owner-label", `
enforcement: Warn
pods:
  requiredLabels: [owner]
`},
	{testPolicyNamespace, "privileged-audit", `
enforcement: Audit
pods:
  forbidPrivileged: true
`},
	{testPolicyNamespace, "apples", `
myApples:
  allowedColors: [red, green]
  maxQuantity: 100
`},
}

func goodPod() *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Labels: map[string]string{"app": "web", "owner": "alice"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "registry.example.com/team-a/web:1.4.2",
			Resources: corev1.ResourceRequirements{Limits: limits},
		}}},
	}
}

func withImage(p *corev1.Pod, image string) *corev1.Pod {
	p.Spec.Containers[0].Image = image
	return p
}

func apple(color string, quantity int64) *policy.MyApple {
	return &policy.MyApple{
		ObjectMeta: policy.ObjectMeta{Name: "fuji", Namespace: "team-a"},
		Spec:       policy.MyAppleSpec{Color: color, Size: "small", Quantity: quantity},
	}
}

func TestAdmitHandlers(t *testing.T) {
	set := compileSet(t, testPolicyNamespace, handlerPolicies...)

	unlabelled := goodPod()
	delete(unlabelled.Labels, "owner")
	privileged := goodPod()
	privileged.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	withEphemeral := func(image string) *corev1.Pod {
		p := goodPod()
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: image}}}
		return p
	}

	tests := []struct {
		name     string
		path     string
		req      func(t *testing.T) *admissionv1.AdmissionRequest
		unsynced bool
		failOpen bool

		allowed  bool
		code     int32 // Result.Code, 0 for no Result
		reason   metav1.StatusReason
		message  []string // substrings of Result.Message, in order
		warnings []string // substrings, one per warning
		audit    string   // a substring of an audit log line
		verdict  string
		kind     string
		op       string
	}{
		{
			name: "compliant pod allowed",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", goodPod(), nil)
			},
			allowed: true, verdict: "allowed", kind: "Pod", op: "CREATE",
		},
		{
			name: "pod from docker hub denied with every violation",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", withImage(goodPod(), "nginx"), nil)
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{
				"2 policy violations:",
				`- ConfigMap policy-system/registries pods.allowedRegistries spec.containers[0].image: image "nginx" resolves to docker.io/library/nginx:latest, which is not under an allowed registry (registry.example.com/)`,
				`- ConfigMap policy-system/registries pods.disallowedTags spec.containers[0].image: image "nginx"`,
			},
			verdict: "denied", kind: "Pod", op: "CREATE",
		},
		{
			name: "warn policy admits with a warning",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", unlabelled, nil)
			},
			allowed:  true,
			warnings: []string{"ConfigMap team-a/owner-label pods.requiredLabels metadata.labels"},
			verdict:  "allowed", kind: "Pod", op: "CREATE",
		},
		{
			name: "denial keeps the warnings",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				p := withImage(goodPod(), "registry.example.com/team-a/web:latest")
				delete(p.Labels, "owner")
				return podRequest(t, admissionv1.Create, "", p, nil)
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message:  []string{"policy violation: ConfigMap policy-system/registries pods.disallowedTags spec.containers[0].image"},
			warnings: []string{"ConfigMap team-a/owner-label pods.requiredLabels"},
			verdict:  "denied", kind: "Pod", op: "CREATE",
		},
		{
			name: "audit violation admitted silently and logged",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", privileged, nil)
			},
			allowed: true,
			audit:   `pods.forbidPrivileged spec.containers[0].securityContext.privileged`,
			verdict: "allowed", kind: "Pod", op: "CREATE",
		},
		{
			name: "not synced fails closed with 503",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", goodPod(), nil)
			},
			unsynced: true,
			code:     503, reason: metav1.StatusReasonServiceUnavailable,
			message: []string{"policy-webhook: the policy cache has not synced yet, so this request cannot be judged; retry in a few seconds"},
			verdict: "not_synced", kind: "Pod", op: "CREATE",
		},
		{
			name: "not synced fails open with a warning when configured",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Create, "", withImage(goodPod(), "nginx"), nil)
			},
			unsynced: true, failOpen: true,
			allowed:  true,
			warnings: []string{"admitted without policy checks"},
			verdict:  "allowed_not_synced", kind: "Pod", op: "CREATE",
		},
		{
			name: "ephemeral container from a disallowed registry denied",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Update, policy.SubResEphemeral, withEphemeral("busybox:1.36"), goodPod())
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{`policy violation: ConfigMap policy-system/registries pods.allowedRegistries spec.ephemeralContainers[0].image: image "busybox:1.36"`},
			verdict: "denied", kind: "Pod", op: "UPDATE",
		},
		{
			name: "ephemeral container from an allowed registry admitted",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Update, policy.SubResEphemeral, withEphemeral("registry.example.com/tools/debug:2"), goodPod())
			},
			allowed: true, verdict: "allowed", kind: "Pod", op: "UPDATE",
		},
		{
			name: "other pod subresources are not judged",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				p := withImage(goodPod(), "nginx")
				return podRequest(t, admissionv1.Update, "status", p, p)
			},
			allowed: true, verdict: "skipped", kind: "Pod", op: "UPDATE",
		},
		{
			name: "update introducing a violation denied",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, admissionv1.Update, "", withImage(goodPod(), "quay.io/x/y:1"), goodPod())
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{`pods.allowedRegistries spec.containers[0].image: image "quay.io/x/y:1"`},
			verdict: "denied", kind: "Pod", op: "UPDATE",
		},
		{
			name: "update keeping an existing violation admitted",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				old := withImage(goodPod(), "quay.io/x/y:1")
				cur := withImage(goodPod(), "quay.io/x/y:1")
				cur.Labels["release"] = "2"
				return podRequest(t, admissionv1.Update, "", cur, old)
			},
			allowed: true, verdict: "allowed", kind: "Pod", op: "UPDATE",
		},
		{
			name: "delete is not judged",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, admissionv1.Delete, "", withImage(goodPod(), "nginx"), nil)
				r.OldObject, r.Object = r.Object, r.OldObject
				return r
			},
			allowed: true, verdict: "skipped", kind: "Pod", op: "DELETE",
		},
		{
			name: "a pod that cannot be decoded is refused with 400",
			path: PathPods,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, admissionv1.Create, "", goodPod(), nil)
				r.Object.Raw = []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"web"}}`)
				return r
			},
			code: 400, reason: metav1.StatusReasonBadRequest,
			message: []string{"policy-webhook: cannot judge Pod team-a/web: request.object: decoding Pod:"},
			verdict: "error", kind: "Pod", op: "CREATE",
		},
		{
			name: "deployment judged by its template",
			path: PathPodControllers,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return deploymentRequest(t, admissionv1.Create, withImage(goodPod(), "evil.io/nginx:1"), nil)
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{"Deployment team-a/web: its Pod template breaks policy: policy violation: ConfigMap policy-system/registries pods.allowedRegistries spec.template.spec.containers[0].image: "},
			verdict: "denied", kind: "Deployment", op: "CREATE",
		},
		{
			name: "deployment scaled: template unchanged",
			path: PathPodControllers,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				bad := withImage(goodPod(), "evil.io/nginx:1")
				return deploymentRequest(t, admissionv1.Update, bad, bad)
			},
			allowed: true, verdict: "allowed", kind: "Deployment", op: "UPDATE",
		},
		{
			name: "compliant deployment allowed",
			path: PathPodControllers,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return deploymentRequest(t, admissionv1.Create, goodPod(), nil)
			},
			allowed: true, verdict: "allowed", kind: "Deployment", op: "CREATE",
		},
		{
			name: "myapple allowed",
			path: PathMyApples,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return appleRequest(t, admissionv1.Create, apple("red", 3), nil)
			},
			allowed: true, verdict: "allowed", kind: "MyApple", op: "CREATE",
		},
		{
			name: "myapple of a disallowed colour denied",
			path: PathMyApples,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return appleRequest(t, admissionv1.Create, apple("blue", 3), nil)
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{"policy violation: ConfigMap policy-system/apples myApples.allowedColors spec.color:"},
			verdict: "denied", kind: "MyApple", op: "CREATE",
		},
		{
			name: "myapple update over the maximum denied",
			path: PathMyApples,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return appleRequest(t, admissionv1.Update, apple("red", 101), apple("red", 3))
			},
			code: 403, reason: metav1.StatusReasonForbidden,
			message: []string{"myApples.maxQuantity spec.quantity"},
			verdict: "denied", kind: "MyApple", op: "UPDATE",
		},
		{
			name: "myapple before sync fails closed",
			path: PathMyApples,
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return appleRequest(t, admissionv1.Create, apple("red", 3), nil)
			},
			unsynced: true,
			code:     503, reason: metav1.StatusReasonServiceUnavailable,
			message: []string{"has not synced yet"},
			verdict: "not_synced", kind: "MyApple", op: "CREATE",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, &setJudge{set: set, synced: !tc.unsynced}, tc.failOpen)
			resp := srv.review(t, tc.path, tc.req(t))

			if resp.Allowed != tc.allowed {
				t.Errorf("allowed = %v, want %v (result %+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			switch {
			case tc.code == 0 && resp.Result != nil:
				t.Errorf("unexpected result %+v", resp.Result)
			case tc.code != 0 && resp.Result == nil:
				t.Errorf("no result, want code %d", tc.code)
			case tc.code != 0:
				if resp.Result.Code != tc.code || resp.Result.Reason != tc.reason {
					t.Errorf("result code %d reason %q, want %d %q", resp.Result.Code, resp.Result.Reason, tc.code, tc.reason)
				}
				rest := resp.Result.Message
				for _, want := range tc.message {
					i := strings.Index(rest, want)
					if i < 0 {
						t.Errorf("message %q\nlacks (in order) %q", resp.Result.Message, want)
						break
					}
					rest = rest[i+len(want):]
				}
				if tc.code == 503 && (resp.Result.Details == nil || resp.Result.Details.RetryAfterSeconds != 1) {
					t.Errorf("503 without retryAfterSeconds: %+v", resp.Result.Details)
				}
			}
			if len(resp.Warnings) != len(tc.warnings) {
				t.Errorf("warnings %q, want %d", resp.Warnings, len(tc.warnings))
			} else {
				for i, want := range tc.warnings {
					if !strings.Contains(resp.Warnings[i], want) {
						t.Errorf("warning %q lacks %q", resp.Warnings[i], want)
					}
				}
			}
			if tc.audit != "" {
				if !srv.logs.contains("Audit policy violation") || !srv.logs.contains(tc.audit) {
					t.Errorf("audit violation %s not logged; logs: %q", tc.audit, srv.logs.lines)
				}
				if got := testutil.ToFloat64(srv.metrics.violations.WithLabelValues("pods.forbidPrivileged", "Audit")); got != 1 {
					t.Errorf("violations_total{pods.forbidPrivileged,Audit} = %v, want 1", got)
				}
			}
			if got := testutil.ToFloat64(srv.metrics.admissions.WithLabelValues(tc.kind, tc.op, tc.verdict)); got != 1 {
				t.Errorf("admissions_total{%s,%s,%s} = %v, want 1", tc.kind, tc.op, tc.verdict, got)
			}
			if got := testutil.CollectAndCount(srv.metrics.admissions); got != 1 {
				t.Errorf("%d admissions_total series, want exactly 1", got)
			}
		})
	}
}

// The violations counter counts every violation with its enforcement.
func TestViolationMetrics(t *testing.T) {
	srv := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	p := withImage(goodPod(), "nginx")
	delete(p.Labels, "owner")
	srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", p, nil))
	srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", p, nil))
	for _, c := range []struct {
		rule, enforcement string
		want              float64
	}{
		{"pods.allowedRegistries", "Deny", 2},
		{"pods.disallowedTags", "Deny", 2},
		{"pods.requiredLabels", "Warn", 2},
	} {
		if got := testutil.ToFloat64(srv.metrics.violations.WithLabelValues(c.rule, c.enforcement)); got != c.want {
			t.Errorf("violations_total{%s,%s} = %v, want %v", c.rule, c.enforcement, got, c.want)
		}
	}
	if got := testutil.CollectAndCount(srv.metrics.durations); got != 1 {
		t.Errorf("%d duration series, want 1 (Pod)", got)
	}
}

// panicJudge fails the way a bug would: it panics.
type panicJudge struct{}

func (panicJudge) HasSynced() bool                          { return true }
func (panicJudge) Evaluate(*policy.Request) policy.Decision { panic("boom") }

func TestPanicIsRecovered(t *testing.T) {
	srv := newTestServer(t, panicJudge{}, false)
	rec := srv.post(t, PathPods, reviewBody(t, podRequest(t, admissionv1.Create, "", goodPod(), nil)))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("HTTP %d, want 500: %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), "policy-webhook: internal error") {
		t.Errorf("body %q", rec.Body)
	}
	if !srv.logs.contains("boom") {
		t.Errorf("panic not logged: %q", srv.logs.lines)
	}
	if got := testutil.ToFloat64(srv.metrics.requestErrors.WithLabelValues(errPanic)); got != 1 {
		t.Errorf("request_errors_total{panic} = %v", got)
	}
}

// A review whose resource does not belong to the path is refused at the
// HTTP level: the API server never sends one, and admitting it unjudged
// would be a way past the rules.
func TestWrongResourceForPathIsRefused(t *testing.T) {
	srv := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	for _, tc := range []struct {
		path string
		req  *admissionv1.AdmissionRequest
		want string
	}{
		{PathPods, appleRequest(t, admissionv1.Create, apple("blue", 1), nil), "this path judges Pod objects, not myapples.stable.example.com"},
		{PathMyApples, podRequest(t, admissionv1.Create, "", withImage(goodPod(), "evil.io/x:1"), nil), "this path judges MyApple objects, not pods"},
		{PathPods, configMapRequest(t, admissionv1.Create, labelledConfigMap("team-a", "x", true, nil)), "this path judges Pod objects, not configmaps"},
		{PathPodControllers, podRequest(t, admissionv1.Create, "", withImage(goodPod(), "evil.io/x:1"), nil), "this path judges Pod controllers, not pods"},
		{PathPods, deploymentRequest(t, admissionv1.Create, withImage(goodPod(), "evil.io/x:1"), nil), "this path judges Pod objects, not deployments.apps"},
	} {
		rec := srv.post(t, tc.path, reviewBody(t, tc.req))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: HTTP %d %q, want 400 with %q", tc.path, rec.Code, rec.Body, tc.want)
		}
	}
	if got := testutil.ToFloat64(srv.metrics.requestErrors.WithLabelValues(errWrongResource)); got != 5 {
		t.Errorf("request_errors_total{reason=wrong_resource} = %v, want 5", got)
	}
}

// One admission writes one log line per enforcement, whatever the number
// of violations and the length of the policy's allowlist.
func TestAuditLogIsBounded(t *testing.T) {
	var regs []string
	for i := range 1000 {
		regs = append(regs, fmt.Sprintf("r%d.example.com/", i))
	}
	set := compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "audit", "enforcement: Audit\npods:\n  allowedRegistries: [" + strings.Join(regs, ", ") + "]\n"})
	srv := newTestServer(t, &setJudge{set: set, synced: true}, false)
	pod := goodPod()
	for i := range 200 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "evil.io/x:1"})
	}
	if resp := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", pod, nil)); !resp.Allowed {
		t.Fatalf("audit refused: %+v", resp.Result)
	}
	if len(srv.logs.lines) != 1 {
		t.Fatalf("%d log lines, want 1", len(srv.logs.lines))
	}
	if l := srv.logs.lines[0]; len(l) > 8<<10 || !strings.Contains(l, `"count"=201`) {
		t.Errorf("log line of %d bytes: %.300s", len(l), l)
	}
}

// Every judged admission names, in audit annotations, the policy versions
// that decided it and the rules it broke.
func TestAuditAnnotations(t *testing.T) {
	srv := newTestServer(t, &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}, false)
	pod := withImage(goodPod(), "nginx:latest")
	delete(pod.Labels, "owner")
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "b", Image: "evil.io/b:1"})
	resp := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", pod, nil))
	if resp.Allowed {
		t.Fatal("allowed")
	}
	want := map[string]string{
		annotationPolicies: "ConfigMap policy-system/privileged-audit@102, ConfigMap policy-system/registries@100, ConfigMap team-a/owner-label@101",
		annotationViolations: "Deny pods.allowedRegistries by ConfigMap policy-system/registries, " +
			"Deny pods.disallowedTags by ConfigMap policy-system/registries, Warn pods.requiredLabels by ConfigMap team-a/owner-label",
	}
	if !reflect.DeepEqual(resp.AuditAnnotations, want) {
		t.Errorf("audit annotations\n%q\nwant\n%q", resp.AuditAnnotations, want)
	}
	// A compliant request names the policies that judged it, and no violation.
	other := goodPod()
	other.Namespace = "kube-system"
	if resp := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", other, nil)); len(resp.AuditAnnotations) != 1 {
		t.Errorf("kube-system pod: %q", resp.AuditAnnotations)
	}
}

// namespacesFunc is a Namespaces that answers with a function.
type namespacesFunc func(ctx context.Context, name string) error

func (f namespacesFunc) EnsureNamespace(ctx context.Context, name string) error { return f(ctx, name) }

// A Pod or MyApple whose namespace the judges cannot confirm is refused
// with 503 and a retry delay, naming the namespace and why, never judged
// without its labels; one they know is judged as ever.
func TestUnknownNamespaceIsRefused(t *testing.T) {
	judge := &setJudge{set: compileSet(t, testPolicyNamespace, handlerPolicies...), synced: true}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	ns := namespacesFunc(func(_ context.Context, name string) error {
		asked = append(asked, name)
		if name == "team-a" {
			return nil
		}
		return errors.New(`namespace "fresh" is not in the webhook's cache yet and reading it from the API server failed: connection refused`)
	})
	handlers := Handlers(judge, judge, ns, nil, carrier.New(), testPolicyNamespace, false, m, logr.Discard())
	srv := &testServer{handlers: handlers, metrics: m, reg: reg, logs: &logSink{}}

	known := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", goodPod(), nil))
	if !known.Allowed {
		t.Errorf("a compliant Pod in a known namespace: %+v", known.Result)
	}
	fresh := goodPod()
	fresh.Namespace = "fresh"
	resp := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", fresh, nil))
	if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable || resp.Result.Details == nil || resp.Result.Details.RetryAfterSeconds != 1 ||
		!strings.Contains(resp.Result.Message, `policy-webhook: namespace "fresh" is not in the webhook's cache yet`) ||
		!strings.Contains(resp.Result.Message, "refused rather than judged without the namespace's labels") {
		t.Errorf("a Pod in an unknown namespace: allowed %v, %+v", resp.Allowed, resp.Result)
	}
	if got := testutil.ToFloat64(m.admissions.WithLabelValues("Pod", "CREATE", verdictUnknownNamespace)); got != 1 {
		t.Errorf("admissions_total{unknown_namespace} = %v, want 1", got)
	}
	if want := []string{"team-a", "fresh"}; !slices.Equal(asked, want) {
		t.Errorf("namespaces asked %v, want %v", asked, want)
	}
}
