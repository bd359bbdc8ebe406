package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// TestNoAPICallsWhileAdmitting sends 1,000 admissions through the API
// server, concurrently, and asserts the webhook made no request to the API
// server meanwhile: every answer came from its informer cache. Half the Pods
// break the policy, and every verdict is checked, so the webhook provably
// judged each one.
func TestNoAPICallsWhileAdmitting(t *testing.T) {
	ctx := testCtx(t)
	good, bad, refused := registryScenario(ctx, t)
	opts := metav1.CreateOptions{DryRun: dryRun}
	admitWithoutAPICalls(t, "dry-run Pod creates, half refused", func(i int64) (string, error) {
		if i%2 == 1 {
			return refused, createPod(ctx, bad, opts)
		}
		return "", createPod(ctx, good, opts)
	})
}

// The same with CEL policies in force whose expressions read the cache, for
// Pods and MyApples: namespaceObject (the Namespace informer) and
// cluster.myApples (the MyApple informer) are answered from memory too.
func TestNoAPICallsWhileAdmittingWithCEL(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, map[string]string{"color": "red"})
	wantAdmitted(t, createApple(ctx, apple(ns, "red", "red", "small", 1), metav1.CreateOptions{}))
	mustPutPolicy(t, ns, "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n")
	mustPutPolicy(t, ns, "cel-pods", `match: {kinds: [Pod]}
validations:
- name: appleColor
  expression: "cluster.myApples(object.metadata.namespace).exists(a, a.color == object.metadata.?labels.?color.orValue(''))"
  messageExpression: "'no MyApple in ' + namespaceObject.metadata.name + ' is ' + object.metadata.?labels.?color.orValue('colorless')"
`)
	mustPutPolicy(t, ns, "cel-apples", `match: {kinds: [MyApple]}
variables:
- name: color
  expression: "namespaceObject.metadata.?labels.?color.orValue('')"
validations:
- name: namespaceColor
  expression: "object.spec.color == variables.color && cluster.myApples(object.metadata.namespace).size() < 100"
  messageExpression: "'MyApples in ' + namespaceObject.metadata.name + ' are ' + variables.color"
`)
	opts := metav1.CreateOptions{DryRun: dryRun}
	goodPod := pod(ns, "red", map[string]string{"color": "red"}, "registry.example.com/web:1.0")
	badPod := pod(ns, "blue", map[string]string{"color": "blue"}, "registry.example.com/web:1.0")
	podRefused := podDenial(fmt.Sprintf("policy violation: ConfigMap %s/cel-pods validations.appleColor: no MyApple in %s is blue", ns, ns))
	goodApple, badApple := apple(ns, "more-red", "red", "small", 1), apple(ns, "green", "green", "small", 1)
	appleRefused := appleDenial(fmt.Sprintf("policy violation: ConfigMap %s/cel-apples validations.namespaceColor: MyApples in %s are red", ns, ns))
	eventuallyDenied(t, func() error { return createPod(ctx, badPod, opts) }, podRefused)
	eventuallyDenied(t, func() error { return createApple(ctx, badApple, opts) }, appleRefused)

	admitWithoutAPICalls(t, "dry-run Pod and MyApple creates under CEL policies, half refused", func(i int64) (string, error) {
		switch i % 4 {
		case 0:
			return "", createPod(ctx, goodPod, opts)
		case 1:
			return podRefused, createPod(ctx, badPod, opts)
		case 2:
			return "", createApple(ctx, goodApple, opts)
		default:
			return appleRefused, createApple(ctx, badApple, opts)
		}
	})
}

// The same with a candidate beside the policy (a ConfigMap's
// candidate.yaml that also forbids latest): judging it, counting its
// outcomes and tallying them for the replica's status costs no API call
// either, and never changes a verdict.
func TestNoAPICallsWhileAdmittingWithCandidate(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	cm := devenv.PolicyConfigMap(ns, "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n")
	cm.Data[policy.ConfigMapCandidateKey] = "pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest]\n"
	if _, err := env.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := metav1.CreateOptions{DryRun: dryRun}
	good := pod(ns, "good", nil, "registry.example.com/web:1.0")
	latest := pod(ns, "latest", nil, "registry.example.com/web:latest")
	foreign := pod(ns, "foreign", nil, "docker.io/library/nginx:1.27")
	refused := podDenial(fmt.Sprintf("policy violation: ConfigMap %s/registries pods.allowedRegistries spec.containers[0].image: "+
		"image \"docker.io/library/nginx:1.27\" resolves to docker.io/library/nginx:1.27, which is not under an allowed registry (registry.example.com/)", ns))
	eventuallyDenied(t, func() error { return createPod(ctx, foreign, opts) }, refused)
	source := map[string]string{"source": "ConfigMap " + ns + "/registries"}
	wouldDeny := map[string]string{"source": source["source"], "outcome": v1alpha1.OutcomeWouldDeny}
	judged0 := promtest.Sum(t, crmetrics.Registry, webhook.MetricCandidateEvaluations, source)
	denied0 := promtest.Sum(t, crmetrics.Registry, webhook.MetricCandidateEvaluations, wouldDeny)

	admitWithoutAPICalls(t, "dry-run Pod creates with a candidate beside the policy, a third refused, a third the candidate would deny", func(i int64) (string, error) {
		switch i % 3 {
		case 0:
			return "", createPod(ctx, good, opts)
		case 1:
			return "", createPod(ctx, latest, opts)
		default:
			return refused, createPod(ctx, foreign, opts)
		}
	})
	judged := promtest.Sum(t, crmetrics.Registry, webhook.MetricCandidateEvaluations, source) - judged0
	denied := promtest.Sum(t, crmetrics.Registry, webhook.MetricCandidateEvaluations, wouldDeny) - denied0
	if judged != 1000 || denied != 333 {
		t.Errorf("the candidate judged %v admissions and would deny %v, want 1000 and 333", judged, denied)
	}
}

// admitWithoutAPICalls runs 1,000 admissions, 16 at a time, each the i-th
// attempt, which returns its error and the one wanted ("" for admitted),
// and asserts that every verdict was right and that the webhook made no
// request to the API server meanwhile.
func admitWithoutAPICalls(t *testing.T, what string, attempt func(i int64) (want string, err error)) {
	t.Helper()
	const admissions, workers = 1000, 16
	var (
		next, wrong atomic.Int64
		mu          sync.Mutex
		firstWrong  string
		wg          sync.WaitGroup
	)
	mark := env.requests.Len()
	// The count means something only if the webhook's clients go through
	// the counting transport: their initial lists and watches did.
	if mark == 0 {
		t.Fatal("the request log saw none of the webhook's requests, not even its informers' lists: it counts nothing")
	}
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= admissions {
					return
				}
				want, err := attempt(i)
				if got := errString(err); got != want {
					wrong.Add(1)
					mu.Lock()
					if firstWrong == "" {
						firstWrong = fmt.Sprintf("admission %d: got %q, want %q", i, got, want)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	made := env.requests.Since(mark)

	t.Logf("%d admissions (%s, through kube-apiserver, %d concurrent) in %s: %.0f admissions/s",
		admissions, what, workers, elapsed.Round(time.Millisecond), float64(admissions)/elapsed.Seconds())
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of %d admissions got the wrong answer; first: %s", n, admissions, firstWrong)
	}
	// A watch the informers renew on their own schedule (every 5 to 10
	// minutes) is not a request made to answer an admission, nor is the
	// bookkeeping the cache does in the background, whenever it gets to it:
	// an Event or a status for a policy of an earlier test, a lease
	// renewal, the replica's heartbeat Lease (listed, or created again when
	// an earlier test's replica of the same host name deleted it on its way
	// out). They are few whatever the load; one per admission would be
	// a thousand. Anything else is a call made to answer an admission.
	var renewals, bookkeeping, calls []string
	for _, r := range made {
		switch {
		case isRenewal(r):
			renewals = append(renewals, r)
		case isBookkeeping(r):
			bookkeeping = append(bookkeeping, r)
		default:
			calls = append(calls, r)
		}
	}
	if len(renewals) > 0 {
		t.Logf("informer watches renewed during the run: %q", renewals)
	}
	if len(bookkeeping) > 0 {
		t.Logf("background writes during the run: %q", bookkeeping)
	}
	if len(calls) > 0 || len(renewals) > 5 || len(bookkeeping) > 20 {
		t.Errorf("the webhook made %d requests to the API server while serving %d admissions, want 0:\n%s",
			len(made), admissions, strings.Join(made, "\n"))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
