package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// podControllerEnv is a control plane of its own with kube-controller-manager,
// so that Deployments become ReplicaSets become Pods, each judged by a
// webhook that also audits.
type podControllerEnv struct {
	cp     *devenv.ControlPlane
	client kubernetes.Interface
	dyn    dynamic.Interface
	reg    *prometheus.Registry
}

func startPodControllerEnv(t *testing.T) *podControllerEnv {
	t.Helper()
	ctx := testCtx(t)
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: env.log.WithName("podcontrollers"), ControllerManager: true,
		ExtraCRDDirs: []string{filepath.Join(root, "manifests", "components", "openreports")}})
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	wh := inprocess.StartForTest(t, inprocess.Options{
		RestConfig: cp.Config, Log: env.log.WithName("podcontrollers-webhook"), MetricsRegistry: reg, AuditInterval: time.Second,
	})
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		t.Fatal(err)
	}
	if err := devenv.WaitCalled(ctx, cp.Client, wh.PolicyNamespace); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &podControllerEnv{cp: cp, client: cp.Client, dyn: dyn, reg: reg}
}

// namespace creates a namespace and waits for its default ServiceAccount,
// which the ServiceAccount admission plugin wants of every Pod.
func (e *podControllerEnv) namespace(t *testing.T, name string) string {
	t.Helper()
	if err := e.cp.EnsureNamespace(testCtx(t), name, nil); err != nil {
		t.Fatal(err)
	}
	return name
}

func (e *podControllerEnv) policy(t *testing.T, ns, name, spec string) {
	t.Helper()
	cm := devenv.PolicyConfigMap(ns, name, spec)
	if _, err := e.client.CoreV1().ConfigMaps(ns).Create(testCtx(t), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating policy %s/%s: %v", ns, name, err)
	}
}

// podAdmissions is how many Pod CREATEs the webhook judged with verdict.
func (e *podControllerEnv) podAdmissions(t *testing.T, verdict string) float64 {
	t.Helper()
	return promtest.Sum(t, e.reg, "policy_webhook_admissions_total", map[string]string{"kind": "Pod", "operation": "CREATE", "verdict": verdict})
}

func template(labels map[string]string, images ...string) corev1.PodTemplateSpec {
	p := pod("", "", labels, images...)
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: p.Spec}
}

func deployment(ns, name string, replicas int32, images ...string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: template(labels, images...),
		},
	}
}

// podControllerDenial is what a user sees when the webhook refuses a Pod
// controller for its template.
func podControllerDenial(kind, ns, name, message string) string {
	return denial(devenv.PodControllersWebhook, fmt.Sprintf("%s %s/%s: its Pod template breaks policy: %s", kind, ns, name, message))
}

// TestPodControllers drives every Pod controller kind through the API
// server with kube-controller-manager running: refused for a bad template
// with its field path, compliant ones become Pods the webhook judges, an
// old Deployment can still be scaled, paused and deleted, podControllers: []
// leaves controllers to their Pods, and the audit reports a controller.
func TestPodControllers(t *testing.T) {
	e := startPodControllerEnv(t)
	ctx := testCtx(t)
	ns := e.namespace(t, "team-b")
	const bad, good = "evil.io/nginx:1", "registry.example.com/nginx:1"
	registries := func(path, image string) string {
		return fmt.Sprintf(`policy violation: ConfigMap team-b/registries pods.allowedRegistries %s: image %q resolves to %s, which is not under an allowed registry (registry.example.com/)`, path, image, image)
	}

	// Created before any policy: the old Deployment of the UPDATE cases.
	old := deployment(ns, "old", 1, bad)
	if _, err := e.client.AppsV1().Deployments(ns).Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.policy(t, ns, "registries", "match:\n  kinds: [Pod]\npods:\n  allowedRegistries: [registry.example.com/]\n")
	e.policy(t, ns, "probes", "match:\n  kinds: [Pod]\n  objectSelector: {matchLabels: {tier: frontend}}\n"+
		"validations:\n- name: readinessProbe\n  expression: \"object.spec.containers.all(c, has(c.readinessProbe))\"\n"+
		"  message: every container needs a readinessProbe\n  fieldPath: spec.containers\n")

	t.Run("each kind with a violating template is denied", func(t *testing.T) {
		meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns} }
		tmpl := template(map[string]string{"app": "x"}, good, bad)
		job := batchv1.JobSpec{Template: tmpl}
		job.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		path := "spec.template.spec.containers[1].image"
		for _, tc := range []struct {
			kind, name, path string
			create           func(context.Context) error
		}{
			{"Deployment", "d", path, func(ctx context.Context) error {
				_, err := e.client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "d", 1, good, bad), metav1.CreateOptions{})
				return err
			}},
			{"ReplicaSet", "rs", path, func(ctx context.Context) error {
				_, err := e.client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: meta("rs"),
					Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Template: tmpl}}, metav1.CreateOptions{})
				return err
			}},
			{"StatefulSet", "sts", path, func(ctx context.Context) error {
				_, err := e.client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta("sts"),
					Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Template: tmpl}}, metav1.CreateOptions{})
				return err
			}},
			{"DaemonSet", "ds", path, func(ctx context.Context) error {
				_, err := e.client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: meta("ds"),
					Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Template: tmpl}}, metav1.CreateOptions{})
				return err
			}},
			{"Job", "job", path, func(ctx context.Context) error {
				_, err := e.client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: meta("job"), Spec: job}, metav1.CreateOptions{})
				return err
			}},
			{"CronJob", "cron", "spec.jobTemplate.spec.template.spec.containers[1].image", func(ctx context.Context) error {
				_, err := e.client.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: meta("cron"),
					Spec: batchv1.CronJobSpec{Schedule: "@hourly", JobTemplate: batchv1.JobTemplateSpec{Spec: job}}}, metav1.CreateOptions{})
				return err
			}},
			{"ReplicationController", "rc", path, func(ctx context.Context) error {
				_, err := e.client.CoreV1().ReplicationControllers(ns).Create(ctx, &corev1.ReplicationController{ObjectMeta: meta("rc"),
					Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"app": "x"}, Template: &tmpl}}, metav1.CreateOptions{})
				return err
			}},
		} {
			wantDenied(t, tc.create(ctx), podControllerDenial(tc.kind, ns, tc.name, registries(tc.path, bad)))
		}
		// A CEL validation written for Pods judges a Deployment's template.
		d := deployment(ns, "frontend", 1, good)
		d.Spec.Template.Labels["tier"] = "frontend"
		_, err := e.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		wantDenied(t, err, podControllerDenial("Deployment", ns, "frontend",
			"policy violation: ConfigMap team-b/probes validations.readinessProbe spec.template.spec.containers: every container needs a readinessProbe"))
	})

	t.Run("a compliant Deployment becomes Pods the webhook judges", func(t *testing.T) {
		before := e.podAdmissions(t, "allowed")
		if _, err := e.client.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web", 3, good), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		took := testenv.Eventually(t, 30*time.Second, "3 Pods of Deployment web", func() error {
			pods, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(pods.Items) != 3 {
				return fmt.Errorf("%d Pods", len(pods.Items))
			}
			return nil
		})
		if n := e.podAdmissions(t, "allowed") - before; n < 3 {
			t.Errorf("the webhook admitted %v Pods, want the Deployment's 3", n)
		}
		t.Logf("3 Pods exist %s after the Deployment was created", took.Round(time.Millisecond))
	})

	t.Run("an old Deployment can be scaled, paused and deleted", func(t *testing.T) {
		deployments := e.client.AppsV1().Deployments(ns)
		// kube-controller-manager writes the Deployment too (its revision
		// annotation): an update that lost that race is tried again.
		update := func(edit func(*appsv1.Deployment)) error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				d, err := deployments.Get(ctx, "old", metav1.GetOptions{})
				if err != nil {
					return err
				}
				edit(d)
				_, err = deployments.Update(ctx, d, metav1.UpdateOptions{})
				return err
			})
		}
		for _, replicas := range []int32{5, 1} {
			wantAdmitted(t, update(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(replicas) }))
		}
		wantAdmitted(t, update(func(d *appsv1.Deployment) { d.Spec.Paused = true }))
		wantAdmitted(t, update(func(d *appsv1.Deployment) { d.Labels = map[string]string{"owner": "alice"} }))
		err := update(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "quay.io/other:1" })
		wantDenied(t, err, podControllerDenial("Deployment", ns, "old", registries("spec.template.spec.containers[0].image", "quay.io/other:1")))
		wantAdmitted(t, update(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = good }))
		wantAdmitted(t, deployments.Delete(ctx, "old", metav1.DeleteOptions{}))
	})

	t.Run("podControllers: [] leaves Deployments to their Pods", func(t *testing.T) {
		other := e.namespace(t, "team-c")
		e.policy(t, other, "registries", "match:\n  kinds: [Pod]\n  podControllers: []\npods:\n  allowedRegistries: [registry.example.com/]\n")
		denied := e.podAdmissions(t, "denied")
		// The policy is in force once a Pod is refused.
		eventuallyRefused(t, func() error {
			_, err := e.client.CoreV1().Pods(other).Create(ctx, pod(other, "probe", nil, bad), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		})
		if _, err := e.client.AppsV1().Deployments(other).Create(ctx, deployment(other, "web", 2, bad), metav1.CreateOptions{}); err != nil {
			t.Fatalf("the Deployment was refused: %v", err)
		}
		testenv.Eventually(t, 30*time.Second, "the ReplicaSet's Pods refused", func() error {
			if n := e.podAdmissions(t, "denied") - denied; n < 2 {
				return fmt.Errorf("%v Pods refused", n)
			}
			return nil
		})
		pods, err := e.client.CoreV1().Pods(other).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) != 0 {
			t.Errorf("Pods %v (%v): want none admitted", pods, err)
		}
	})

	t.Run("the audit reports a violating Deployment", func(t *testing.T) {
		// old was deleted; this one was admitted before the policy that judges its namespace.
		audited := e.namespace(t, "team-d")
		if _, err := e.client.AppsV1().Deployments(audited).Create(ctx, deployment(audited, "legacy", 0, bad), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.policy(t, audited, "registries", "enforcement: Audit\nmatch:\n  kinds: [Pod]\npods:\n  allowedRegistries: [registry.example.com/]\n")
		reports := schema.GroupVersionResource{Group: "openreports.io", Version: "v1alpha1", Resource: "reports"}
		testenv.Eventually(t, 30*time.Second, "a Report result for Deployment legacy", func() error {
			list, err := e.dyn.Resource(reports).Namespace(audited).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, r := range list.Items {
				results, _ := r.Object["results"].([]any)
				for _, res := range results {
					res := res.(map[string]any)
					for _, ref := range res["resources"].([]any) {
						ref := ref.(map[string]any)
						if ref["kind"] == "Deployment" && ref["name"] == "legacy" && ref["apiVersion"] == "apps/v1" &&
							strings.Contains(fmt.Sprint(res["properties"]), "spec.template.spec.containers[0].image") {
							return nil
						}
					}
				}
			}
			return errors.New("no result for Deployment legacy yet")
		})
	})
}

// eventuallyRefused waits until attempt is refused by the Pods' webhook.
func eventuallyRefused(t *testing.T, attempt func() error) {
	t.Helper()
	eventually(t, "a refusal by the webhook", func() error {
		err := attempt()
		switch {
		case err == nil:
			return errors.New("still admitted")
		case !strings.Contains(err.Error(), "denied the request"):
			return fmt.Errorf("refused, not by the webhook: %w", err)
		}
		return nil
	})
}
