package app_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	report "github.com/policy-webhook/policy-webhook/apis/wgpolicyk8s/v1alpha2"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// auditingReplica is a replica with the audit on, whose requests to the
// API server are recorded and whose metrics can be read.
type auditingReplica struct {
	*replica
	requests *testenv.RequestLog
	metrics  *prometheus.Registry
}

func startAuditingReplica(t *testing.T, cp *devenv.ControlPlane, name string) *auditingReplica {
	t.Helper()
	r := &auditingReplica{requests: &testenv.RequestLog{}, metrics: prometheus.NewRegistry()}
	r.replica = startReplica(t, cp, name, func(o *app.Options) {
		o.RestConfig = testenv.WithTransport(cp.Config, r.requests.Wrap)
		o.MetricsRegistry = r.metrics
		o.AuditInterval = time.Second
		o.AuditDebounce = 100 * time.Millisecond
		// The wgpolicyk8s format, which the flag keeps; the default
		// (OpenReports) is controllers/reports' envtest's.
		o.ReportFormat = reports.FormatWGPolicy
	})
	return r
}

// auditRequests are the requests of the audit among a replica's: the
// sweep's lists of Pods (nothing else in the webhook reads Pods), and the
// writes of PolicyReports and status.audit (by the audit's field manager).
func (r *auditingReplica) auditRequests() []string {
	var out []string
	for _, req := range r.requests.Since(0) {
		_, uri, _ := strings.Cut(req, " ")
		path, query, _ := strings.Cut(uri, "?")
		if strings.HasSuffix(path, "/pods") || strings.Contains(path, "/policyreports") ||
			strings.Contains(query, "fieldManager="+reports.FieldManager) {
			out = append(out, req)
		}
	}
	return out
}

// counted sums a counter of the replica's metrics over its labels.
func (r *auditingReplica) counted(t *testing.T, name string) float64 {
	t.Helper()
	return promtest.Sum(t, r.metrics, name, nil)
}

// Two replicas with the audit on: only the leader sweeps (lists Pods) and
// writes (PolicyReports, status.audit), so there is one set of reports,
// all written by the audit's field manager, and the follower makes none of
// those requests. When the leader stops, the other takes the audit over.
func TestTwoReplicasAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local control plane (envtest); runs without -short")
	}
	ctx := t.Context()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{
		Log:          testr.New(t),
		ExtraCRDDirs: []string{filepath.Join(root, "manifests", "components", "policyreports")},
	})
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	for _, ns := range []string{replicaPolicyNS, "team-a"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createPod := func(name string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "evil.io/app:1"}}},
		}
		if _, err := kube.CoreV1().Pods("team-a").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createPod("old")
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": "audited"},
		"spec": map[string]any{
			"enforcement": "Audit",
			"pods":        map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
		},
	}}
	if _, err := dyn.Resource(v1alpha1.Resource).Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	replicas := map[string]*auditingReplica{}
	for _, name := range []string{"replica-a", "replica-b"} {
		replicas[name] = startAuditingReplica(t, cp, name)
	}

	// reportsName reports whether the cluster's PolicyReports are exactly
	// one, team-a's, naming the Pods given, every field of it the audit's.
	reportsName := func(pods ...string) error {
		list, err := dyn.Resource(report.PolicyReportResource).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing PolicyReports: %w", err)
		}
		if len(list.Items) != 1 || list.Items[0].GetNamespace() != "team-a" || list.Items[0].GetName() != reports.ReportName {
			names := make([]string, 0, len(list.Items))
			for _, u := range list.Items {
				names = append(names, u.GetNamespace()+"/"+u.GetName())
			}
			return fmt.Errorf("PolicyReports %v, want team-a/%s alone", names, reports.ReportName)
		}
		u := list.Items[0]
		for _, mf := range u.GetManagedFields() {
			if mf.Manager != reports.FieldManager {
				return fmt.Errorf("PolicyReport fields managed by %q, want %q alone", mf.Manager, reports.FieldManager)
			}
		}
		var r report.PolicyReport
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			return fmt.Errorf("decoding the PolicyReport: %w", err)
		}
		var got []string
		for _, res := range r.Results {
			for _, o := range res.Resources {
				got = append(got, o.Name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, pods) {
			return fmt.Errorf("PolicyReport results name %v, want %v", got, pods)
		}
		return nil
	}
	poll := func(what string, try func() error) {
		t.Helper()
		// The limit only turns a hang into a failure.
		if err := devenv.Poll(ctx, 60*time.Second, func(context.Context) error { return try() }); err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
	}
	leaderOf := func() string {
		l, err := kube.CoordinationV1().Leases(replicaPolicyNS).Get(ctx, app.DefaultLeaderElectionID, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}

	poll("the report names Pod old", func() error { return reportsName("old") })
	leader := leaderOf()
	if replicas[leader] == nil {
		t.Fatalf("the Lease is held by %q, no replica of this test", leader)
	}
	other := "replica-a"
	if leader == other {
		other = "replica-b"
	}
	// A few more sweeps: time for a follower that audits to show it.
	swept := replicas[leader].counted(t, reports.MetricSweeps)
	poll("two more sweeps by the leader", func() error {
		if n := replicas[leader].counted(t, reports.MetricSweeps); n < swept+2 {
			return fmt.Errorf("%v sweeps", n)
		}
		return nil
	})
	if err := reportsName("old"); err != nil {
		t.Error(err)
	}
	if got := replicas[leader].auditRequests(); len(got) == 0 {
		t.Fatalf("no audit request recorded for the leader %s: the test sees none", leader)
	}
	if got := replicas[other].auditRequests(); len(got) > 0 {
		t.Errorf("the follower %s made audit requests:\n%s", other, strings.Join(got, "\n"))
	}
	if n := replicas[other].counted(t, reports.MetricSweeps); n != 0 {
		t.Errorf("the follower %s swept %v times", other, n)
	}
	if n := replicas[other].counted(t, reports.MetricReportWrites); n != 0 {
		t.Errorf("the follower %s wrote %v PolicyReports", other, n)
	}
	t.Logf("leader %s: %d audit requests, %v sweeps; follower %s: none", leader,
		len(replicas[leader].auditRequests()), replicas[leader].counted(t, reports.MetricSweeps), other)

	// Failover: the other replica takes the audit over and reports a Pod
	// created after the leader stopped, in the same single report.
	stoppedAt := time.Now()
	replicas[leader].stop(t)
	createPod("new")
	poll("the other replica holds the Lease", func() error {
		if l := leaderOf(); l != other {
			return errors.New("the Lease is held by " + l)
		}
		return nil
	})
	poll("the report names Pods new and old", func() error { return reportsName("new", "old") })
	t.Logf("%s reported the new Pod %v after the leader stopped", other, time.Since(stoppedAt).Round(time.Millisecond))
	// The report can be read back a moment before the writer counts its
	// write.
	poll("the new leader counting its PolicyReport write", func() error {
		if n := replicas[other].counted(t, reports.MetricReportWrites); n == 0 {
			return fmt.Errorf("the new leader %s counts no PolicyReport write", other)
		}
		return nil
	})
}
