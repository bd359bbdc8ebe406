package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// env is the control plane every fault shares: starting one takes seconds.
// Each test isolates itself in namespaces of its own and starts its own
// webhook. Tests do not run in parallel: some of them stop the API server.
var env *suite

type suite struct {
	cp     *devenv.ControlPlane
	log    logr.Logger
	client kubernetes.Interface
	dyn    dynamic.Interface
}

// deploymentMemoryLimit is the Deployment's memory limit
// (manifests/server/deployment.yaml).
const deploymentMemoryLimit = 512 << 20

var myApples = schema.GroupVersionResource{Group: policy.GroupMyApple, Version: "v1", Resource: policy.ResourceApples}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(devenv.AssetsEnv) == "" {
		if testing.Short() {
			fmt.Println("faults: skipped in -short mode: " + devenv.ErrNoAssets.Error())
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "FAIL: the fault suite needs a local control plane: "+devenv.ErrNoAssets.Error())
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// go test shows this output only for a failing package (or with -v).
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctrllog.SetLogger(log)
	klog.SetLogger(log)
	ctx := context.Background()
	cp, err := devenv.StartControlPlane(ctx, devenv.ControlPlaneOptions{Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting the control plane:", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS = -1 // no client-side rate limit: the storms are the test
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building a clientset:", err)
		return 1
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building a dynamic client:", err)
		return 1
	}
	env = &suite{cp: cp, log: log, client: client, dyn: dyn}
	return m.Run()
}

// hook is a webhook served in this process for one test, with a metrics
// registry of its own the test reads.
type hook struct {
	*inprocess.Webhook
	reg *prometheus.Registry
	hc  *http.Client
}

func startHook(t *testing.T, opts inprocess.Options) *hook {
	t.Helper()
	if opts.RestConfig == nil {
		opts.RestConfig = env.cp.Config
	}
	opts.Log = env.log.WithName(t.Name())
	reg := prometheus.NewRegistry()
	opts.MetricsRegistry = reg
	wh := inprocess.StartForTest(t, opts)
	h := &hook{Webhook: wh, reg: reg, hc: wh.HTTPClient()}
	t.Cleanup(h.hc.CloseIdleConnections)
	return h
}

// verdict is what the webhook answered.
type verdict struct {
	allowed bool
	message string
	bytes   int // of the whole response body
}

// admit posts an AdmissionReview to path and returns the verdict; an
// error is a failed request: no answer, or not HTTP 200.
func (h *hook) admit(ctx context.Context, path string, body []byte) (verdict, error) {
	return admitWith(ctx, h.hc, h.URL+path, body)
}

func admitWith(ctx context.Context, hc *http.Client, url string, body []byte) (verdict, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return verdict{}, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return verdict{}, fmt.Errorf("posting to %s: %w", url, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		return verdict{}, fmt.Errorf("reading the response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return verdict{}, fmt.Errorf("HTTP %d: %.300s", res.StatusCode, out)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &review); err != nil {
		return verdict{}, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	if review.Response == nil {
		return verdict{}, fmt.Errorf("no response in %.300s", out)
	}
	v := verdict{allowed: review.Response.Allowed, bytes: len(out)}
	if review.Response.Result != nil {
		v.message = review.Response.Result.Message
	}
	return v, nil
}

// expect checks a verdict: allowed, or denied with want in the message.
func expect(v verdict, allowed bool, want string) error {
	switch {
	case v.allowed != allowed:
		return fmt.Errorf("allowed=%v, want %v (message %q)", v.allowed, allowed, v.message)
	case !allowed && !strings.Contains(v.message, want):
		return fmt.Errorf("denied with %q, want it to say %q", v.message, want)
	}
	return nil
}

var uids atomic.Int64

func review(kind, resource, ns, name string, obj any, dryRun bool) []byte {
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(err) // the objects are the tests' own
	}
	gvk := metav1.GroupVersionKind{Version: "v1", Kind: kind}
	gvr := metav1.GroupVersionResource{Version: "v1", Resource: resource}
	if kind == "MyApple" {
		gvk.Group, gvr.Group = policy.GroupMyApple, policy.GroupMyApple
	}
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(fmt.Sprintf("fault-%d", uids.Add(1))), Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Namespace: ns, Name: name, Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "fault-suite"},
			Object:   k8sruntime.RawExtension{Raw: raw},
			DryRun:   ptr.To(dryRun),
		},
	}
	body, err := json.Marshal(&r)
	if err != nil {
		panic(err)
	}
	return body
}

// podReview is the review of a CREATE of a Pod of one container per image.
func podReview(ns string, labels map[string]string, images ...string) []byte {
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, Labels: labels}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return review("Pod", "pods", ns, p.Name, p, false)
}

// appleReview is the review of a CREATE of a MyApple; dry run, as a
// client's --dry-run=server sends it, so that no quota is reserved.
func appleReview(ns, name, color string, quantity int64) []byte {
	return review("MyApple", policy.ResourceApples, ns, name, apple(ns, name, color, quantity).Object, true)
}

func apple(ns, name, color string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       map[string]any{"color": color, "size": "small", "quantity": quantity},
	}}
}

// namespace creates a namespace for t, deleted when t ends.
func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	name = fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1_000_000)
	if err := env.cp.EnsureNamespace(t.Context(), name, labels); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// putPolicy creates or updates a policy ConfigMap.
func putPolicy(ctx context.Context, ns, name, spec string) error {
	cms := env.client.CoreV1().ConfigMaps(ns)
	cur, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, devenv.PolicyConfigMap(ns, name, spec), metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cur.Data = map[string]string{policy.ConfigMapDataKey: spec}
	_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// putAdmissionPolicy creates or updates an AdmissionPolicy, deleted when t
// ends.
func putAdmissionPolicy(t *testing.T, name string, spec map[string]any) {
	t.Helper()
	api := env.dyn.Resource(v1alpha1.Resource)
	cur, err := api.Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.example.com/v1alpha1", "kind": "AdmissionPolicy",
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
		if _, err := api.Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating AdmissionPolicy %s: %v", name, err)
		}
		t.Cleanup(func() { _ = api.Delete(context.Background(), name, metav1.DeleteOptions{}) })
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"] = spec
	if _, err := api.Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating AdmissionPolicy %s: %v", name, err)
	}
}

// heap is the live heap after a full collection, the figure to compare
// before and after a fault.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapPeak samples the heap in use every 20 ms until stop is called, which
// returns the peak.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// traffic sends admissions from workers goroutines until stopped, each
// checked by its case: the figures of a fault.
type traffic struct {
	sent, failed, wrong atomic.Int64
	mu                  sync.Mutex
	firstErrors         []string
	stop                chan struct{}
	wg                  sync.WaitGroup
}

// admissionCase is one admission and what its verdict must be.
type admissionCase struct {
	name    string
	path    string
	body    []byte
	allowed bool
	want    string // in the denial
}

func startTraffic(ctx context.Context, h *hook, workers int, cases []admissionCase) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	for w := range workers {
		tr.wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-tr.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				c := cases[i%len(cases)]
				tr.sent.Add(1)
				v, err := h.admit(ctx, c.path, c.body)
				switch {
				case err != nil:
					tr.failed.Add(1)
					tr.note(c.name + ": " + err.Error())
				case expect(v, c.allowed, c.want) != nil:
					tr.wrong.Add(1)
					tr.note(c.name + ": " + expect(v, c.allowed, c.want).Error())
				}
			}
		})
	}
	return tr
}

func (tr *traffic) note(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.firstErrors) < 5 {
		tr.firstErrors = append(tr.firstErrors, s)
	}
}

// end stops the traffic and fails t on any failed or wrong verdict.
func (tr *traffic) end(t *testing.T, during string) (sent int64) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	t.Logf("%s: %d admissions, %d failed, %d wrong", during, tr.sent.Load(), tr.failed.Load(), tr.wrong.Load())
	if tr.failed.Load() != 0 || tr.wrong.Load() != 0 {
		t.Errorf("%s: %d failed, %d wrong; first: %s", during, tr.failed.Load(), tr.wrong.Load(), strings.Join(tr.firstErrors, "; "))
	}
	if tr.sent.Load() == 0 {
		t.Errorf("%s: no admission was sent", during)
	}
	return tr.sent.Load()
}

// converge polls c's admission until its verdict is the one wanted, and
// returns how long that took.
func (h *hook) converge(t *testing.T, timeout time.Duration, c admissionCase) time.Duration {
	t.Helper()
	start := time.Now()
	err := devenv.PollEvery(t.Context(), 20*time.Millisecond, timeout, func(ctx context.Context) error {
		v, err := h.admit(ctx, c.path, c.body)
		if err != nil {
			return err
		}
		return expect(v, c.allowed, c.want)
	})
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
	}
	return time.Since(start)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
