package webhook

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

var pexGVR = metav1.GroupVersionResource{Group: "policy.example.com", Version: "v1alpha1", Resource: "policyexceptions"}

// setterJudge is a setJudge that gives its set to the exception path, as
// the cache does.
type setterJudge struct{ setJudge }

func (j *setterJudge) PolicySet() *policy.Set { return j.set }

func exceptionServer(t *testing.T, now time.Time, set *policy.Set) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	judge := &setterJudge{setJudge{set: set, synced: true, cluster: benchCluster{}}}
	return &testServer{handlers: Handlers(judge, judge, nil, nil, carrier.New(), testPolicyNamespace, false, m, logs.logger(),
		WithClock(clocktesting.NewFakePassiveClock(now)), WithMaxExceptionDuration(90*24*time.Hour)), metrics: m, reg: reg, logs: logs}
}

func exceptionRequest(t *testing.T, op admissionv1.Operation, ns, name string, spec, oldSpec *v1alpha1.PolicyExceptionSpec) *admissionv1.AdmissionRequest {
	obj := func(s *v1alpha1.PolicyExceptionSpec) *v1alpha1.PolicyException {
		return &v1alpha1.PolicyException{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy.example.com/v1alpha1", Kind: "PolicyException"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 1},
			Spec:       *s,
		}
	}
	r := &admissionv1.AdmissionRequest{
		UID: nextUID(), Kind: metav1.GroupVersionKind{Group: "policy.example.com", Version: "v1alpha1", Kind: "PolicyException"},
		Resource: pexGVR, Name: name, Namespace: ns, Operation: op, UserInfo: authUser("team-a-lead"), Object: raw(t, obj(spec)),
	}
	if oldSpec != nil {
		r.OldObject = raw(t, obj(oldSpec))
	}
	return r
}

func TestExceptionAdmission(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	set := compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "baseline", "pods:\n  requireRunAsNonRoot: true\n  disallowedTags: [latest]\n"})
	valid := func() *v1alpha1.PolicyExceptionSpec {
		return &v1alpha1.PolicyExceptionSpec{
			Reason:    "vendor image runs as root (TICKET-123)",
			ExpiresAt: metav1.NewTime(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)),
			Exceptions: []v1alpha1.ExceptionEntry{{
				Policy: v1alpha1.PolicyReference{Kind: "ConfigMap", Namespace: testPolicyNamespace, Name: "baseline"},
				Rules:  []string{"pods.requireRunAsNonRoot"},
			}},
		}
	}
	with := func(edit func(*v1alpha1.PolicyExceptionSpec)) *v1alpha1.PolicyExceptionSpec {
		s := valid()
		edit(s)
		return s
	}
	past := with(func(s *v1alpha1.PolicyExceptionSpec) { s.ExpiresAt = metav1.NewTime(now.Add(-time.Hour)) })
	tests := []struct {
		name     string
		op       admissionv1.Operation
		spec     *v1alpha1.PolicyExceptionSpec
		old      *v1alpha1.PolicyExceptionSpec
		allowed  bool
		contains string // in the message or the first warning
	}{
		{"valid", admissionv1.Create, valid(), nil, true, ""},
		{"past expiry", admissionv1.Create, past, nil, false, "spec.expiresAt: Invalid value: \"2026-12-06T23:00:00Z\": is not in the future"},
		{"a year ahead", admissionv1.Create, with(func(s *v1alpha1.PolicyExceptionSpec) { s.ExpiresAt = metav1.NewTime(now.AddDate(1, 0, 0)) }), nil, false, "spec.expiresAt"},
		{"empty reason", admissionv1.Create, with(func(s *v1alpha1.PolicyExceptionSpec) { s.Reason = "" }), nil, false, "spec.reason: Required value"},
		{"unknown rule", admissionv1.Create, with(func(s *v1alpha1.PolicyExceptionSpec) { s.Exceptions[0].Rules = []string{"pods.forbidPrivileged"} }), nil, false,
			`spec.exceptions[0].rules[0]: Invalid value: "pods.forbidPrivileged": ConfigMap policy-system/baseline has no such rule`},
		{"policy not there yet: a warning", admissionv1.Create, with(func(s *v1alpha1.PolicyExceptionSpec) { s.Exceptions[0].Policy.Name = "later" }), nil, true,
			"ConfigMap policy-system/later does not exist (yet)"},
		{"expired, spec unchanged: passes", admissionv1.Update, past, past, true, ""},
		{"expired, spec changed: refused", admissionv1.Update, with(func(s *v1alpha1.PolicyExceptionSpec) { s.ExpiresAt = past.ExpiresAt; s.Reason = "new" }), past, false, "spec.expiresAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := exceptionServer(t, now, set)
			resp := srv.review(t, PathExceptions, exceptionRequest(t, tt.op, "team-a", "legacy-root", tt.spec, tt.old))
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed %v, want %v: %+v", resp.Allowed, tt.allowed, resp.Result)
			}
			got := strings.Join(resp.Warnings, "\n")
			if !resp.Allowed {
				got = resp.Result.Message
				if !strings.HasPrefix(got, "PolicyException team-a/legacy-root is not a valid exception: ") {
					t.Errorf("message %q", got)
				}
			}
			if !strings.Contains(got, tt.contains) {
				t.Errorf("got %q, want it to contain %q", got, tt.contains)
			}
		})
	}
}

// An admission an exception lifts is allowed with the warning naming it and
// its expiry, the exceptions used in the audit annotations, the excepted
// violation counted by policy and rule; at the expiry it is refused again.
func TestAdmissionWithException(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	set := compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "baseline", "pods:\n  requireRunAsNonRoot: true\n"})
	x, errs := policy.CompileException("team-a", "legacy-root", "3", &v1alpha1.PolicyExceptionSpec{
		Reason: "r", ExpiresAt: metav1.NewTime(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)),
		Exceptions: []v1alpha1.ExceptionEntry{{Policy: v1alpha1.PolicyReference{Kind: "ConfigMap", Namespace: testPolicyNamespace, Name: "baseline"}, Rules: []string{"pods.requireRunAsNonRoot"}}},
	}, testPolicyNamespace)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	set = set.Excepting(policy.NewExceptionSet([]*policy.Exception{x}))
	root := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "team-a"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "registry.example.com/db:1"}}}}
	for _, tt := range []struct {
		at      time.Time
		allowed bool
	}{{now, true}, {x.ExpiresAt.Add(-time.Nanosecond), true}, {x.ExpiresAt, false}} {
		t.Run(tt.at.Format(time.RFC3339Nano), func(t *testing.T) {
			srv := exceptionServer(t, tt.at, set)
			resp := srv.review(t, PathPods, podRequest(t, admissionv1.Create, "", root, nil))
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed %v, want %v: %+v", resp.Allowed, tt.allowed, resp.Result)
			}
			if !tt.allowed {
				return
			}
			want := "excepted by PolicyException team-a/legacy-root until 2027-01-31: ConfigMap policy-system/baseline pods.requireRunAsNonRoot"
			if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], want) {
				t.Errorf("warnings %q, want one starting %q", resp.Warnings, want)
			}
			if got := resp.AuditAnnotations["exceptions"]; got != "PolicyException team-a/legacy-root@3 until 2027-01-31" {
				t.Errorf("exceptions annotation %q", got)
			}
			if got := testutil.ToFloat64(srv.metrics.excepted.WithLabelValues("ConfigMap policy-system/baseline", "pods.requireRunAsNonRoot")); got != 1 {
				t.Errorf("%s = %v, want 1", MetricExceptedViolations, got)
			}
		})
	}
}

// Impact at apply, both ways: a new exception names the existing objects it
// would exempt; a new policy does not count the objects an exception in
// force covers.
func TestExceptionImpact(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var pods []corev1.Pod
	for _, name := range []string{"legacy-1", "legacy-2", "web"} {
		pods = append(pods, existingPod(t, "team-a", name, "evil.io/x:1"))
	}
	pods = append(pods, existingPod(t, "team-b", "legacy-3", "evil.io/x:1"))
	lister := &audit.Lister{Client: listClient(t, pods, nil)}
	const registries = "pods:\n  allowedRegistries: [registry.example.com/]\n"
	set := compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "registries", registries})
	spec := &v1alpha1.PolicyExceptionSpec{
		Reason: "r", ExpiresAt: metav1.NewTime(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)),
		Exceptions: []v1alpha1.ExceptionEntry{{Policy: v1alpha1.PolicyReference{Kind: "ConfigMap", Namespace: testPolicyNamespace, Name: "registries"}, Rules: []string{"pods.allowedRegistries"}}},
		Match:      &v1alpha1.ExceptionMatch{Names: []string{"legacy-*"}},
	}

	srv := exceptionServer(t, now, set)
	srv.handlers[PathExceptions].(*reviewHandler).handler.(*exceptionHandler).impact = &Impact{lister: lister, budget: time.Minute}
	resp := srv.review(t, PathExceptions, exceptionRequest(t, admissionv1.Create, "team-a", "legacy", spec, nil))
	want := "this exception would exempt 2 existing objects: Pod team-a/legacy-1 (pods.allowedRegistries), Pod team-a/legacy-2 (pods.allowedRegistries)"
	if !resp.Allowed || len(resp.Warnings) != 1 || resp.Warnings[0] != want {
		t.Errorf("allowed %v, warnings %q; want %q", resp.Allowed, resp.Warnings, want)
	}

	x, errs := policy.CompileException("team-a", "legacy", "1", spec, testPolicyNamespace)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	im := &Impact{lister: lister, budget: time.Minute,
		exceptions: func() *policy.ExceptionSet { return policy.NewExceptionSet([]*policy.Exception{x}) },
		now:        func() time.Time { return now }}
	got := im.warnings(t.Context(), compileSet(t, testPolicyNamespace, testPolicy{testPolicyNamespace, "registries", registries}).Policies()[0])
	want = "this policy would deny 2 Pods among existing objects: Pod team-a/web (pods.allowedRegistries), Pod team-b/legacy-3 (pods.allowedRegistries)"
	if len(got) != 1 || got[0] != want {
		t.Errorf("policy impact %q, want %q", got, want)
	}
}
