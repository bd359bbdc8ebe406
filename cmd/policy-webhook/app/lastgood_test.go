package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// applyRBAC creates the install's ServiceAccount and RBAC
// (manifests/rbac) and returns cfg impersonating that ServiceAccount, so
// that replicas run with exactly what the install grants them.
func applyRBAC(t *testing.T, cfg *rest.Config) *rest.Config {
	t.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "manifests", "rbac", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &u.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		gvk := u.GroupVersionKind()
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"}
		if _, err := dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s from %s: %v", u.GetName(), f, err)
		}
	}
	sa := rest.CopyConfig(cfg)
	sa.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + replicaPolicyNS + ":policy-webhook",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + replicaPolicyNS, "system:authenticated"},
	}
	return sa
}

// admitPod asks a replica directly whether a Pod of one container running
// image may be created in namespace, and returns its answer.
func (r *replica) admitPod(t *testing.T, namespace, image string) *admissionv1.AdmissionResponse {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	return r.admit(t, webhook.PathPods, &admissionv1.AdmissionRequest{
		Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:     pod.Name, Namespace: namespace, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Object: pod},
	})
}

// admitMyApple asks a replica whether a MyApple may be created.
func (r *replica) admitMyApple(t *testing.T, namespace string) *admissionv1.AdmissionResponse {
	t.Helper()
	apple := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "stable.example.com/v1", "kind": "MyApple",
		"metadata": map[string]any{"name": "a", "namespace": namespace},
		"spec":     map[string]any{"color": "red", "size": "small", "quantity": int64(1)},
	}}
	return r.admit(t, webhook.PathMyApples, &admissionv1.AdmissionRequest{
		Kind:     metav1.GroupVersionKind{Group: "stable.example.com", Version: "v1", Kind: "MyApple"},
		Resource: metav1.GroupVersionResource{Group: "stable.example.com", Version: "v1", Resource: "myapples"},
		Name:     "a", Namespace: namespace, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Object: apple},
	})
}

func (r *replica) admit(t *testing.T, path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	req.UID = types.UID(fmt.Sprintf("lastgood-%d", time.Now().UnixNano()))
	req.UserInfo.Username = "alice"
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.client.Post(r.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s to %s: %v", path, r.name, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	var review admissionv1.AdmissionReview
	if res.StatusCode != http.StatusOK || json.Unmarshal(out, &review) != nil || review.Response == nil || review.Response.UID != req.UID {
		t.Fatalf("POST %s to %s: HTTP %d %s", path, r.name, res.StatusCode, out)
	}
	return review.Response
}

// verdict is what an admission should answer: allowed, or refused with
// exactly message.
type verdict struct {
	allowed bool
	message string
}

func verdictOf(res *admissionv1.AdmissionResponse) verdict {
	v := verdict{allowed: res.Allowed}
	if res.Result != nil {
		v.message = res.Result.Message
	}
	return v
}

// A last good version survives the replica's restart: written while no
// webhook was registered, invalid versions of an AdmissionPolicy and of a
// ConfigMap policy leave the last good versions in force on the replica
// that saw them; the leader persists them, and a replica started after it
// stopped enforces them, with the install's RBAC. An AdmissionPolicy
// deleted and created again, invalid, is another object: the old good
// version does not apply to it, and what it matches is refused.
func TestLastGoodAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local control plane (envtest); runs without -short")
	}
	ctx := t.Context()
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: testr.New(t)})
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	for _, ns := range []string{replicaPolicyNS, "team-a", "team-b"} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	saConfig := applyRBAC(t, cp.Config)
	aps := dyn.Resource(v1alpha1.Resource)
	poll := func(what string, cond func() error) {
		t.Helper()
		if err := devenv.Poll(ctx, 60*time.Second, func(context.Context) error { return cond() }); err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
	}
	// expect polls until each admission answers as wanted: the replica
	// may take a moment to see a change.
	type check struct {
		what  string
		admit func() *admissionv1.AdmissionResponse
		want  verdict
	}
	expect := func(checks ...check) {
		t.Helper()
		for _, c := range checks {
			poll(c.what, func() error {
				if got := verdictOf(c.admit()); got != c.want {
					return fmt.Errorf("answered %+v, want %+v", got, c.want)
				}
				return nil
			})
		}
	}
	persisted := func(want ...string) func() error {
		return func() error {
			cm, err := kube.CoreV1().ConfigMaps(replicaPolicyNS).Get(ctx, cache.LastGoodConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var got []string
			for k := range cm.Data {
				got = append(got, k)
			}
			if len(got) != len(want) {
				return fmt.Errorf("entries %v, want %v", got, want)
			}
			for _, k := range want {
				if _, ok := cm.Data[k]; !ok {
					return fmt.Errorf("entries %v, want %v", got, want)
				}
			}
			return nil
		}
	}
	readyMessage := func(name string) (int64, string) {
		u, err := aps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, err.Error()
		}
		var st v1alpha1.AdmissionPolicyStatus
		if raw, ok := u.Object["status"].(map[string]any); ok {
			_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st)
		}
		ready := apimeta.FindStatusCondition(st.Conditions, controllers.ConditionReady)
		if ready == nil {
			return 0, ""
		}
		return ready.ObservedGeneration, ready.Message
	}

	a := startReplicaAs(t, saConfig, "replica-a")
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": "trusted"},
		"spec":     map[string]any{"pods": map[string]any{"allowedRegistries": []any{"registry.example.com/"}}},
	}}
	ap, err := aps.Create(ctx, ap, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kube.CoreV1().ConfigMaps("team-a").Create(ctx, devenv.PolicyConfigMap("team-a", "own-images",
		"pods:\n  allowedRegistries: [registry.example.com/team-a/]\n"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	goodRV := cm.ResourceVersion
	deniedByAP := verdict{message: `policy violation: AdmissionPolicy trusted pods.allowedRegistries spec.containers[0].image: image "nginx" resolves to docker.io/library/nginx:latest, which is not under an allowed registry (registry.example.com/)`}
	deniedByCM := verdict{message: `policy violation: ConfigMap team-a/own-images pods.allowedRegistries spec.containers[0].image: image "registry.example.com/team-b/app:1" resolves to registry.example.com/team-b/app:1, which is not under an allowed registry (registry.example.com/team-a/)`}
	goodChecks := func(r *replica) []check {
		return []check{
			{"nginx is refused in team-b", func() *admissionv1.AdmissionResponse { return r.admitPod(t, "team-b", "nginx") }, deniedByAP},
			{"team-b's image is refused in team-a", func() *admissionv1.AdmissionResponse {
				return r.admitPod(t, "team-a", "registry.example.com/team-b/app:1")
			}, deniedByCM},
			{"team-a's image is admitted in team-a", func() *admissionv1.AdmissionResponse {
				return r.admitPod(t, "team-a", "registry.example.com/team-a/app:1")
			}, verdict{allowed: true}},
			{"a MyApple is admitted", func() *admissionv1.AdmissionResponse { return r.admitMyApple(t, "team-b") }, verdict{allowed: true}},
		}
	}
	expect(goodChecks(a)...)

	// Invalid versions of both, written while no webhook is registered:
	// replica-a keeps the good ones in force and, leading, persists them.
	// The replicas' status writes move the object on: retry on conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := aps.Get(ctx, "trusted", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Object["spec"] = map[string]any{"pods": map[string]any{"allowedRegistries": []any{"https://registry.example.com/"}}}
		ap, err = aps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["policy.yaml"] = "pods:\n  allowedRegistries: [registry.example.com/team-a/]\n  forbidPrivileged: yes please\n"
	if _, err = kube.CoreV1().ConfigMaps("team-a").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the good versions are persisted", persisted("admissionpolicy.trusted", "configmap.team-a.own-images"))
	expect(goodChecks(a)...)
	a.stop(t)

	// A replica started now has seen no good version: it enforces the
	// persisted ones, and says so.
	b := startReplicaAs(t, saConfig, "replica-b")
	expect(goodChecks(b)...)
	restored := "(generation 1, the last good version, stays in force as persisted in ConfigMap policy-system/policy-webhook-last-good)"
	poll("the Ready condition names the persisted version", func() error {
		if gen, msg := readyMessage("trusted"); gen != 2 || !strings.HasSuffix(msg, restored) {
			return fmt.Errorf("generation %d: %q", gen, msg)
		}
		return nil
	})
	b.stop(t)

	// The AdmissionPolicy is deleted and created again, invalid, while no
	// replica runs: a new object, which the old good version does not
	// cover. The next replica refuses the Pods it matches, saying why, and
	// drops the old object's entry.
	if err := aps.Delete(ctx, "trusted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the AdmissionPolicy is gone", func() error {
		if _, err := aps.Get(ctx, "trusted", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return errors.New("still there")
		}
		return nil
	})
	again := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": "trusted"},
		"spec":     map[string]any{"pods": map[string]any{"allowedRegistries": []any{"ftp://registry.example.com/"}}},
	}}
	if again, err = aps.Create(ctx, again, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if again.GetUID() == ap.GetUID() {
		t.Fatal("the recreated AdmissionPolicy has the old UID")
	}
	c := startReplicaAs(t, saConfig, "replica-c")
	standIn := verdict{message: `policy violation: AdmissionPolicy trusted invalid: the policy is invalid (generation 1) and no good version of it is known, so what it matches is refused until it is fixed: spec.pods.allowedRegistries[0]: invalid registry prefix "ftp://registry.example.com/": write the registry host without a scheme, e.g. registry.example.com/`}
	expect(
		// The old good version would admit this; the stand-in does not.
		check{"a Pod the old version allowed is refused", func() *admissionv1.AdmissionResponse {
			return c.admitPod(t, "team-b", "registry.example.com/app:1")
		}, standIn},
		// Its rules are for Pods only.
		check{"a MyApple is admitted", func() *admissionv1.AdmissionResponse { return c.admitMyApple(t, "team-b") }, verdict{allowed: true}},
		// The ConfigMap's persisted version still judges in team-a, the
		// stand-in beside it.
		check{"team-b's image is refused in team-a by both", func() *admissionv1.AdmissionResponse {
			return c.admitPod(t, "team-a", "registry.example.com/team-b/app:1")
		}, verdict{message: "2 policy violations:\n- " + strings.TrimPrefix(standIn.message, "policy violation: ") + "\n- " + strings.TrimPrefix(deniedByCM.message, "policy violation: ")}},
	)
	poll("the old object's entry is gone", persisted("configmap.team-a.own-images"))
	poll("the Ready condition says what is refused", func() error {
		if gen, msg := readyMessage("trusted"); gen != 1 || !strings.HasSuffix(msg, "(no good version of it is known: what it matches is refused until it is fixed)") {
			return fmt.Errorf("generation %d: %q", gen, msg)
		}
		return nil
	})

	// Fixing the ConfigMap puts it in force and empties its entry.
	cm, err = kube.CoreV1().ConfigMaps("team-a").Get(ctx, "own-images", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["policy.yaml"] = "pods:\n  allowedRegistries: [registry.example.com/team-a/, registry.example.com/team-b/]\n"
	if _, err = kube.CoreV1().ConfigMaps("team-a").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("nothing is persisted", persisted())
	expect(check{"only the stand-in refuses in team-a", func() *admissionv1.AdmissionResponse {
		return c.admitPod(t, "team-a", "registry.example.com/team-b/app:1")
	}, standIn})
	t.Logf("good ConfigMap version was resourceVersion %s", goodRV)
}
