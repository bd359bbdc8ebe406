package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// The rollout stage: Deployments created through the API server become
// ReplicaSets and Pods through kube-controller-manager, each admission
// judged when the webhook is registered.
const (
	rolloutDeployments = 200
	rolloutReplicas    = 5
	rolloutPolicies    = 20 // in force, the registry policy among them
	rolloutTimeout     = 10 * time.Minute
)

// rolloutPolicy is a policy platform teams write, which the workload's
// Pods pass: every rule reads the template or the Pod in full.
func rolloutPolicy(i int) string {
	return fmt.Sprintf("pods:\n  allowedRegistries: [registry.example.com/, ghcr.io/acme/]\n  disallowedTags: [latest, dev-%d]\n"+
		"  forbidPrivileged: true\n  forbidHostNamespaces: true\n  forbidHostPath: true\n  requireRunAsNonRoot: true\n"+
		"  requireResourceLimits: [cpu, memory]\n", i)
}

// rolloutRow is one rollout: how long until every Pod existed.
type rolloutRow struct {
	Webhook     string        `json:"webhook"`
	Deployments int           `json:"deployments"`
	Pods        int           `json:"pods"`
	Took        time.Duration `json:"tookNs"`
}

// measureRollout creates rolloutDeployments Deployments of rolloutReplicas
// replicas, with the webhook unregistered and registered in turn (rounds
// times, each in a namespace of its own), and times until all their Pods
// exist.
func measureRollout(ctx context.Context, c clients, ours *server, caPEM []byte, rounds int, logf func(string, ...any)) ([]rolloutRow, error) {
	cms := c.kube.CoreV1().ConfigMaps(webhook.DefaultPolicyNamespace)
	for i := 1; i < rolloutPolicies; i++ {
		name := fmt.Sprintf("loadgen-rollout-%d", i)
		if err := ignoreExists(cms.Create(ctx, devenv.PolicyConfigMap(webhook.DefaultPolicyNamespace, name, rolloutPolicy(i)), metav1.CreateOptions{})); err != nil {
			return nil, fmt.Errorf("creating policy %s: %w", name, err)
		}
		defer func() { _ = cms.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{}) }()
	}
	var rows []rolloutRow
	for round := range rounds {
		for _, s := range []*server{nil, ours} {
			name := "none"
			if s != nil {
				name = s.name
			}
			if err := c.route(ctx, s, caPEM); err != nil {
				return rows, err
			}
			ns := fmt.Sprintf("rollout-%s-%d", name, round)
			took, err := rollout(ctx, c, ns)
			if err != nil {
				return rows, fmt.Errorf("rollout with webhook %s: %w", name, err)
			}
			logf("rollout webhook=%s: %d Deployments × %d replicas: all Pods in %s", name, rolloutDeployments, rolloutReplicas, took.Round(time.Millisecond))
			rows = append(rows, rolloutRow{Webhook: name, Deployments: rolloutDeployments, Pods: rolloutDeployments * rolloutReplicas, Took: took})
		}
	}
	return rows, nil
}

// rollout creates the Deployments in a new namespace and returns the time
// from the first create until the last of their Pods exists.
func rollout(ctx context.Context, c clients, ns string) (time.Duration, error) {
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: workload.ServiceAccount}}
	if _, err := c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, workload.ServiceAccount, err)
	}
	pod := workload.DeploymentPod(false, 2)
	pod.Namespace = ns
	start := time.Now()
	_, err := createMany(ctx, rolloutDeployments, 8, func(ctx context.Context, i int) error {
		d := workload.Deployment(fmt.Sprintf("web-%d", i), pod, rolloutReplicas)
		d.Spec.Selector.MatchLabels["deployment"] = d.Name
		d.Spec.Template.Labels = map[string]string{"app": pod.Labels["app"], "deployment": d.Name}
		_, err := c.kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("creating the Deployments: %w", err)
	}
	want := rolloutDeployments * rolloutReplicas
	have := 0
	err = devenv.PollEvery(ctx, 100*time.Millisecond, rolloutTimeout, func(ctx context.Context) error {
		list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		if have = len(list.Items); have < want {
			return fmt.Errorf("%d of %d Pods", have, want)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for %d Pods (%d exist): %w", want, have, err)
	}
	return time.Since(start), nil
}
