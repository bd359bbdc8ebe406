// Package candidate_test is the end-to-end proof of policy candidates: two
// webhook replicas behind one address, called by the API server, judge a
// candidate beside the AdmissionPolicy in force; the leader sums what each
// replica saw into status.candidate; the candidate is promoted.
package candidate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/controllers/promote"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// auditPolicyYAML records Pod writes with the webhooks' audit annotations.
const auditPolicyYAML = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update]
  resources:
  - group: ""
    resources: [pods]
- level: None
`

const (
	ns         = "candidate-e2e"
	policyName = "baseline"
	source     = "AdmissionPolicy " + policyName
)

var (
	registries = map[string]any{"allowedRegistries": []any{"registry.example.com/"}}
	noLatest   = map[string]any{"allowedRegistries": []any{"registry.example.com/"}, "disallowedTags": []any{"latest"}}
	match      = map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"candidate-e2e": "true"}}}
)

// TestCandidateThroughTheAPIServer is issue 20's bar: 20 Pod creates, 5
// of them :latest, through two replicas; all admitted; status.candidate
// sums 20 judged and 5 would_deny within 15 s; metrics and audit
// annotations agree; 3 pre-existing :latest Pods are existing objects it
// would deny; an invalid candidate is refused, or, got in, reported and
// harmless; promote races an edit and fails, then promotes.
func TestCandidateThroughTheAPIServer(t *testing.T) {
	dir := t.TempDir()
	auditPolicy, auditLog := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(auditPolicy, []byte(auditPolicyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{APIServerFlags: map[string]string{
		"audit-policy-file": auditPolicy, "audit-log-path": auditLog, "audit-log-mode": "blocking",
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}

	var regs [2]*prometheus.Registry
	var backends []string
	var caBundle []byte
	for i := range regs {
		regs[i] = prometheus.NewRegistry()
		wh, err := inprocess.Start(ctx, inprocess.Options{
			RestConfig: cp.Config, MetricsRegistry: regs[i], AuditInterval: 5 * time.Second,
			LeaderElection: true, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wh.Stop() })
		if err := wh.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		backends = append(backends, strings.TrimPrefix(wh.URL, "https://"))
		caBundle = append(caBundle, wh.CA.CertPEM()...)
	}
	front := testenv.RoundRobin(t, backends)
	register := func() {
		t.Helper()
		if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration("https://"+front, caBundle, webhook.DefaultPolicyNamespace)); err != nil {
			t.Fatal(err)
		}
		if err := devenv.WaitCalled(ctx, cp.Client, webhook.DefaultPolicyNamespace); err != nil {
			t.Fatal(err)
		}
	}
	register()

	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS = -1
	kube := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	aps := dyn.Resource(v1alpha1.Resource)
	if err := cp.EnsureNamespace(ctx, ns, map[string]string{"candidate-e2e": "true"}); err != nil {
		t.Fatal(err)
	}
	createPod := func(name, image string, dryRun bool) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := kube.CoreV1().Pods(ns).Create(ctx, p, opts)
		return err
	}
	// Three :latest Pods exist before the policy does.
	for i := range 3 {
		if err := createPod(fmt.Sprintf("old-%d", i), "registry.example.com/app:latest", false); err != nil {
			t.Fatal(err)
		}
	}

	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": policyName},
		"spec": map[string]any{"match": match, "pods": registries,
			"candidate": map[string]any{"match": match, "pods": noLatest}},
	}}
	if _, err := aps.Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	status := func() (*v1alpha1.AdmissionPolicy, error) {
		u, err := aps.Get(ctx, policyName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var out v1alpha1.AdmissionPolicy
		return &out, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out)
	}
	// Both replicas judge the candidate once each has written its entry.
	testenv.Eventually(t, 30*time.Second, "both replicas' entries with the candidate", func() error {
		got, err := status()
		if err != nil {
			return err
		}
		n := 0
		for _, r := range got.Status.Replicas {
			if r.InForce && r.ObservedGeneration == got.Generation && r.Candidate != nil && r.Candidate.Hash != "" {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d replicas judge the candidate: %+v", n, got.Status.Replicas)
		}
		return nil
	})

	// At once, so that the API server opens several connections and the
	// front deals them to both replicas.
	var latest []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		name, image := fmt.Sprintf("pod-%02d", i), "registry.example.com/app:1.0"
		if i%4 == 0 {
			image = "registry.example.com/app:latest"
			latest = append(latest, name)
		}
		wg.Go(func() {
			<-start
			if err := createPod(name, image, false); err != nil {
				t.Errorf("%s (%s) was refused: the candidate must never change a verdict: %v", name, image, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	created := time.Now()
	var final *v1alpha1.AdmissionPolicy
	testenv.Eventually(t, 15*time.Second, "status.candidate summed over both replicas", func() error {
		got, err := status()
		if err != nil {
			return err
		}
		c := got.Status.Candidate
		if c == nil || c.Judged != 20 || c.WouldDeny != 5 || c.Same != 15 || c.WouldAllow != 0 || c.WouldWarn != 0 {
			return fmt.Errorf("status.candidate %+v", c)
		}
		final = got
		return nil
	})
	t.Logf("status.candidate showed 20 judged, 5 would deny %v after the last create", time.Since(created).Round(time.Millisecond))
	c := final.Status.Candidate
	var denied []string
	for _, d := range c.RecentDenials {
		denied = append(denied, d.Name)
		if d.Kind != "Pod" || d.Namespace != ns || d.Operation != "CREATE" || !strings.Contains(d.Violation, "pods.disallowedTags spec.containers[0].image") {
			t.Errorf("recent denial %+v", d)
		}
	}
	slices.Sort(denied)
	if fmt.Sprint(denied) != fmt.Sprint(latest) {
		t.Errorf("recent denials %v, want %v", denied, latest)
	}
	if c.Summary != "+5 deny / -0" || !c.Valid || c.Generation != final.Generation || len(c.Hash) != 16 {
		t.Errorf("status.candidate summary %q valid %t generation %d hash %q", c.Summary, c.Valid, c.Generation, c.Hash)
	}

	// The metric agrees, and both replicas answered some.
	var total, wouldDeny float64
	for i, reg := range regs {
		n := promtest.Sum(t, reg, webhook.MetricCandidateEvaluations, map[string]string{"source": source})
		if n == 0 {
			t.Errorf("replica %d judged no candidate: the admissions were not spread", i)
		}
		total += n
		wouldDeny += promtest.Sum(t, reg, webhook.MetricCandidateEvaluations, map[string]string{"source": source, "outcome": v1alpha1.OutcomeWouldDeny})
	}
	if total != 20 || wouldDeny != 5 {
		t.Errorf("%s: %v judged, %v would deny; want 20 and 5", webhook.MetricCandidateEvaluations, total, wouldDeny)
	}
	// So do the audit annotations.
	annotations := candidateAnnotations(t, auditLog)
	wantPrefix := fmt.Sprintf("%s@%d ", source, final.Generation)
	for i := range 20 {
		name := fmt.Sprintf("pod-%02d", i)
		want := wantPrefix + "same"
		if slices.Contains(latest, name) {
			want = wantPrefix + "would deny: pods.disallowedTags spec.containers[0].image"
		}
		if got := annotations[name]; got != want {
			t.Errorf("%s: audit annotation %q, want %q", name, got, want)
		}
	}

	// The audit finds the existing :latest Pods, the 3 from before included.
	testenv.Eventually(t, 60*time.Second, "status.candidate.existing", func() error {
		got, err := status()
		if err != nil {
			return err
		}
		e := got.Status.Candidate.Existing
		if e == nil {
			return errors.New("no status.candidate.existing yet")
		}
		var names []string
		for _, v := range e.Violations {
			names = append(names, v.Name)
		}
		for i := range 3 {
			if !slices.Contains(names, fmt.Sprintf("old-%d", i)) {
				return fmt.Errorf("existing objects it would deny: %v (total %d)", names, e.TotalViolations)
			}
		}
		return nil
	})

	// An invalid candidate is refused at apply, with its field path. (The
	// CRD's schema lets the expression through, as it would an unknown
	// field, pruned: only the webhook judges what a policy means.)
	const badPath = "spec.candidate.validations[0].expression"
	invalidCandidate := func(u *unstructured.Unstructured) {
		u.Object["spec"].(map[string]any)["candidate"] = map[string]any{"match": match, "pods": noLatest,
			"validations": []any{map[string]any{"name": "broken", "expression": "object.metadata.name =="}}}
	}
	err := edit(ctx, aps, invalidCandidate)
	if err == nil || !strings.Contains(err.Error(), badPath) {
		t.Fatalf("an invalid candidate: %v, want a refusal naming %s", err, badPath)
	}
	// One that got in while the webhook was unregistered leaves the spec
	// and the last good candidate as they were, and is reported.
	if err := devenv.Unregister(ctx, cp.Client, devenv.ConfigurationName); err != nil {
		t.Fatal(err)
	}
	if err := edit(ctx, aps, invalidCandidate); err != nil {
		t.Fatal(err)
	}
	register()
	testenv.Eventually(t, 30*time.Second, "the invalid candidate reported", func() error {
		got, err := status()
		if err != nil {
			return err
		}
		c := got.Status.Candidate
		if c == nil || c.Valid || !strings.Contains(c.Message, badPath) || c.Hash != final.Status.Candidate.Hash {
			return fmt.Errorf("status.candidate %+v", c)
		}
		events, err := kube.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Name == policyName && e.Reason == controllers.ReasonInvalidCandidate && strings.Contains(e.Message, badPath) {
				return nil
			}
		}
		return errors.New("no InvalidCandidate Event")
	})
	if err := createPod("foreign", "docker.io/library/nginx:1.27", true); err == nil || !strings.Contains(err.Error(), "pods.allowedRegistries") {
		t.Errorf("the spec in force beside an invalid candidate: %v, want the registry refusal", err)
	}
	// The good candidate back, for promotion.
	if err := edit(ctx, aps, func(u *unstructured.Unstructured) {
		u.Object["spec"].(map[string]any)["candidate"] = map[string]any{"match": match, "pods": noLatest}
	}); err != nil {
		t.Fatal(err)
	}

	// A promote racing an edit fails and writes nothing.
	before, err := aps.Get(ctx, policyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var raced atomic.Bool
	racing := testenv.WithTransport(cfg, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && raced.CompareAndSwap(false, true) {
				// Someone edits the policy between promote's read and write.
				if err := edit(ctx, aps, func(u *unstructured.Unstructured) {
					u.SetAnnotations(map[string]string{"edited": "meanwhile"})
				}); err != nil {
					t.Errorf("editing the policy meanwhile: %v", err)
				}
			}
			return rt.RoundTrip(r)
		})
	})
	raceRes, err := promote.Promote(ctx, dynamic.NewForConfigOrDie(racing), kubernetes.NewForConfigOrDie(racing), promote.Target{Kind: "AdmissionPolicy", Name: policyName})
	if !raced.Load() {
		t.Fatal("the edit did not race the promote: the test proves nothing")
	}
	if !errors.Is(err, promote.ErrConflict) || !strings.Contains(err.Error(), "nothing was written") {
		cur, _ := aps.Get(ctx, policyName, metav1.GetOptions{})
		t.Fatalf("a promote racing an edit: %v (%+v), want ErrConflict; now annotations %v rv %s spec %v; before rv %s annotations %v", err, raceRes,
			cur.GetAnnotations(), cur.GetResourceVersion(), cur.Object["spec"], before.GetResourceVersion(), before.GetAnnotations())
	}
	after, err := aps.Get(ctx, policyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, has, _ := unstructured.NestedMap(after.Object, "spec", "candidate"); !has || fmt.Sprint(after.Object["spec"]) != fmt.Sprint(before.Object["spec"]) {
		t.Fatalf("the spec after a failed promote: %v, want it unchanged: %v", after.Object["spec"], before.Object["spec"])
	}

	// Promoted, the candidate is the spec: the next :latest Pod is denied.
	// A status write between its read and its write (the replicas write
	// theirs as they count) is no edit: the promotion goes through.
	var statusWritten atomic.Bool
	statusRace := testenv.WithTransport(cfg, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && statusWritten.CompareAndSwap(false, true) {
				u, err := aps.Get(ctx, policyName, metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				if err := unstructured.SetNestedField(u.Object, "0/9", "status", "inForce"); err != nil {
					return nil, err
				}
				if _, err := aps.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
					t.Errorf("writing the status meanwhile: %v", err)
				}
			}
			return rt.RoundTrip(r)
		})
	})
	res, err := promote.Promote(ctx, dynamic.NewForConfigOrDie(statusRace), kubernetes.NewForConfigOrDie(statusRace), promote.Target{Kind: "AdmissionPolicy", Name: policyName})
	if err != nil {
		t.Fatal(err)
	}
	if !statusWritten.Load() {
		t.Error("the status was not written between promote's read and write: the test proves nothing")
	}
	t.Logf("promoted: %+v", res)
	testenv.Eventually(t, 15*time.Second, "the promoted candidate in force", func() error {
		err := createPod("next", "registry.example.com/app:latest", true)
		if err == nil || !strings.Contains(err.Error(), "pods.disallowedTags") {
			return fmt.Errorf("a :latest Pod after the promotion: %w", err)
		}
		return nil
	})
	testenv.Eventually(t, 15*time.Second, "status.candidate gone", func() error {
		got, err := status()
		if err != nil {
			return err
		}
		if got.Spec.Candidate != nil || got.Status.Candidate != nil || !slices.Equal(got.Spec.Pods.DisallowedTags, []string{"latest"}) {
			return fmt.Errorf("spec %+v, status.candidate %+v", got.Spec, got.Status.Candidate)
		}
		return nil
	})
}

// edit reads the AdmissionPolicy, changes it and writes it back, again
// while the replicas' status writes make it conflict.
func edit(ctx context.Context, aps dynamic.NamespaceableResourceInterface, change func(*unstructured.Unstructured)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := aps.Get(ctx, policyName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(u)
		_, err = aps.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
}

// candidateAnnotations reads the API server's audit log: the candidate
// annotation of each Pod of ns created, by name.
func candidateAnnotations(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		r := ev.ObjectRef
		if r == nil || r.Resource != "pods" || r.Namespace != ns || r.Subresource != "" || ev.Verb != "create" {
			continue
		}
		if v, ok := ev.Annotations[devenv.PodsWebhook+"/candidate"]; ok {
			out[r.Name] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
