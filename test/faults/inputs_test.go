package faults

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// maxResponseBytes is what a response may weigh whatever the policy and
// the object: a denial lists a bounded number of violations, each with a
// bounded message.
const maxResponseBytes = 256 << 10

// Issue 11's inputs that took a replica past its memory limit: 16 policy
// documents nesting 9,999 levels deep (20 KB each) sent in parallel, four
// times over, and 16 parallel Pods of 300 containers each denied by a
// policy whose allowlist is 1 MB. Every verdict is checked, every
// response stays bounded, and the heap stays under the Deployment's
// 512 MiB limit (this process holds the test's side too).
//
// The slow-body and held-body attacks are TestFaultSlowAndHeldBodies in
// package webhook, against the server whose byte budget they fill.
func TestUnboundedInputs(t *testing.T) {
	const parallel = 16
	h := startHook(t, inprocess.Options{})
	ctx := t.Context()
	ns := namespace(t, "inputs", nil)
	heapBefore := heap()

	// 16 deep documents at once, four times.
	deep := "pods:\n  requiredLabels: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n"
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "deep", Namespace: ns, Labels: map[string]string{policy.PolicyLabel: "true"}},
		Data:       map[string]string{policy.ConfigMapDataKey: deep},
	}
	deepReview := review("ConfigMap", "configmaps", ns, cm.Name, cm, false)
	var sent, failed, wrong atomic.Int64
	var largest atomic.Int64
	var mu sync.Mutex
	var firstErrors []string
	check := func(path string, body []byte, want string) {
		sent.Add(1)
		v, err := h.admit(ctx, path, body)
		if err == nil {
			err = expect(v, false, want)
			if err != nil {
				wrong.Add(1)
			}
		} else {
			failed.Add(1)
		}
		if err != nil {
			mu.Lock()
			if len(firstErrors) < 3 {
				firstErrors = append(firstErrors, err.Error())
			}
			mu.Unlock()
		}
		for {
			l := largest.Load()
			if int64(v.bytes) <= l || largest.CompareAndSwap(l, int64(v.bytes)) {
				break
			}
		}
	}
	burst := func(rounds int, path string, body []byte, want string) {
		var wg sync.WaitGroup
		for range parallel {
			wg.Go(func() {
				for range rounds {
					check(path, body, want)
				}
			})
		}
		wg.Wait()
	}
	stop := heapPeak()
	begun := time.Now()
	burst(4, webhook.PathPolicies, deepReview, "nests deeper than")
	deepPeak, deepTook := stop(), time.Since(begun)
	t.Logf("deep documents: %d of %d bytes each in %s, %d failed, %d wrong, largest response %d bytes, peak heap in use %s",
		sent.Load(), len(deepReview), deepTook.Round(time.Millisecond), failed.Load(), wrong.Load(), largest.Load(), mib(deepPeak))

	// A valid policy with a 1 MB allowlist, in force through the API
	// server, and Pods of 300 containers it denies.
	var list strings.Builder
	n := 0
	for list.Len() < 1_000_000-40 {
		if n > 0 {
			list.WriteString(", ")
		}
		fmt.Fprintf(&list, "registry-%05d.example.com/", n)
		n++
	}
	if err := putPolicy(ctx, ns, "allowlist", "pods:\n  allowedRegistries: ["+list.String()+"]\n"); err != nil {
		t.Fatal(err)
	}
	h.converge(t, 30*time.Second, admissionCase{"the 1 MB allowlist in force", webhook.PathPods, podReview(ns, nil, "docker.io/team/app:1.0"), false, "not under an allowed registry"})
	h.converge(t, 30*time.Second, admissionCase{"an image it allows", webhook.PathPods, podReview(ns, nil, fmt.Sprintf("registry-%05d.example.com/app:1", n-1)), true, ""})
	images := make([]string, 300)
	for i := range images {
		images[i] = fmt.Sprintf("docker.io/team/app-%d:1.0", i)
	}
	wide := podReview(ns, nil, images...)
	sent.Store(0)
	largest.Store(0)
	stop = heapPeak()
	begun = time.Now()
	burst(2, webhook.PathPods, wide, "not under an allowed registry")
	widePeak, wideTook := stop(), time.Since(begun)
	t.Logf("allowlist of %d entries (%d bytes), Pods of 300 containers: %d denials in %s, %d failed, %d wrong, largest response %d bytes, peak heap in use %s",
		n, list.Len(), sent.Load(), wideTook.Round(time.Millisecond), failed.Load(), wrong.Load(), largest.Load(), mib(widePeak))

	heapAfter := heap()
	t.Logf("figures: heap %s before, %s after; peaks %s (deep documents) and %s (wide denials), the Deployment's limit %s",
		mib(heapBefore), mib(heapAfter), mib(deepPeak), mib(widePeak), mib(deploymentMemoryLimit))
	if failed.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("%d failed, %d wrong: %v", failed.Load(), wrong.Load(), firstErrors)
	}
	if largest.Load() > maxResponseBytes {
		t.Errorf("a response of %d bytes, more than %d", largest.Load(), maxResponseBytes)
	}
	for what, peak := range map[string]uint64{"deep documents": deepPeak, "wide denials": widePeak} {
		if peak >= deploymentMemoryLimit {
			t.Errorf("%s: peak heap in use %s, not under the Deployment's limit of %s", what, mib(peak), mib(deploymentMemoryLimit))
		}
	}
}
