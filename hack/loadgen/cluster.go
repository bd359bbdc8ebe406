package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/webhook"
)

var myApplesGVR = schema.GroupVersionResource{Group: "stable.example.com", Version: "v1", Resource: "myapples"}

// clients are the harness's own, with client-side rate limiting off, so
// the API server and the webhook are what limit the rate.
type clients struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

// seed creates what every run needs: the policy namespace, the load
// namespace with its ServiceAccount, and the registry policy ConfigMap.
func (c clients) seed(ctx context.Context) error {
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: webhook.DefaultPolicyNamespace}},
		{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace, Labels: map[string]string{"env": "prod"}}},
	} {
		if err := ignoreExists(c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
		}
	}
	// The ServiceAccount admission plugin refuses Pods whose account does
	// not exist, before any webhook is called.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}
	if err := ignoreExists(c.kube.CoreV1().ServiceAccounts(loadNamespace).Create(ctx, sa, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", loadNamespace, serviceAccount, err)
	}
	cm := devenv.PolicyConfigMap(webhook.DefaultPolicyNamespace, registryPolicyCM, registryPolicy)
	if err := ignoreExists(c.kube.CoreV1().ConfigMaps(webhook.DefaultPolicyNamespace).Create(ctx, cm, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("creating the registry policy: %w", err)
	}
	return nil
}

// celPolicyCM holds workload.CELPolicy during the API-server stage.
const celPolicyCM = "loadgen-cel"

func ignoreExists[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// route points the API server's Pod admissions at s (nil: no webhook) and
// waits until a dry-run create of the denied Pod shows the change.
func (c clients) route(ctx context.Context, s *server, caPEM []byte) error {
	if s == nil {
		if err := devenv.Unregister(ctx, c.kube, devenv.ConfigurationName); err != nil {
			return err
		}
	} else if err := devenv.Register(ctx, c.kube, devenv.WebhookConfiguration(s.url, caPEM, webhook.DefaultPolicyNamespace)); err != nil {
		return err
	}
	target := "no webhook"
	if s != nil {
		target = s.name
	}
	pod := workload.DeploymentPod(true, 2)
	err := devenv.PollEvery(ctx, 50*time.Millisecond, 30*time.Second, func(ctx context.Context) error {
		_, err := c.kube.CoreV1().Pods(loadNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		denied := err != nil && strings.Contains(err.Error(), "denied the request")
		switch {
		case err != nil && !denied && ctx.Err() == nil && !apierrors.IsInternalError(err):
			return devenv.Final(fmt.Errorf("dry-run creating the denied Pod: %w", err))
		case denied == (s != nil):
			return nil
		case err != nil:
			return err
		default:
			return errors.New("the denied Pod is still admitted")
		}
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server to route Pods to %s: %w", target, err)
	}
	return nil
}

// dryRunCreate is the apiserver mode's attempt: a dry-run create of pod,
// which is admitted unless wantDenied.
func (c clients) dryRunCreate(pod *corev1.Pod, wantDenied bool) attempt {
	pods := c.kube.CoreV1().Pods(pod.Namespace)
	opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	return func(ctx context.Context) (bool, error) {
		_, err := pods.Create(ctx, pod, opts)
		if err == nil {
			return !wantDenied, nil
		}
		if strings.Contains(err.Error(), "denied the request") {
			return wantDenied, nil
		}
		return false, err
	}
}

// createMany runs create(i) for i in [0, n) on workers goroutines. A
// create the API server failed for a passing reason (a webhook call that
// timed out on a loaded machine, throttling) is tried again, up to 3
// times; the retries are counted and the first reason kept, so that the
// report shows them. It returns the first lasting error.
func createMany(ctx context.Context, n, workers int, create func(ctx context.Context, i int) error) (fillStats, error) {
	var next, retries atomic.Int64
	var firstRetry atomic.Value
	var wg sync.WaitGroup
	errs := make([]error, workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				var err error
				for try := 0; ; try++ {
					err = create(ctx, i)
					if err == nil || apierrors.IsAlreadyExists(err) || try == 3 || !passing(err) || ctx.Err() != nil {
						break
					}
					retries.Add(1)
					firstRetry.CompareAndSwap(nil, err.Error())
				}
				if err != nil && !apierrors.IsAlreadyExists(err) {
					if ctx.Err() == nil {
						errs[w] = err
					}
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	st := fillStats{Retries: int(retries.Load())}
	if r, ok := firstRetry.Load().(string); ok {
		st.FirstRetryReason = r
	}
	return st, errors.Join(errs...)
}

// fillStats is how filling the cluster went.
type fillStats struct {
	Retries          int    `json:"retries"`
	FirstRetryReason string `json:"firstRetryReason,omitempty"`
}

func passing(err error) bool {
	return apierrors.IsInternalError(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err)
}

func myApple(namespace, name string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1", "kind": "MyApple",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"color": "red", "size": "small", "quantity": quantity},
	}}
}
