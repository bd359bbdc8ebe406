package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

const (
	testPolicyNamespace = "policy-system"
	testReplica         = "replica-a"
)

func configMapResource() schema.GroupVersionResource {
	return corev1.SchemeGroupVersion.WithResource("configmaps")
}

func namespaceResource() schema.GroupVersionResource {
	return corev1.SchemeGroupVersion.WithResource("namespaces")
}

// fixture is a Cache on fake clients. Writes go through the fake clients'
// object trackers, whose watches feed the informers as an API server would;
// like an API server, the fixture gives every write a new resourceVersion.
type fixture struct {
	t     testing.TB
	dyn   *dynamicfake.FakeDynamicClient
	meta  *metadatafake.FakeMetadataClient
	kube  *kubefake.Clientset
	reg   *prometheus.Registry
	cache *Cache
	rv    atomic.Int64
	uids  atomic.Int64
	stop  func() // stops what start started
}

// newFixture makes a Cache whose fake cluster starts with objs: unstructured
// objects for the dynamic client, PartialObjectMetadata for the metadata one.
func newFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, kube: kubefake.NewClientset(), reg: prometheus.NewRegistry()}
	f.rv.Store(100)
	var dynObjs, metaObjs []runtime.Object
	for _, o := range objs {
		f.stamp(o)
		if _, ok := o.(*metav1.PartialObjectMetadata); ok {
			metaObjs = append(metaObjs, o)
		} else {
			dynObjs = append(dynObjs, o)
		}
	}
	f.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		configMapResource(): "ConfigMapList",
		v1alpha1.Resource:   "AdmissionPolicyList",
		MyAppleResource():   "MyAppleList",
	}, dynObjs...)
	f.dyn.PrependReactor("patch", v1alpha1.Resource.Resource, f.applyStatus)
	// The metadata tracker files a PartialObjectMetadata under its
	// TypeMeta, once the scheme knows the type at all.
	metaScheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(metaScheme); err != nil {
		t.Fatalf("building the metadata scheme: %v", err)
	}
	f.meta = metadatafake.NewSimpleMetadataClient(metaScheme, metaObjs...)
	f.cache = f.newCache(testReplica, f.reg)
	return f
}

// newCache makes a Cache on the fixture's clients: a replica of the one
// cluster the fixture fakes.
func (f *fixture) newCache(replica string, reg prometheus.Registerer) *Cache {
	f.t.Helper()
	c, err := New(Config{
		Dynamic:         f.dyn,
		Metadata:        f.meta,
		Kube:            f.kube,
		Replica:         replica,
		PolicyNamespace: testPolicyNamespace,
		Log:             testr.NewWithInterface(f.t, testr.Options{Verbosity: 1}).WithName(replica),
		Metrics:         reg,
	})
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	return c
}

// applyStatus stands in for server-side apply of AdmissionPolicy status,
// which the fake client cannot do on unstructured objects: entries of
// status.replicas merge by name and conditions by type, other fields are
// replaced, and each apply is a new resourceVersion. It does not track
// field managers, so an apply of nothing removes nothing: removing a gone
// replica's entry is the envtest's to show.
func (f *fixture) applyStatus(action k8stesting.Action) (bool, runtime.Object, error) {
	p, ok := action.(k8stesting.PatchAction)
	if !ok || p.GetPatchType() != types.ApplyPatchType || p.GetSubresource() != "status" {
		return false, nil, nil
	}
	var patch map[string]any
	if err := json.Unmarshal(p.GetPatch(), &patch); err != nil {
		return true, nil, err
	}
	obj, err := f.dyn.Tracker().Get(v1alpha1.Resource, "", p.GetName())
	if err != nil {
		return true, nil, err
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	st, _ := u.Object["status"].(map[string]any)
	if st == nil {
		st = map[string]any{}
	}
	applied, _ := patch["status"].(map[string]any)
	for k, v := range applied {
		switch k {
		case "replicas":
			st[k] = mergeByKey(st[k], v, "name")
		case "conditions":
			st[k] = mergeByKey(st[k], v, "type")
		default:
			st[k] = v
		}
	}
	u.Object["status"] = st
	f.stamp(u)
	if err := f.dyn.Tracker().Update(v1alpha1.Resource, u, ""); err != nil {
		return true, nil, err
	}
	return true, u, nil
}

// mergeByKey merges the items of list applied into list live by key.
func mergeByKey(live, applied any, key string) []any {
	out, _ := live.([]any)
	out = slices.Clone(out)
	for _, a := range applied.([]any) {
		am := a.(map[string]any)
		i := slices.IndexFunc(out, func(o any) bool { return o.(map[string]any)[key] == am[key] })
		if i < 0 {
			out = append(out, am)
		} else {
			out[i] = am
		}
	}
	return out
}

// stamp gives an object a new resourceVersion, and a UID if it has none.
func (f *fixture) stamp(o runtime.Object) {
	m, ok := o.(metav1.Object)
	if !ok {
		f.t.Fatalf("%T has no metadata", o)
	}
	m.SetResourceVersion(strconv.FormatInt(f.rv.Add(1), 10))
	if m.GetUID() == "" {
		m.SetUID(types.UID(fmt.Sprintf("uid-%d", f.uids.Add(1))))
	}
}

// start runs the cache, and its Reporter as the one replica would with
// leadership, until the test ends or stop, and waits for the cache to sync.
func (f *fixture) start() {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- f.cache.Start(ctx) }()
	go func() { done <- f.cache.Reporter().Start(ctx) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			for range 2 {
				select {
				case err := <-done:
					if err != nil {
						f.t.Errorf("Start returned %v", err)
					}
				case <-time.After(10 * time.Second):
					f.t.Error("Start did not return after its context was cancelled")
				}
			}
		})
	}
	f.t.Cleanup(f.stop)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !f.cache.WaitForSync(wctx) {
		f.t.Fatal("the cache did not sync")
	}
}

// restart stops the cache and starts a new one, as a replica that
// restarts, on the same fake cluster.
func (f *fixture) restart() {
	f.t.Helper()
	f.stop()
	f.reg = prometheus.NewRegistry()
	f.cache = f.newCache(testReplica, f.reg)
	f.start()
}

func resourceOf(u *unstructured.Unstructured) schema.GroupVersionResource {
	switch u.GetKind() {
	case "ConfigMap":
		return configMapResource()
	case "AdmissionPolicy":
		return v1alpha1.Resource
	case "MyApple":
		return MyAppleResource()
	}
	panic("no resource for kind " + u.GetKind())
}

func (f *fixture) create(u *unstructured.Unstructured) *unstructured.Unstructured {
	f.t.Helper()
	f.stamp(u)
	if _, err := f.dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return u
}

func (f *fixture) update(u *unstructured.Unstructured) *unstructured.Unstructured {
	f.t.Helper()
	f.stamp(u)
	if _, err := f.dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		f.t.Fatalf("updating %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return u
}

func (f *fixture) delete(u *unstructured.Unstructured) {
	f.t.Helper()
	if err := f.dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{}); err != nil {
		f.t.Fatalf("deleting %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

func (f *fixture) updateNamespace(ns *metav1.PartialObjectMetadata) {
	f.t.Helper()
	f.stamp(ns)
	if err := f.meta.Tracker().Update(namespaceResource(), ns, ""); err != nil {
		f.t.Fatalf("updating namespace %s: %v", ns.Name, err)
	}
}

// inForce waits until the snapshot enforces version of src.
func (f *fixture) inForce(src policy.Source, version string) {
	f.t.Helper()
	eventually(f.t, fmt.Sprintf("%s version %s is in force", src, version), func() bool {
		for _, p := range f.cache.Snapshot().Policies() {
			if p.Source == src && p.Version == version {
				return true
			}
		}
		return false
	})
}

// failed waits until the snapshot reports version of src as invalid.
func (f *fixture) failed(src policy.Source, version string) SourceError {
	f.t.Helper()
	var se SourceError
	eventually(f.t, fmt.Sprintf("%s version %s is reported invalid", src, version), func() bool {
		var ok bool
		se, ok = f.cache.Snapshot().Errors[src]
		return ok && se.Version == version
	})
	return se
}

// gone waits until the snapshot holds neither a policy nor an error of src.
func (f *fixture) gone(src policy.Source) {
	f.t.Helper()
	eventually(f.t, fmt.Sprintf("%s is gone from the snapshot", src), func() bool {
		s := f.cache.Snapshot()
		if _, ok := s.Errors[src]; ok {
			return false
		}
		for _, p := range s.Policies() {
			if p.Source == src {
				return false
			}
		}
		return true
	})
}

// events lists the Events recorded in a namespace for an object.
func (f *fixture) events(namespace, name string) []corev1.Event {
	f.t.Helper()
	list, err := f.kube.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatalf("listing events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond until it holds; it fails the test after 10s. The
// limit is only there so a broken cache fails instead of hanging: nothing
// is asserted about how long it took.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.Until(t, 10*time.Second, what, cond)
}

func policyConfigMap(namespace, name, spec string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"namespace": namespace,
			"name":      name,
			"labels":    map[string]any{policy.PolicyLabel: "true"},
		},
		"data": map[string]any{policy.ConfigMapDataKey: spec},
	}}
	return u
}

func admissionPolicy(name string, generation int64, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AdmissionPolicy",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
	u.SetGeneration(generation)
	return u
}

func myApple(namespace, name string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": policy.GroupMyApple + "/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec":       map[string]any{"color": "red", "size": "small", "quantity": quantity},
	}}
}

func namespaceMeta(name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}
}

func podRequest(namespace, image string) *policy.Request {
	return &policy.Request{
		Kind:      policy.KindPod,
		Operation: policy.Create,
		Namespace: namespace,
		Pod: &policy.Pod{
			ObjectMeta: policy.ObjectMeta{Namespace: namespace, Name: "app"},
			Spec:       policy.PodSpec{Containers: []policy.Container{{Name: "app", Image: image}}},
		},
	}
}

func appleRequest(op policy.Operation, namespace, name string, quantity, oldQuantity int64) *policy.Request {
	mk := func(q int64) *policy.MyApple {
		return &policy.MyApple{
			ObjectMeta: policy.ObjectMeta{Namespace: namespace, Name: name},
			Spec:       policy.MyAppleSpec{Color: "red", Size: "small", Quantity: q},
		}
	}
	r := &policy.Request{Kind: policy.KindMyApple, Operation: op, Namespace: namespace, MyApple: mk(quantity)}
	if op == policy.Update {
		r.OldMyApple = mk(oldQuantity)
	}
	return r
}

// allowed judges a request and fails the test if the verdict is not want.
func allowed(t testing.TB, c *Cache, req *policy.Request, want bool) policy.Decision {
	t.Helper()
	d := c.Evaluate(req)
	if d.Allowed != want {
		t.Fatalf("%s %s in %s: allowed = %v, want %v (violations: %v)", req.Operation, req.Kind, req.Namespace, d.Allowed, want, d.Violations)
	}
	return d
}

const registryPolicy = `
pods:
  allowedRegistries: [registry.example.com/]
`

const dockerHubPolicy = `
pods:
  allowedRegistries: [docker.io/]
`

// invalidPolicy passes YAML parsing but not validation: an entry with a scheme.
const invalidPolicy = `
pods:
  allowedRegistries: ["https://registry.example.com/"]
`

func registrySpec(prefix string) map[string]any {
	return map[string]any{"pods": map[string]any{"allowedRegistries": []any{prefix}}}
}
