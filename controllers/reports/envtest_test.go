package reports_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// env is a control plane with the clients the tests use.
type env struct {
	cp   *devenv.ControlPlane
	kube kubernetes.Interface
	dyn  dynamic.Interface
	meta metadata.Interface
}

func startEnv(t *testing.T) *env {
	t.Helper()
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: testr.New(t)})
	return newEnvFor(t, cp.Config, cp)
}

// newEnvFor makes the clients, from cfg.
func newEnvFor(t testing.TB, cfg *rest.Config, cp *devenv.ControlPlane) *env {
	t.Helper()
	e := &env{cp: cp}
	var err error
	if e.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e.meta, err = metadata.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// reportComponent is the kustomize component of format's CRDs.
func reportComponent(format reports.Format) string {
	if format == reports.FormatWGPolicy {
		return "policyreports"
	}
	return "openreports"
}

// installReportCRDs installs the CRDs of format's component: for
// OpenReports, those of the reports-api module, copied by make manifests.
func (e *env) installReportCRDs(t testing.TB, format reports.Format) {
	t.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(e.cp.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(root, "manifests", "components", reportComponent(format))}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("installing the %s CRDs: %v", format, err)
	}
}

func (e *env) pod(t *testing.T, ctx context.Context, ns, name, image string) *corev1.Pod {
	t.Helper()
	p, err := e.kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) apple(t *testing.T, ctx context.Context, ns, name, color string, quantity int64) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1", "kind": "MyApple",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"color": color, "size": "small", "quantity": quantity},
	}}
	if _, err := e.dyn.Resource(cache.MyAppleResource()).Namespace(ns).Apply(ctx, name, u, metav1.ApplyOptions{FieldManager: "test", Force: true}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) admissionPolicy(t testing.TB, ctx context.Context, name string, spec map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	if _, err := e.dyn.Resource(v1alpha1.Resource).Apply(ctx, name, u, metav1.ApplyOptions{FieldManager: "test", Force: true}); err != nil {
		t.Fatal(err)
	}
}

// touchPolicy changes a policy ConfigMap's labels: a new resourceVersion,
// so a new snapshot, so a sweep.
func (e *env) touchPolicy(t *testing.T, ctx context.Context, ns, name string, n int) {
	t.Helper()
	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels["touched"] = fmt.Sprint(n)
	if _, err := e.kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// report reads the report of namespace ns in format, seen as a PolicyReport
// (an OpenReports Report has the same results under other Go names).
func (e *env) report(ctx context.Context, format reports.Format, ns string) (*report.PolicyReport, error) {
	gvr := report.PolicyReportResource
	if format == reports.FormatOpenReports {
		gvr = reports.OpenReportsResource
	}
	u, err := e.dyn.Resource(gvr).Namespace(ns).Get(ctx, reports.ReportName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var r report.PolicyReport
	if format == reports.FormatWGPolicy {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			return nil, err
		}
		return &r, nil
	}
	var or openreports.Report
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &or); err != nil {
		return nil, err
	}
	if or.Kind != "Report" || or.Source != reports.ReportSource || or.Configuration == nil || or.Configuration.Limits.MaxResults != reports.DefaultMaxResults {
		return nil, fmt.Errorf("report %s/%s: kind %q, source %q, configuration %+v", ns, or.Name, or.Kind, or.Source, or.Configuration)
	}
	r.ObjectMeta = or.ObjectMeta
	r.Summary = report.PolicyReportSummary{Pass: or.Summary.Pass, Fail: or.Summary.Fail, Warn: or.Summary.Warn, Error: or.Summary.Error, Skip: or.Summary.Skip}
	for _, x := range or.Results {
		r.Results = append(r.Results, report.PolicyReportResult{
			Source: x.Source, Policy: x.Policy, Rule: x.Rule, Category: x.Category, Severity: report.Severity(x.Severity),
			Timestamp: x.Timestamp, Result: report.Result(x.Result), Scored: x.Scored, Resources: x.Subjects,
			Message: x.Description, Properties: x.Properties,
		})
	}
	return &r, nil
}

func (e *env) auditStatus(ctx context.Context, name string) (*v1alpha1.AuditStatus, error) {
	u, err := e.dyn.Resource(v1alpha1.Resource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var ap v1alpha1.AdmissionPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ap); err != nil {
		return nil, err
	}
	return ap.Status.Audit, nil
}

// poll waits for cond, failing the test with its last error.
func poll(t *testing.T, ctx context.Context, what string, cond func(context.Context) error) {
	t.Helper()
	if err := devenv.PollEvery(ctx, 50*time.Millisecond, 30*time.Second, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestAuditOnAPIServer: objects created before the policies appear in the
// AdmissionPolicy status and, once their CRDs exist, in the reports; a
// policy change sweeps; fixed and deleted objects leave the reports. In
// each format: OpenReports Reports (the default) checked by the schema of
// the reports-api module's CRDs, and wgpolicyk8s PolicyReports.
func TestAuditOnAPIServer(t *testing.T) {
	for _, format := range reports.Formats() {
		t.Run(string(format), func(t *testing.T) { testAuditOnAPIServer(t, format) })
	}
}

func testAuditOnAPIServer(t *testing.T, format reports.Format) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := startEnv(t)
	for ns, labels := range map[string]map[string]string{"policy-system": nil, "team-a": {"env": "prod"}, "team-b": nil} {
		if err := e.cp.EnsureNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}

	// Existing objects, before any policy.
	bad := e.pod(t, ctx, "team-a", "web", "docker.io/library/nginx:latest")
	e.pod(t, ctx, "team-b", "ok", "registry.example.com/app:1.0")
	e.apple(t, ctx, "team-b", "blue", "blue", 3)

	e.admissionPolicy(t, ctx, "registries", map[string]any{
		"enforcement": "Deny",
		"pods":        map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
		"myApples":    map[string]any{"allowedColors": []any{"red"}},
	})
	if _, err := e.kube.CoreV1().ConfigMaps("policy-system").Create(ctx,
		devenv.PolicyConfigMap("policy-system", "tags", "enforcement: Warn\npods:\n  disallowedTags: [latest]\n"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cache, err := cache.New(cache.Config{Dynamic: e.dyn, Metadata: e.meta, PolicyNamespace: "policy-system", Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// status.audit is written by the Status controller, from what the
	// audit publishes.
	var cs *controllers.Controllers
	a, err := reports.New(reports.Config{
		Policies: cache, REST: e.kube.CoreV1().RESTClient(), Dynamic: e.dyn, Discovery: e.kube.Discovery(), Format: format,
		Interval: time.Hour, // only policy changes sweep here, after the first
		Debounce: 100 * time.Millisecond, PageSize: 1, Log: testr.New(t), Metrics: reg,
		Swept: func() { cs.Status.AuditSwept() },
	})
	if err != nil {
		t.Fatal(err)
	}
	cs, err = controllers.New(controllers.Config{Cache: cache, Dynamic: e.dyn, Kube: e.kube, Replica: "audit-test",
		PolicyNamespace: "policy-system", Log: testr.New(t), Audit: a})
	if err != nil {
		t.Fatal(err)
	}
	if !a.NeedLeaderElection() {
		t.Fatal("the audit must run on the leader only")
	}
	runCtx, stop := context.WithCancel(ctx)
	runs := []func(context.Context) error{cache.Start, a.Start, cs.Status.Start}
	done := make(chan error, len(runs))
	for _, run := range runs {
		go func() { done <- run(runCtx) }()
	}
	defer func() {
		stop()
		for range runs {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()

	// The first sweep, without the PolicyReport CRDs: status and metrics only.
	poll(t, ctx, "status.audit of AdmissionPolicy registries", func(ctx context.Context) error {
		st, err := e.auditStatus(ctx, "registries")
		switch {
		case err != nil:
			return err
		case st == nil:
			return errors.New("no status.audit yet")
		case st.TotalViolations != 2 || len(st.Violations) != 2:
			return fmt.Errorf("status.audit %+v, want the Pod and the MyApple", st)
		}
		got := map[string]string{}
		for _, v := range st.Violations {
			got[v.Kind+" "+v.Namespace+"/"+v.Name] = v.Rule
		}
		if got["Pod team-a/web"] != "pods.allowedRegistries" || got["MyApple team-b/blue"] != "myApples.allowedColors" {
			return fmt.Errorf("violations %v", got)
		}
		return nil
	})
	if n := promtest.One(t, reg, reports.MetricViolations, map[string]string{"source": "AdmissionPolicy registries", "rule": "pods.allowedRegistries", "enforcement": "Deny"}); n != 1 {
		t.Errorf("violations gauge = %v, want 1", n)
	}
	if _, err := e.report(ctx, format, "team-a"); !apierrors.IsNotFound(err) {
		t.Fatalf("a report without its CRD: %v", err)
	}

	// With the CRDs, a policy change sweeps and writes the reports.
	e.installReportCRDs(t, format)
	changed := time.Now()
	e.touchPolicy(t, ctx, "policy-system", "tags", 1)
	poll(t, ctx, "the PolicyReports", func(ctx context.Context) error {
		ra, err := e.report(ctx, format, "team-a")
		if err != nil {
			return err
		}
		if ra.Summary.Fail != 1 || ra.Summary.Warn != 1 || len(ra.Results) != 2 {
			return fmt.Errorf("team-a report summary %+v, %d results", ra.Summary, len(ra.Results))
		}
		byResult := map[report.Result]report.PolicyReportResult{}
		for _, r := range ra.Results {
			byResult[r.Result] = r
		}
		fail, warn := byResult[report.ResultFail], byResult[report.ResultWarn]
		if fail.Policy != "AdmissionPolicy registries" || fail.Rule != "pods.allowedRegistries" ||
			fail.Properties[reports.PropertyField] != "spec.containers[0].image" || len(fail.Resources) != 1 ||
			fail.Resources[0].UID != bad.UID || fail.Resources[0].Kind != policy.KindPod || fail.Resources[0].Name != "web" {
			return fmt.Errorf("fail result %+v", fail)
		}
		if warn.Policy != "ConfigMap policy-system/tags" || warn.Rule != "pods.disallowedTags" || warn.Properties[reports.PropertyEnforcement] != "Warn" {
			return fmt.Errorf("warn result %+v", warn)
		}
		rb, err := e.report(ctx, format, "team-b")
		if err != nil {
			return err
		}
		if rb.Summary.Fail != 1 || rb.Summary.Pass != 1 || len(rb.Results) != 1 || rb.Results[0].Resources[0].Kind != policy.KindMyApple {
			return fmt.Errorf("team-b report %+v", rb)
		}
		return nil
	})
	// Report freshness: from the policy change to reports that reflect it,
	// a debounce (100 ms here, 2 s by default) and one sweep.
	t.Logf("reports reflected the policy change %s after it", time.Since(changed).Round(time.Millisecond))

	// Fixed (the MyApple) and deleted (the Pod): their results go, and so
	// do the reports of namespaces left with none.
	e.apple(t, ctx, "team-b", "blue", "red", 3)
	if err := e.kube.CoreV1().Pods("team-a").Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	e.touchPolicy(t, ctx, "policy-system", "tags", 2)
	poll(t, ctx, "the reports to go", func(ctx context.Context) error {
		for _, ns := range []string{"team-a", "team-b"} {
			if _, err := e.report(ctx, format, ns); !apierrors.IsNotFound(err) {
				return fmt.Errorf("report in %s: %w", ns, err)
			}
		}
		st, err := e.auditStatus(ctx, "registries")
		if err != nil {
			return err
		}
		if st == nil || st.TotalViolations != 0 || len(st.Violations) != 0 {
			return fmt.Errorf("status.audit %+v", st)
		}
		return nil
	})
	if n := testutil.CollectAndCount(reg, reports.MetricViolations); n != 0 {
		t.Errorf("%d violation series left, want 0", n)
	}
}
