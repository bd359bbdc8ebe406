package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// auditLoadResult is direct admission load on policy-webhook with no audit
// sweep running, and the same load while sweeps run back to back (the
// replica is the elected one: it sweeps and answers).
type auditLoadResult struct {
	Concurrency int        `json:"concurrency"`
	Quiet       loadResult `json:"quiet"`
	Sweeping    loadResult `json:"sweeping"`
	// Sweeps counts the sweeps finished (or cancelled) in the sweeping
	// windows, and in the quiet ones (the periodic sweep may fall in one).
	Sweeps      float64 `json:"sweeps"`
	QuietSweeps float64 `json:"quietSweeps"`
	// ObjectsPerSweep is the Pods and MyApples each sweep judged.
	ObjectsPerSweep float64 `json:"objectsPerSweep"`
}

const (
	auditLoadNamespace = "loadgen-audit"
	auditLoadRounds    = 3
)

// measureAuditLoad alternates quiet and sweeping windows of direct
// allowed-Pod admissions. Before a sweeping window an Audit policy for
// MyApples is edited: the edit makes the elected replica sweep every
// existing Pod and MyApple (after its 2 s debounce), while the Pods
// admitted are not judged by it.
func measureAuditLoad(ctx context.Context, f benchFlags, c clients, s *server, tlsConfig *tls.Config) (auditLoadResult, error) {
	res := auditLoadResult{Concurrency: 8}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: auditLoadNamespace}}
	if err := ignoreExists(c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})); err != nil {
		return res, fmt.Errorf("creating namespace %s: %w", auditLoadNamespace, err)
	}
	spec := func(i int) string {
		return fmt.Sprintf("enforcement: Audit\nmatch:\n  kinds: [MyApple]\nmyApples:\n  allowedColors: [red, color-%d]\n", i)
	}
	cms := c.kube.CoreV1().ConfigMaps(webhook.DefaultPolicyNamespace)
	cm, err := cms.Create(ctx, devenv.PolicyConfigMap(webhook.DefaultPolicyNamespace, "loadgen-audit", spec(0)), metav1.CreateOptions{})
	if err != nil {
		return res, fmt.Errorf("creating the audited policy: %w", err)
	}
	defer func() { _ = cms.Delete(context.WithoutCancel(ctx), cm.Name, metav1.DeleteOptions{}) }()

	body, err := workload.CreateReview(workload.DeploymentPod(false, f.containers), "loadgen-audit")
	if err != nil {
		return res, err
	}
	// Windows long enough to hold whole sweeps.
	lspec := loadSpec{concurrency: res.Concurrency, warmup: 500 * time.Millisecond, duration: 5 * time.Second}
	client := directClient(tlsConfig, lspec.concurrency)
	defer client.CloseIdleConnections()
	attempts := make([]attempt, lspec.concurrency)
	for i := range attempts {
		attempts[i] = postReview(client, s.url+"/validate-pods", body, "loadgen-audit", true)
	}
	sweeps := func() (float64, error) { return s.metric(ctx, "policy_webhook_audit_sweeps_total") }
	judged := func() (float64, error) { return s.metric(ctx, "policy_webhook_audit_objects_judged_total") }
	judgedBefore, err := judged()
	if err != nil {
		return res, err
	}
	sweepsBefore, err := sweeps()
	if err != nil {
		return res, err
	}

	// settled waits until no sweep has finished for 4 s (the debounce is
	// 2 s): the sweeps an edit started are over.
	settled := func() error {
		last, err := sweeps()
		if err != nil {
			return err
		}
		for quietSince := time.Now(); time.Since(quietSince) < 4*time.Second; {
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return err
			}
			n, err := sweeps()
			if err != nil {
				return err
			}
			if n != last {
				last, quietSince = n, time.Now()
			}
		}
		return nil
	}

	var quiet, busy []window
	edit := 0
	for range auditLoadRounds {
		if err := settled(); err != nil {
			return res, err
		}
		before, err := sweeps()
		if err != nil {
			return res, err
		}
		quiet = append(quiet, closedLoop(ctx, lspec, attempts, nil))
		mid, err := sweeps()
		if err != nil {
			return res, err
		}
		res.QuietSweeps += mid - before

		// One edit per round: a policy change cancels the sweep in
		// flight, so edits closer than a sweep would measure sweeps cut
		// short. The window starts once the debounce has passed.
		edit++
		cm.Data[policy.ConfigMapDataKey] = spec(edit)
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return res, fmt.Errorf("editing the audited policy: %w", err)
		}
		if err := sleepCtx(ctx, 2200*time.Millisecond); err != nil {
			return res, err
		}
		busy = append(busy, closedLoop(ctx, lspec, attempts, nil))
		after, err := sweeps()
		if err != nil {
			return res, err
		}
		res.Sweeps += after - mid
	}
	res.Quiet, res.Sweeping = summarize(quiet), summarize(busy)
	judgedAfter, err := judged()
	if err != nil {
		return res, err
	}
	sweepsAfter, err := sweeps()
	if err != nil {
		return res, err
	}
	if n := sweepsAfter - sweepsBefore; n > 0 {
		res.ObjectsPerSweep = (judgedAfter - judgedBefore) / n
	}
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
