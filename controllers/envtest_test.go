package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// TestOnAPIServer runs the cache against a real kube-apiserver and etcd
// (envtest): label-selected watches, generations, the status subresource
// and Events all behave as in a cluster, which the fake clients only imitate.
func TestOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local control plane (envtest); runs without -short")
	}
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{})

	a := newAPI(t, cp.Config)
	a.namespace("policy-system", nil)
	a.namespace("team-a", map[string]string{"env": "prod"})
	a.namespace("team-b", map[string]string{"env": "dev"})

	// Present before Start: goes into the first snapshot.
	a.create(configMap("team-a", "registries", true, `
pods:
  allowedRegistries: [registry.example.com/]
`))
	// Not labelled: the API server never sends it, so it is never read,
	// even though it would not compile.
	a.create(configMap("team-a", "notes", false, "pods: {allowedRegistries: [\"https://x/\"]}"))

	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	c, err := cache.New(cache.Config{
		Dynamic:         a.dyn,
		Metadata:        a.meta,
		PolicyNamespace: "policy-system",
		Log:             log,
	})
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	cs, err := controllers.New(controllers.Config{
		Cache:           c,
		Dynamic:         a.dyn,
		Kube:            a.kube,
		Replica:         "replica-a",
		PolicyNamespace: "policy-system",
		Log:             log,
	})
	if err != nil {
		t.Fatalf("controllers.New: %v", err)
	}
	if c.HasSynced() {
		t.Fatal("HasSynced before Start")
	}
	// One replica, which writes Events and Ready as the leader would:
	// two replicas and the election are webhook's TestTwoReplicas.
	ctx, cancel := context.WithCancel(context.Background())
	runs := []func(context.Context) error{c.Start, cs.Replica.Start, cs.Status.Start, cs.LastGood.Start}
	done := make(chan error, len(runs))
	for _, run := range runs {
		go func() { done <- run(ctx) }()
	}
	defer func() {
		cancel()
		for range runs {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Start returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Start did not return after its context was cancelled")
			}
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if !c.WaitForSync(wctx) {
		t.Fatal("the cache did not sync")
	}
	if n := c.Snapshot().Set.Len(); n != 1 {
		t.Fatalf("%d policies in the first snapshot, want 1", n)
	}
	deny(t, c, pod("team-a", "nginx"))
	allow(t, c, pod("team-b", "nginx"))

	t.Run("propagation", func(t *testing.T) {
		// Time from the API server accepting an edit to the snapshot
		// holding it. Measured and logged; not asserted.
		src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
		var took []time.Duration
		for i := range 20 {
			cm := a.get(configMapGVR(), "team-a", "registries")
			cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: fmt.Sprintf("pods:\n  allowedRegistries: [registry.example.com/]\n  disallowedTags: [latest, v%d]\n", i)}
			cm = a.update(cm)
			written := time.Now()
			waitFor(t, "the edit is in force", func() bool { return inForce(c, src, cm.GetResourceVersion()) })
			took = append(took, time.Since(written))
		}
		slices.Sort(took)
		t.Logf("policy edit → in force: p50 %v, p90 %v, max %v over %d edits", took[len(took)/2], took[len(took)*9/10], took[len(took)-1], len(took))
	})

	t.Run("invalid edit keeps the last good version", func(t *testing.T) {
		src := policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"}
		good := a.get(configMapGVR(), "team-a", "registries").GetResourceVersion()
		cm := a.get(configMapGVR(), "team-a", "registries")
		cm.Object["data"] = map[string]any{policy.ConfigMapDataKey: "pods:\n  allowedRegistries: [\"https://registry.example.com/\"]\n"}
		cm = a.update(cm)
		waitFor(t, "the invalid version is reported", func() bool {
			se, ok := c.Snapshot().Errors[src]
			return ok && se.Version == cm.GetResourceVersion() && se.InForce == good
		})
		deny(t, c, pod("team-a", "nginx"))
		allow(t, c, pod("team-a", "registry.example.com/app:1"))
		waitFor(t, "a Warning Event on the ConfigMap", func() bool {
			return a.hasEvent("team-a", "registries", "pods.allowedRegistries[0]")
		})
	})

	t.Run("AdmissionPolicy status", func(t *testing.T) {
		ap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(),
			"kind":       "AdmissionPolicy",
			"metadata":   map[string]any{"name": "prod-apples"},
			"spec": map[string]any{
				"match":    map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"env": "prod"}}},
				"myApples": map[string]any{"maxTotalQuantityPerNamespace": int64(10)},
			},
		}}
		a.create(ap)
		waitFor(t, "Ready=True, observedGeneration 1", func() bool { return a.ready("prod-apples", metav1.ConditionTrue, 1) })
		// The replica's own entry and the leader's summary are applies
		// of their own; once both are there, nothing more is written.
		waitFor(t, "in force on 1/1 replicas, generation 1", func() bool {
			st := a.status("prod-apples")
			return st.InForce == "1/1" && len(st.Replicas) == 1 && st.Replicas[0].Name == "replica-a" &&
				st.Replicas[0].ObservedGeneration == 1 && st.Replicas[0].InForce
		})

		ap = a.get(v1alpha1.Resource, "", "prod-apples")
		ap.Object["spec"].(map[string]any)["match"] = map[string]any{"kinds": []any{"Deployment"}}
		ap = a.update(ap)
		if ap.GetGeneration() != 2 {
			t.Fatalf("generation %d after a spec change", ap.GetGeneration())
		}
		waitFor(t, "Ready=False, observedGeneration 2", func() bool { return a.ready("prod-apples", metav1.ConditionFalse, 2) })
		msg := a.readyMessage("prod-apples")
		for _, want := range []string{"spec.match.kinds[0]", "generation 1 stays in force"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Ready message %q lacks %q", msg, want)
			}
		}
		waitFor(t, "a Warning Event on the AdmissionPolicy", func() bool { return a.hasEvent("default", "prod-apples", "spec.match.kinds[0]") })
	})

	t.Run("quota across MyApples, by namespace labels", func(t *testing.T) {
		// Generation 1 of prod-apples is in force: at most 10 per env=prod namespace.
		a.create(apple("team-a", "a", 4))
		a.create(apple("team-a", "b", 5))
		a.create(apple("team-b", "c", 50))
		waitFor(t, "the MyApples are cached", func() bool {
			return c.MyAppleQuantity("team-a", "") == 9 && c.MyAppleQuantity("team-b", "") == 50
		})
		deny(t, c, appleReq(policy.Create, "team-a", "d", 2, 0))
		allow(t, c, appleReq(policy.Create, "team-a", "d", 1, 0))
		allow(t, c, appleReq(policy.Update, "team-a", "b", 6, 5))
		deny(t, c, appleReq(policy.Update, "team-a", "b", 7, 5))
		allow(t, c, appleReq(policy.Create, "team-b", "d", 5, 0)) // env=dev: not selected

		ns := a.get(namespaceGVR(), "", "team-b")
		ns.SetLabels(map[string]string{"env": "prod"})
		a.update(ns)
		waitFor(t, "team-b relabelled", func() bool { l, _ := c.NamespaceLabels("team-b"); return l["env"] == "prod" })
		deny(t, c, appleReq(policy.Create, "team-b", "d", 5, 0))
	})

	t.Run("label removed or source deleted stops applying", func(t *testing.T) {
		cm := a.get(configMapGVR(), "team-a", "registries")
		cm.SetLabels(map[string]string{policy.PolicyLabel: "false"})
		a.update(cm)
		waitFor(t, "the unlabelled ConfigMap is gone", func() bool {
			return gone(c, policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "registries"})
		})
		allow(t, c, pod("team-a", "nginx"))

		a.delete(v1alpha1.Resource, "", "prod-apples")
		waitFor(t, "the deleted AdmissionPolicy is gone", func() bool { return gone(c, policy.Source{Kind: policy.SourceAdmissionPolicy, Name: "prod-apples"}) })
		allow(t, c, appleReq(policy.Create, "team-a", "d", 100, 0))
	})

	// The unlabelled ConfigMap was never seen.
	if _, ok := c.Snapshot().Errors[policy.Source{Kind: policy.SourceConfigMap, Namespace: "team-a", Name: "notes"}]; ok {
		t.Error("the unlabelled ConfigMap was read")
	}
	if a.hasEvent("team-a", "notes", "") {
		t.Error("an Event on the unlabelled ConfigMap")
	}
}

type api struct {
	t    *testing.T
	dyn  dynamic.Interface
	meta metadata.Interface
	kube kubernetes.Interface
}

func newAPI(t *testing.T, cfg *rest.Config) *api {
	a := &api{t: t}
	var err error
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	if a.meta, err = metadata.NewForConfig(cfg); err != nil {
		t.Fatalf("metadata client: %v", err)
	}
	if a.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("kubernetes client: %v", err)
	}
	return a
}

func configMapGVR() schema.GroupVersionResource {
	return corev1.SchemeGroupVersion.WithResource("configmaps")
}
func namespaceGVR() schema.GroupVersionResource {
	return corev1.SchemeGroupVersion.WithResource("namespaces")
}

func gvrOf(u *unstructured.Unstructured) schema.GroupVersionResource {
	switch u.GetKind() {
	case "ConfigMap":
		return configMapGVR()
	case "Namespace":
		return namespaceGVR()
	case "AdmissionPolicy":
		return v1alpha1.Resource
	case "MyApple":
		return cache.MyAppleResource()
	}
	panic("unknown kind " + u.GetKind())
}

func (a *api) namespace(name string, labels map[string]string) {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	u.SetLabels(labels)
	a.create(u)
}

func (a *api) create(u *unstructured.Unstructured) *unstructured.Unstructured {
	a.t.Helper()
	out, err := a.dyn.Resource(gvrOf(u)).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func (a *api) update(u *unstructured.Unstructured) *unstructured.Unstructured {
	a.t.Helper()
	out, err := a.dyn.Resource(gvrOf(u)).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{})
	if err != nil {
		a.t.Fatalf("updating %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func (a *api) get(gvr schema.GroupVersionResource, namespace, name string) *unstructured.Unstructured {
	a.t.Helper()
	out, err := a.dyn.Resource(gvr).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatalf("getting %s %s/%s: %v", gvr.Resource, namespace, name, err)
	}
	return out
}

func (a *api) delete(gvr schema.GroupVersionResource, namespace, name string) {
	a.t.Helper()
	if err := a.dyn.Resource(gvr).Namespace(namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("deleting %s %s/%s: %v", gvr.Resource, namespace, name, err)
	}
}

func (a *api) status(name string) v1alpha1.AdmissionPolicyStatus {
	a.t.Helper()
	u := a.get(v1alpha1.Resource, "", name)
	var st v1alpha1.AdmissionPolicyStatus
	if raw, ok := u.Object["status"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
			a.t.Fatalf("decoding status: %v", err)
		}
	}
	return st
}

func (a *api) readyCondition(name string) (*metav1.Condition, int64) {
	a.t.Helper()
	st := a.status(name)
	return apimeta.FindStatusCondition(st.Conditions, controllers.ConditionReady), st.ObservedGeneration
}

func (a *api) ready(name string, status metav1.ConditionStatus, gen int64) bool {
	cond, observed := a.readyCondition(name)
	return cond != nil && cond.Status == status && cond.ObservedGeneration == gen && observed == gen
}

func (a *api) readyMessage(name string) string {
	cond, _ := a.readyCondition(name)
	if cond == nil {
		return ""
	}
	return cond.Message
}

// hasEvent reports an InvalidPolicy Event on the named object whose
// message contains text.
func (a *api) hasEvent(namespace, name, text string) bool {
	a.t.Helper()
	list, err := a.kube.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		a.t.Fatalf("listing events: %v", err)
	}
	for _, e := range list.Items {
		if e.Reason == controllers.ReasonInvalidPolicy && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

func configMap(namespace, name string, labelled bool, spec string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"data":       map[string]any{policy.ConfigMapDataKey: spec},
	}}
	if labelled {
		u.SetLabels(map[string]string{policy.PolicyLabel: "true"})
	}
	return u
}

func apple(namespace, name string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": policy.GroupMyApple + "/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec":       map[string]any{"color": "red", "size": "small", "quantity": quantity},
	}}
}

func pod(namespace, image string) *policy.Request {
	return &policy.Request{Kind: policy.KindPod, Operation: policy.Create, Namespace: namespace, Pod: &policy.Pod{
		ObjectMeta: policy.ObjectMeta{Namespace: namespace, Name: "app"},
		Spec:       policy.PodSpec{Containers: []policy.Container{{Name: "app", Image: image}}},
	}}
}

func appleReq(op policy.Operation, namespace, name string, quantity, old int64) *policy.Request {
	mk := func(q int64) *policy.MyApple {
		return &policy.MyApple{ObjectMeta: policy.ObjectMeta{Namespace: namespace, Name: name}, Spec: policy.MyAppleSpec{Color: "red", Size: "small", Quantity: q}}
	}
	r := &policy.Request{Kind: policy.KindMyApple, Operation: op, Namespace: namespace, MyApple: mk(quantity)}
	if op == policy.Update {
		r.OldMyApple = mk(old)
	}
	return r
}

func deny(t *testing.T, c *cache.Cache, r *policy.Request) {
	t.Helper()
	if d := c.Evaluate(r); d.Allowed {
		t.Errorf("%s %s in %s allowed, want denied", r.Operation, r.Kind, r.Namespace)
	}
}

func allow(t *testing.T, c *cache.Cache, r *policy.Request) {
	t.Helper()
	if d := c.Evaluate(r); !d.Allowed {
		t.Errorf("%s %s in %s denied: %s", r.Operation, r.Kind, r.Namespace, d.Message())
	}
}

func inForce(c *cache.Cache, src policy.Source, version string) bool {
	for _, p := range c.Snapshot().Policies() {
		if p.Source == src && p.Version == version {
			return true
		}
	}
	return false
}

func gone(c *cache.Cache, src policy.Source) bool {
	s := c.Snapshot()
	if _, ok := s.Errors[src]; ok {
		return false
	}
	for _, p := range s.Policies() {
		if p.Source == src {
			return false
		}
	}
	return true
}

// waitFor polls cond; the 30s limit only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Until(t, 30*time.Second, what, cond)
}
