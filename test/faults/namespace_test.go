package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// unseenRounds is how many namespaces are created, each with a Pod at once.
const unseenRounds = 100

// Right after an API server restart, while the Namespace informer is still
// re-establishing its watch, 100 namespaces labelled env=prod are created,
// each with a Pod admitted at once (straight to the webhook, as the API
// server would send it right after the namespace): none is let past the
// namespaceSelector policy. The webhook waits briefly for the informer and
// reads the namespace from the API server when it must.
func TestUnseenNamespaceAfterRestart(t *testing.T) {
	h := startHook(t, inprocess.Options{})
	ctx := t.Context()
	id := fmt.Sprintf("unseen-%d", time.Now().UnixNano()%1_000_000)
	prod := map[string]string{"env": "prod", "fault": id}
	putAdmissionPolicy(t, id, map[string]any{
		"match": map[string]any{"kinds": []any{"Pod"}, "namespaceSelector": map[string]any{"matchLabels": map[string]any{"env": "prod", "fault": id}}},
		"pods":  map[string]any{"allowedRegistries": []any{"registry.example.com/"}},
	})
	denied := "not under an allowed registry"
	seen := namespace(t, id+"-seen", prod)
	h.converge(t, 10*time.Second, admissionCase{"the policy in force", webhook.PathPods, podReview(seen, nil, "docker.io/library/nginx:1.27"), false, denied})

	// A short outage is enough: what matters is the informer's watch
	// coming back after the API server.
	if err := env.cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := env.cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()

	var (
		mu                      sync.Mutex
		letPast, refused, wrong []string
		took                    []time.Duration
		wg                      sync.WaitGroup
	)
	names := make(chan string, unseenRounds)
	for i := range unseenRounds {
		names <- fmt.Sprintf("%s-%03d", id, i)
	}
	close(names)
	for range 4 {
		wg.Go(func() {
			for name := range names {
				err := devenv.PollEvery(ctx, 50*time.Millisecond, time.Minute, func(ctx context.Context) error {
					return env.cp.EnsureNamespace(ctx, name, prod)
				})
				if err != nil {
					t.Errorf("creating namespace %s: %v", name, err)
					continue
				}
				t.Cleanup(func() {
					_ = env.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
				})
				start := time.Now()
				v, err := h.admit(ctx, webhook.PathPods, podReview(name, nil, "docker.io/library/nginx:1.27"))
				d := time.Since(start)
				mu.Lock()
				took = append(took, d)
				switch {
				case err != nil:
					wrong = append(wrong, name+": "+err.Error())
				case v.allowed:
					letPast = append(letPast, name)
				case strings.Contains(v.message, denied):
				case strings.Contains(v.message, "refused rather than judged without the namespace's labels"):
					refused = append(refused, name+": "+v.message)
				default:
					wrong = append(wrong, name+": "+v.message)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(back)
	slices.Sort(took)

	outcome := func(o string) float64 {
		return promtest.Sum(t, h.reg, cache.MetricUnseenNamespaces, map[string]string{"outcome": o})
	}
	t.Logf("figures: %d namespaces labelled env=prod each created with a Pod at once, starting right after the API server's restart, over %s: "+
		"%d let past, %d refused as unknown, %d failed; admission p50 %s, max %s; unseen namespaces: %v delivered by the informer within the wait, %v read from the API server, %v not found, %v read errors",
		len(took), elapsed.Round(time.Millisecond), len(letPast), len(refused), len(wrong),
		took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond),
		outcome("informer"), outcome("read"), outcome("not_found"), outcome("error"))
	if len(letPast) != 0 {
		t.Errorf("%d Pods let past the namespaceSelector policy: %v", len(letPast), letPast)
	}
	if len(refused)+len(wrong) != 0 {
		t.Errorf("%d refused and %d failed where the namespace exists: %v", len(refused), len(wrong), append(refused, wrong...)[:min(5, len(refused)+len(wrong))])
	}
	if len(took) != unseenRounds {
		t.Errorf("%d rounds ran, want %d", len(took), unseenRounds)
	}
}
