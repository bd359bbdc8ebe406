//go:build unix

package reports_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// envInt reads a size from the environment, for a smaller run.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// BenchmarkSweep is one audit sweep, reports and status written, over
// AUDIT_BENCH_NAMESPACES (default 100) namespaces each holding
// AUDIT_BENCH_PER_NAMESPACE (default 100) Pods and as many MyApples, one in
// ten of each breaking a Deny rule, on a local control plane. heap-MiB is
// the largest growth of the live heap over its size before the sweep,
// sampled every millisecond.
func BenchmarkSweep(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	namespaces := envInt(b, "AUDIT_BENCH_NAMESPACES", 100)
	per := envInt(b, "AUDIT_BENCH_PER_NAMESPACE", 100)
	cp, err := devenv.StartControlPlane(ctx, devenv.ControlPlaneOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cp.Stop() })
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = -1, 0
	e := newEnvFor(b, cfg, cp)

	if err := cp.EnsureNamespace(ctx, "policy-system", nil); err != nil {
		b.Fatal(err)
	}
	begun := time.Now()
	var created atomic.Int64
	work := make(chan func() error)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := f(); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
				created.Add(1)
			}
		}()
	}
	for i := range namespaces {
		ns := fmt.Sprintf("bench-%03d", i)
		if err := cp.EnsureNamespace(ctx, ns, map[string]string{"env": "prod"}); err != nil {
			b.Fatal(err)
		}
		for j := range per {
			image := "registry.example.com/team/app:1." + strconv.Itoa(j)
			color := "red"
			if j%10 == 0 {
				image, color = "docker.io/library/nginx:1.27", "blue"
			}
			pod := benchPod(ns, fmt.Sprintf("web-%04d", j), image)
			apple := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "stable.example.com/v1", "kind": "MyApple",
				"metadata": map[string]any{"name": fmt.Sprintf("apple-%04d", j), "namespace": ns, "labels": map[string]any{"app": "orchard"}},
				"spec":     map[string]any{"color": color, "size": "small", "quantity": int64(1)},
			}}
			work <- func() error {
				_, err := e.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
				return err
			}
			work <- func() error {
				_, err := e.dyn.Resource(cache.MyAppleResource()).Namespace(ns).Create(ctx, apple, metav1.CreateOptions{})
				return err
			}
		}
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatalf("creating the objects: %v", err)
	}
	b.Logf("created %d objects in %d namespaces in %s", created.Load(), namespaces, time.Since(begun).Round(time.Second))
	e.admissionPolicy(b, ctx, "registries", map[string]any{
		"pods":     map[string]any{"allowedRegistries": []any{"registry.example.com/"}, "disallowedTags": []any{"latest"}},
		"myApples": map[string]any{"allowedColors": []any{"red", "green"}, "maxTotalQuantityPerNamespace": int64(1000)},
	})
	e.installReportCRDs(b, reports.FormatOpenReports)

	c, err := cache.New(cache.Config{Dynamic: e.dyn, Metadata: e.meta, PolicyNamespace: "policy-system"})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForSync(ctx) {
		b.Fatal("the cache did not sync")
	}
	a, err := reports.New(reports.Config{Policies: c, REST: e.kube.CoreV1().RESTClient(), Dynamic: e.dyn, Discovery: e.kube.Discovery(), Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}

	want := namespaces * per
	wantViolations := 2 * namespaces * ((per + 9) / 10)
	// The setup above runs once; each sub-benchmark measures on it.
	b.Run("list", func(b *testing.B) {
		// Listing and decoding alone: the floor a sweep cannot go under.
		measure(b, func() {
			n := 0
			l := &audit.Lister{Client: e.kube.CoreV1().RESTClient()}
			for _, kind := range audit.Kinds() {
				if err := l.Each(ctx, kind, "", func(*audit.Object) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			if n != 2*want {
				b.Fatalf("listed %d objects, want %d", n, 2*want)
			}
		})
	})
	b.Run("sweep", func(b *testing.B) {
		measure(b, func() {
			s, err := a.Sweep(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if s.Totals.Judged["Pod"] != want || s.Totals.Judged["MyApple"] != want || s.Violations != wantViolations {
				b.Fatalf("sweep %+v: want %d of each kind, %d violations", s, want, wantViolations)
			}
		})
		b.ReportMetric(float64(2*want), "objects")
	})
}

// measure runs op in a b.Loop and reports, beside time and allocations,
// the CPU time this process spent per op (the API server and etcd are
// other processes: wall time above it is theirs, or waiting) and the
// largest growth of the heap over its size before the op, sampled every
// millisecond.
func measure(b *testing.B, op func()) {
	b.ReportAllocs()
	var peak uint64
	var cpu time.Duration
	ops := 0
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		base := liveHeap()
		stop := make(chan struct{})
		done := make(chan uint64)
		go func() { done <- samplePeak(stop) }()
		before := processCPU()
		b.StartTimer()
		op()
		b.StopTimer()
		cpu += processCPU() - before
		ops++
		close(stop)
		if p := <-done; p > base && p-base > peak {
			peak = p - base
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "heap-MiB")
	b.ReportMetric(cpu.Seconds()/float64(ops), "cpu-s/op")
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchPod(ns, name, image string) *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": "5d8f9c7b6"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-30T05:00:00Z"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "web", Image: image, Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits},
					Env:   []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "PORT", Value: "8080"}},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
				{Name: "sidecar", Image: "registry.example.com/team/proxy:2.1", Resources: corev1.ResourceRequirements{Limits: limits}},
			},
		},
	}
}

// liveHeap is the bytes of heap objects, live or not yet swept.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func samplePeak(stop <-chan struct{}) uint64 {
	var peak uint64
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		if h := liveHeap(); h > peak {
			peak = h
		}
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}
