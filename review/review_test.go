package review

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kjson "sigs.k8s.io/json"

	"github.com/policy-webhook/policy-webhook/policy"
)

// project is the part of a Pod decoded whole that rules read, field by
// field in Go: what DecodeObject must produce from the same JSON.
func project(p *corev1.Pod) *policy.Pod {
	out := &policy.Pod{ObjectMeta: policy.ObjectMeta{
		Name: p.Name, GenerateName: p.GenerateName, Namespace: p.Namespace,
		Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		UID: string(p.UID), ResourceVersion: p.ResourceVersion,
	}}
	s := &out.Spec
	s.HostNetwork, s.HostPID, s.HostIPC = p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC
	if psc := p.Spec.SecurityContext; psc != nil {
		s.SecurityContext = &policy.PodSecurityContext{RunAsNonRoot: psc.RunAsNonRoot, RunAsUser: psc.RunAsUser}
	}
	for _, v := range p.Spec.Volumes {
		lv := policy.Volume{Name: v.Name}
		if v.HostPath != nil {
			lv.HostPath = &policy.HostPath{Path: v.HostPath.Path}
		}
		if v.Image != nil {
			lv.Image = &policy.ImageVolume{Reference: v.Image.Reference}
		}
		s.Volumes = append(s.Volumes, lv)
	}
	container := func(name, image string, sc *corev1.SecurityContext, limits corev1.ResourceList) policy.Container {
		c := policy.Container{Name: name, Image: image, Resources: policy.Resources{Limits: limits}}
		if sc != nil {
			c.SecurityContext = &policy.SecurityContext{Privileged: sc.Privileged, RunAsNonRoot: sc.RunAsNonRoot, RunAsUser: sc.RunAsUser}
		}
		return c
	}
	for _, c := range p.Spec.InitContainers {
		s.InitContainers = append(s.InitContainers, container(c.Name, c.Image, c.SecurityContext, c.Resources.Limits))
	}
	for _, c := range p.Spec.Containers {
		s.Containers = append(s.Containers, container(c.Name, c.Image, c.SecurityContext, c.Resources.Limits))
	}
	for _, c := range p.Spec.EphemeralContainers {
		s.EphemeralContainers = append(s.EphemeralContainers, container(c.Name, c.Image, c.SecurityContext, c.Resources.Limits))
	}
	return out
}

// apiServerDecode decodes a Pod the way the API server does: the
// Kubernetes JSON serializer of the core/v1 scheme.
func apiServerDecode(t testing.TB, raw []byte) (*corev1.Pod, error) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	_, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(raw, nil, pod)
	return pod, err
}

// seeds are Pods that between them set every field a rule reads to a value
// that matters: the second flips the booleans of the first, so that a field
// read into its neighbour (hostIPC into hostPID) shows.
func seeds(t testing.TB) map[string][]byte {
	t.Helper()
	first, err := os.ReadFile("testdata/pod-every-field.json")
	if err != nil {
		t.Fatal(err)
	}
	second := string(first)
	for _, f := range []string{`"hostNetwork": `, `"hostPID": `, `"hostIPC": `, `"privileged": `, `"runAsNonRoot": `} {
		second = strings.NewReplacer(f+"true", f+"FALSE", f+"false", f+"true").Replace(second)
		second = strings.ReplaceAll(second, f+"FALSE", f+"false")
	}
	// The pod's user 0 (root) matters; so does another one.
	second = strings.Replace(second, `"runAsUser": 0, "fsGroup"`, `"runAsUser": 1001, "fsGroup"`, 1)
	return map[string][]byte{"every field": first, "flipped": []byte(second)}
}

func TestDecodePodMatchesAPIServer(t *testing.T) {
	covered := map[string]bool{}
	for name, raw := range seeds(t) {
		t.Run(name, func(t *testing.T) {
			ref, err := apiServerDecode(t, raw)
			if err != nil {
				t.Fatalf("the API server's decoder refuses the seed: %v", err)
			}
			got, _, err := DecodeObject(policy.KindPod, raw)
			if err != nil {
				t.Fatalf("DecodeObject: %v", err)
			}
			want := project(ref)
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("decoded\n%#v\nwant (from the API server's decode)\n%#v", got, want)
			}
			markSet(reflect.ValueOf(got).Elem(), "", covered)
		})
	}
	// Every field a rule reads must be set somewhere in the seeds, or a
	// mix-up of that field would go unseen.
	for _, path := range leafPaths(reflect.TypeFor[policy.Pod](), "") {
		if !covered[path] {
			t.Errorf("no seed sets %s to a non-zero value", path)
		}
	}
}

// leafPaths lists the dotted JSON paths of the leaves of a lean type.
func leafPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[policy.Pod]().PkgPath() {
		return []string{prefix}
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, leafPaths(f.Type, join(prefix, jsonName(f)))...)
	}
	return out
}

// markSet records the paths of the leaves of v that are not zero.
func markSet(v reflect.Value, prefix string, set map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			markSet(v.Elem(), prefix, set)
		}
		return
	case reflect.Slice:
		for i := range v.Len() {
			markSet(v.Index(i), prefix, set)
		}
		return
	case reflect.Struct:
		if v.Type().PkgPath() == reflect.TypeFor[policy.Pod]().PkgPath() {
			for i := range v.NumField() {
				markSet(v.Field(i), join(prefix, jsonName(v.Type().Field(i))), set)
			}
			return
		}
	}
	if !v.IsZero() {
		if b, ok := v.Interface().(bool); !ok || b {
			set[prefix] = true
		}
	}
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// checkAgainstReference decodes raw three ways: DecodeObject (A), the
// reference decoder the API server's serializer is built on into the same
// lean type (B), and into a whole corev1.Pod (C). A must accept only what B
// accepts (a decoder more lenient than the API server's fails), B only what
// A accepts or what A refuses on purpose (duplicate names, invalid UTF-8,
// which the API server never sends), and what A reads must equal both.
func checkAgainstReference(t *testing.T, raw []byte) {
	a, _, errA := DecodeObject(policy.KindPod, raw)
	var b policy.Pod
	errB := kjson.UnmarshalCaseSensitivePreserveInts(raw, &b)
	var c corev1.Pod
	errC := kjson.UnmarshalCaseSensitivePreserveInts(raw, &c)

	switch {
	case errA == nil && errB != nil:
		t.Fatalf("DecodeObject accepts what the reference refuses (%v): %q", errB, raw)
	case errA != nil && errB == nil && !refusedOnPurpose(raw, errA):
		t.Fatalf("DecodeObject refuses what the reference accepts: %v: %q", errA, raw)
	case errA != nil:
		return
	}
	if !apiequality.Semantic.DeepEqual(a, &b) {
		t.Fatalf("DecodeObject\n%#v\nreference\n%#v\nfrom %q", a, &b, raw)
	}
	if errC == nil && !apiequality.Semantic.DeepEqual(a, project(&c)) {
		t.Fatalf("DecodeObject\n%#v\nthe whole Pod's\n%#v\nfrom %q", a, project(&c), raw)
	}
}

func refusedOnPurpose(raw []byte, err error) bool {
	return errors.Is(err, jsontext.ErrDuplicateName) || !utf8.Valid(raw) ||
		strings.Contains(err.Error(), "surrogate") || strings.Contains(err.Error(), "UTF-8")
}

func TestDecodeObjectAgainstReference(t *testing.T) {
	for _, raw := range seeds(t) {
		checkAgainstReference(t, raw)
	}
	for _, raw := range []string{
		`{"spec":{"hostIPC":"yes"}}`,                                     // wrong type in a read field: both refuse
		`{"spec":{"containers":[{"ports":"x","image":"a"}]}}`,            // wrong type in a field not read
		`{"spec":{"HostIPC":true}}`,                                      // case differs: not the field
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":"x"}}}]}}`, // a limit that is no quantity
		`{"spec":{"containers":[{"resources":{"requests":{"cpu":"x"}}}]}}`,
		`{"metadata":{"name":"a","name":"b"}}`, // duplicate: refused on purpose
		`{"metadata":{"labels":{"a":null}}}`,
		`null`,
	} {
		checkAgainstReference(t, []byte(raw))
	}
}

// FuzzDecodeObject: decoding never panics and is two-sided against the
// reference decoder; a decoded object is judged without panicking, the
// same way twice, and an UPDATE that changes nothing is never refused.
func FuzzDecodeObject(f *testing.F) {
	for _, raw := range seeds(f) {
		f.Add(raw)
	}
	f.Add([]byte(`{"metadata":{"namespace":"team-a","name":"a"},"spec":{"color":"blue","size":"large","quantity":50}}`))
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkAgainstReference(t, raw)
		for _, kind := range []policy.Kind{policy.KindPod, policy.KindMyApple} {
			pod, apple, err := DecodeObject(kind, raw)
			if err != nil {
				continue
			}
			req := &policy.Request{Kind: kind, Operation: policy.Create, Pod: pod, MyApple: apple}
			req.Namespace = req.Object().Namespace
			d := set.Evaluate(req, nil)
			if again := set.Evaluate(req, nil); !reflect.DeepEqual(d, again) {
				t.Fatalf("%s judged twice: %+v then %+v", kind, d, again)
			}
			if d.Allowed != (len(d.Denials()) == 0) {
				t.Fatalf("%s: allowed=%v with denials %v", kind, d.Allowed, d.Denials())
			}
			upd := *req
			upd.Operation, upd.OldPod, upd.OldMyApple = policy.Update, pod, apple
			if u := set.Evaluate(&upd, nil); len(u.Violations) != 0 {
				t.Fatalf("%s UPDATE that changes nothing: %v", kind, u.Violations)
			}
		}
	})
}
