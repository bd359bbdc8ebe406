package devenv_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// TestControllerManager proves the local control plane's
// kube-controller-manager does what a cluster's does for the Pod
// controllers: a Deployment of 3 replicas, created through the API server,
// becomes a ReplicaSet and 3 Pods within 30 s, Pending (no scheduler), each
// given the namespace's default ServiceAccount by the admission plugin that
// is on as in a cluster; a Job gets its Pod; and deleting the Deployment
// deletes its ReplicaSet and Pods (the garbage collector).
func TestControllerManager(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: testr.New(t), ControllerManager: true})
	ctx := t.Context()
	cs := cp.Client
	// A namespace created after kube-controller-manager: EnsureNamespace
	// returns once the serviceaccount controller has given it the
	// ServiceAccount "default" that Pods in it need.
	const ns = "kcm"
	if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}

	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}
	deploy, err := cs.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Deployment %s/web: %v", ns, err)
	}
	var pods []corev1.Pod
	took := testenv.Eventually(t, 30*time.Second, "Deployment kcm/web has 3 Pods", func() error {
		pods, err = listPods(t, cs, ns, "app=web")
		if err != nil {
			return err
		}
		if len(pods) != 3 {
			return fmt.Errorf("%d Pods", len(pods))
		}
		return nil
	})
	t.Logf("3 Pods %s after the Deployment was created", took.Round(time.Millisecond))

	rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatalf("listing ReplicaSets: %v", err)
	}
	if len(rss.Items) != 1 || !ownedBy(rss.Items[0].OwnerReferences, "Deployment", deploy.UID) {
		t.Fatalf("want one ReplicaSet owned by the Deployment, got %+v", rss.Items)
	}
	rs := rss.Items[0]
	for _, p := range pods {
		if !ownedBy(p.OwnerReferences, "ReplicaSet", rs.UID) {
			t.Errorf("Pod %s is not owned by ReplicaSet %s: %+v", p.Name, rs.Name, p.OwnerReferences)
		}
		if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
			t.Errorf("Pod %s: phase %q on node %q, want Pending on none (no scheduler)", p.Name, p.Status.Phase, p.Spec.NodeName)
		}
		// The ServiceAccount admission plugin sets the account and mounts
		// its token, as in a cluster.
		if p.Spec.ServiceAccountName != "default" || !hasTokenVolume(p) {
			t.Errorf("Pod %s: serviceAccountName %q, volumes %v: the ServiceAccount admission plugin did not run",
				p.Name, p.Spec.ServiceAccountName, p.Spec.Volumes)
		}
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec:       batchv1.JobSpec{Template: podTemplate(map[string]string{"app": "once"})},
	}
	job.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Job %s/once: %v", ns, err)
	}
	testenv.Eventually(t, 30*time.Second, "Job kcm/once has its Pod", func() error {
		pods, err := listPods(t, cs, ns, "app=once")
		if err == nil && len(pods) != 1 {
			err = fmt.Errorf("%d Pods", len(pods))
		}
		return err
	})

	// Deleted in the background, as kubectl does: the garbage collector
	// deletes the ReplicaSet, then its Pods.
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, deploy.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting Deployment %s/web: %v", ns, err)
	}
	testenv.Eventually(t, 30*time.Second, "the Deployment's Pods are gone", func() error {
		pods, err := listPods(t, cs, ns, "app=web")
		if err == nil && len(pods) != 0 {
			err = fmt.Errorf("%d Pods left", len(pods))
		}
		return err
	})
}

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/app:1.0",
		}}},
	}
}

func listPods(t *testing.T, cs kubernetes.Interface, ns, selector string) ([]corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing Pods %s in %s: %w", selector, ns, err)
	}
	return list.Items, nil
}

func ownedBy(refs []metav1.OwnerReference, kind string, uid types.UID) bool {
	for _, r := range refs {
		if r.Kind == kind && r.UID == uid && ptr.Deref(r.Controller, false) {
			return true
		}
	}
	return false
}

func hasTokenVolume(p corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil {
			return true
		}
	}
	return false
}
