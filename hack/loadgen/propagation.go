package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
)

const propagationNamespace = "propagation"

// propagationResult is the time from an edit's Update call returning (the
// API server has accepted and stored it) to the first admission that
// enforces the edited version.
type propagationResult struct {
	Edits int           `json:"edits"`
	P50   time.Duration `json:"p50Ns"`
	P99   time.Duration `json:"p99Ns"`
	Max   time.Duration `json:"maxNs"`
}

// builtinSpec requires the label gen-i with the built-in rule.
func builtinSpec(i int) string { return fmt.Sprintf("pods:\n  requiredLabels: [gen-%d]\n", i) }

// celSpec requires it with a CEL validation (and a variable), so that the
// edit is in force only once its expressions are compiled.
func celSpec(i int) string {
	return fmt.Sprintf(`variables:
- name: labels
  expression: "object.metadata.?labels.orValue({})"
validations:
- name: generation
  expression: "'gen-%d' in variables.labels"
  message: "label gen-%d is required"
`, i, i)
}

// measurePropagation edits one policy ConfigMap edits times, its version i
// written by spec(i), which requires the label gen-i; the probe Pod
// carries only gen-i, so it is refused under every earlier version and
// admitted once edit i is in force. The probe goes straight to the
// webhook, back to back, so the figure is the webhook's and not the API
// server's.
func measurePropagation(ctx context.Context, c clients, s *server, client *http.Client, edits int, name string, spec func(int) string) (propagationResult, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: propagationNamespace}}
	if err := ignoreExists(c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})); err != nil {
		return propagationResult{}, fmt.Errorf("creating namespace %s: %w", propagationNamespace, err)
	}
	cms := c.kube.CoreV1().ConfigMaps(propagationNamespace)
	cm, err := cms.Create(ctx, devenv.PolicyConfigMap(propagationNamespace, name, spec(0)), metav1.CreateOptions{})
	if err != nil {
		return propagationResult{}, fmt.Errorf("creating the edited policy: %w", err)
	}
	var times []time.Duration
	for i := 1; i <= edits; i++ {
		pod := workload.DeploymentPod(false, 2)
		pod.Namespace = propagationNamespace
		pod.Labels = map[string]string{fmt.Sprintf("gen-%d", i): "x"}
		uid := fmt.Sprintf("propagation-%s-%d", name, i)
		body, err := workload.CreateReview(pod, uid)
		if err != nil {
			return propagationResult{}, err
		}
		probe := postReview(client, s.url+"/validate-pods", body, uid, true)
		// Before the edit the probe must be refused, or the figure
		// would measure nothing; before the first, once the policy's
		// first version is in force.
		for first := time.Now(); ; {
			ok, err := probe(ctx)
			if err != nil {
				return propagationResult{}, fmt.Errorf("edit %d: probing before the edit: %w", i, err)
			}
			if !ok {
				break
			}
			if i > 1 || time.Since(first) > 10*time.Second {
				return propagationResult{}, fmt.Errorf("edit %d: the probe was admitted before the edit", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cm.Data[policy.ConfigMapDataKey] = spec(i)
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return propagationResult{}, fmt.Errorf("edit %d of the policy: %w", i, err)
		}
		accepted := time.Now()
		deadline := accepted.Add(10 * time.Second)
		for {
			ok, err := probe(ctx)
			if err != nil {
				return propagationResult{}, fmt.Errorf("edit %d: probing: %w", i, err)
			}
			if ok {
				times = append(times, time.Since(accepted))
				break
			}
			if time.Now().After(deadline) {
				return propagationResult{}, fmt.Errorf("edit %d not enforced 10 s after the API server accepted it", i)
			}
		}
	}
	if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return propagationResult{}, fmt.Errorf("deleting the edited policy: %w", err)
	}
	slices.Sort(times)
	q := func(p float64) time.Duration { return times[min(len(times)-1, int(p*float64(len(times))))] }
	return propagationResult{Edits: edits, P50: q(0.5), P99: q(0.99), Max: times[len(times)-1]}, nil
}
