// Package fakecluster is a cluster of fake clients for the tests of the
// informer cache and of the controllers: writes go through the fake
// clients' object trackers, whose watches feed informers as an API server
// would, and every write gets a new resourceVersion, as from an API server.
package fakecluster

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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// PolicyNamespace is the webhook's namespace in the fake cluster.
const PolicyNamespace = "policy-system"

// Resources of the fake cluster.
var (
	ConfigMaps = corev1.SchemeGroupVersion.WithResource("configmaps")
	Namespaces = corev1.SchemeGroupVersion.WithResource("namespaces")
	Secrets    = corev1.SchemeGroupVersion.WithResource("secrets")
	MyApples   = schema.GroupVersionResource{Group: policy.GroupMyApple, Version: "v1", Resource: policy.ResourceApples}
)

// Cluster is the fake clients of one cluster.
type Cluster struct {
	T    testing.TB
	Dyn  *dynamicfake.FakeDynamicClient
	Meta *metadatafake.FakeMetadataClient
	Kube *kubefake.Clientset
	rv   atomic.Int64
	uids atomic.Int64

	// Informers list, then watch; a fake tracker replays nothing of a
	// delete made between the two, so writes wait for the watch.
	mu      sync.Mutex
	lists   map[schema.GroupVersionResource]int
	watches map[schema.GroupVersionResource]int
}

// New makes a cluster that starts with objs: unstructured objects for the
// dynamic client, PartialObjectMetadata for the metadata one.
func New(t testing.TB, objs ...runtime.Object) *Cluster {
	t.Helper()
	f := &Cluster{T: t, Kube: kubefake.NewClientset(),
		lists: map[schema.GroupVersionResource]int{}, watches: map[schema.GroupVersionResource]int{}}
	f.rv.Store(100)
	var dynObjs, metaObjs []runtime.Object
	for _, o := range objs {
		f.Stamp(o)
		if _, ok := o.(*metav1.PartialObjectMetadata); ok {
			metaObjs = append(metaObjs, o)
		} else {
			dynObjs = append(dynObjs, o)
		}
	}
	f.Dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		ConfigMaps:                 "ConfigMapList",
		Secrets:                    "SecretList",
		v1alpha1.Resource:          "AdmissionPolicyList",
		v1alpha1.ExceptionResource: "PolicyExceptionList",
		MyApples:                   "MyAppleList",
	}, dynObjs...)
	f.Dyn.PrependReactor("patch", v1alpha1.Resource.Resource, f.applyStatus)
	// The metadata tracker files a PartialObjectMetadata under its
	// TypeMeta, once the scheme knows the type at all.
	metaScheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(metaScheme); err != nil {
		t.Fatalf("building the metadata scheme: %v", err)
	}
	f.Meta = metadatafake.NewSimpleMetadataClient(metaScheme, metaObjs...)
	f.Dyn.PrependReactor("list", "*", f.countList)
	f.Dyn.PrependWatchReactor("*", f.watch(f.Dyn.Tracker()))
	f.Meta.PrependReactor("list", "*", f.countList)
	f.Meta.PrependWatchReactor("*", f.watch(f.Meta.Tracker()))
	return f
}

func (f *Cluster) countList(a k8stesting.Action) (bool, runtime.Object, error) {
	f.mu.Lock()
	f.lists[a.GetResource()]++
	f.mu.Unlock()
	return false, nil, nil
}

// watch opens a watch as the fake clients' own reactor does, and counts it
// once the tracker holds it.
func (f *Cluster) watch(o k8stesting.ObjectTracker) k8stesting.WatchReactionFunc {
	return func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := o.Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		f.mu.Lock()
		f.watches[a.GetResource()]++
		f.mu.Unlock()
		return true, w, nil
	}
}

// awaitWatch waits until every informer that listed gvr watches it, so a
// write reaches them all.
func (f *Cluster) awaitWatch(gvr schema.GroupVersionResource) {
	f.T.Helper()
	Eventually(f.T, "informers watch "+gvr.Resource, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.watches[gvr] >= f.lists[gvr]
	})
}

// applyStatus stands in for server-side apply of AdmissionPolicy status,
// which the fake client cannot do on unstructured objects: entries of
// status.replicas merge by name and conditions by type, other fields are
// replaced, and each apply is a new resourceVersion. It does not track
// field managers, so an apply of nothing removes nothing: removing a gone
// replica's entry is the envtest's to show.
func (f *Cluster) applyStatus(action k8stesting.Action) (bool, runtime.Object, error) {
	p, ok := action.(k8stesting.PatchAction)
	if !ok || p.GetPatchType() != types.ApplyPatchType || p.GetSubresource() != "status" {
		return false, nil, nil
	}
	var patch map[string]any
	if err := json.Unmarshal(p.GetPatch(), &patch); err != nil {
		return true, nil, err
	}
	obj, err := f.Dyn.Tracker().Get(v1alpha1.Resource, "", p.GetName())
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
	f.Stamp(u)
	if err := f.Dyn.Tracker().Update(v1alpha1.Resource, u, ""); err != nil {
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

// Stamp gives an object a new resourceVersion, and a UID if it has none.
func (f *Cluster) Stamp(o runtime.Object) {
	m, ok := o.(metav1.Object)
	if !ok {
		f.T.Fatalf("%T has no metadata", o)
	}
	m.SetResourceVersion(strconv.FormatInt(f.rv.Add(1), 10))
	if m.GetUID() == "" {
		m.SetUID(types.UID(fmt.Sprintf("uid-%d", f.uids.Add(1))))
	}
}

func resourceOf(u *unstructured.Unstructured) schema.GroupVersionResource {
	switch u.GetKind() {
	case "ConfigMap":
		return ConfigMaps
	case "AdmissionPolicy":
		return v1alpha1.Resource
	case "PolicyException":
		return v1alpha1.ExceptionResource
	case "MyApple":
		return MyApples
	case "Secret":
		return Secrets
	}
	panic("no resource for kind " + u.GetKind())
}

func (f *Cluster) Create(u *unstructured.Unstructured) *unstructured.Unstructured {
	f.T.Helper()
	f.awaitWatch(resourceOf(u))
	f.Stamp(u)
	if _, err := f.Dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		f.T.Fatalf("creating %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return u
}

func (f *Cluster) Update(u *unstructured.Unstructured) *unstructured.Unstructured {
	f.T.Helper()
	f.awaitWatch(resourceOf(u))
	f.Stamp(u)
	if _, err := f.Dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		f.T.Fatalf("updating %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return u
}

func (f *Cluster) Delete(u *unstructured.Unstructured) {
	f.T.Helper()
	f.awaitWatch(resourceOf(u))
	if err := f.Dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace()).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{}); err != nil {
		f.T.Fatalf("deleting %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

func (f *Cluster) UpdateNamespace(ns *metav1.PartialObjectMetadata) {
	f.T.Helper()
	f.awaitWatch(Namespaces)
	f.Stamp(ns)
	if err := f.Meta.Tracker().Update(Namespaces, ns, ""); err != nil {
		f.T.Fatalf("updating namespace %s: %v", ns.Name, err)
	}
}

// Events lists the Events recorded in a namespace for an object.
func (f *Cluster) Events(namespace, name string) []corev1.Event {
	f.T.Helper()
	list, err := f.Kube.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.T.Fatalf("listing events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// Eventually polls cond until it holds; it fails the test after 10s. The
// limit is only there so a broken cache fails instead of hanging: nothing
// is asserted about how long it took.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.Until(t, 10*time.Second, what, cond)
}

func PolicyConfigMap(namespace, name, spec string) *unstructured.Unstructured {
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

func AdmissionPolicy(name string, generation int64, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AdmissionPolicy",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
	u.SetGeneration(generation)
	return u
}

// PolicyException lifts rules of one policy (kind, namespace, name) in
// namespace until expiresAt.
func PolicyException(namespace, name string, generation int64, expiresAt time.Time, policyKind, policyNamespace, policyName string, rules ...string) *unstructured.Unstructured {
	ruleList := make([]any, len(rules))
	for i, r := range rules {
		ruleList[i] = r
	}
	ref := map[string]any{"kind": policyKind, "name": policyName}
	if policyNamespace != "" {
		ref["namespace"] = policyNamespace
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "PolicyException",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec": map[string]any{
			"reason":     "a test",
			"expiresAt":  expiresAt.UTC().Format(time.RFC3339),
			"exceptions": []any{map[string]any{"policy": ref, "rules": ruleList}},
		},
	}}
	u.SetGeneration(generation)
	return u
}

func MyApple(namespace, name string, quantity int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": policy.GroupMyApple + "/v1",
		"kind":       "MyApple",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec":       map[string]any{"color": "red", "size": "small", "quantity": quantity},
	}}
}

func NamespaceMeta(name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}
}

// PodRequest is the CREATE of a Pod of one container running image.
func PodRequest(namespace, image string) *policy.Request {
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

// AppleRequest is the admission of a MyApple of quantity (oldQuantity on
// UPDATE).
func AppleRequest(op policy.Operation, namespace, name string, quantity, oldQuantity int64) *policy.Request {
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

// Judge is what judges requests: a cache.
type Judge interface {
	Evaluate(*policy.Request) policy.Decision
}

// Allowed judges a request and fails the test if the verdict is not want.
func Allowed(t testing.TB, c Judge, req *policy.Request, want bool) policy.Decision {
	t.Helper()
	d := c.Evaluate(req)
	if d.Allowed != want {
		t.Fatalf("%s %s in %s: allowed = %v, want %v (violations: %v)", req.Operation, req.Kind, req.Namespace, d.Allowed, want, d.Violations)
	}
	return d
}

// Policies of the tests.
const RegistryPolicy = `
pods:
  allowedRegistries: [registry.example.com/]
`

const DockerHubPolicy = `
pods:
  allowedRegistries: [docker.io/]
`

// InvalidPolicy passes YAML parsing but not validation: an entry with a scheme.
const InvalidPolicy = `
pods:
  allowedRegistries: ["https://registry.example.com/"]
`

// RegistrySpec is the spec of an AdmissionPolicy allowing one registry.
func RegistrySpec(prefix string) map[string]any {
	return map[string]any{"pods": map[string]any{"allowedRegistries": []any{prefix}}}
}

// Run starts each of runs (a cache's or a controller's Start) until the
// test ends or stop is called, and waits until cached reports it has
// synced. stop cancels them and checks that each returns nil within 10s.
func Run(t testing.TB, cached interface{ WaitForSync(context.Context) bool }, runs ...func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(runs))
	for _, run := range runs {
		go func() { done <- run(ctx) }()
	}
	stop = sync.OnceFunc(func() {
		cancel()
		for range runs {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Start returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Start did not return after its context was cancelled")
			}
		}
	})
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !cached.WaitForSync(wctx) {
		t.Fatal("the cache did not sync")
	}
	return stop
}
