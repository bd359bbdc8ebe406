package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/internal/jsonscan"
	"github.com/policy-webhook/policy-webhook/test/workload"
)

// decodeCorpus is every Pod-shaped JSON input the tests know: the fuzz
// seeds of FuzzDecodeObject, the objects of FuzzRequestFromAdmission's
// seeds, and the Pods of manifests/samples.
func decodeCorpus(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"podJSON": []byte(podJSON), "appleJSON": []byte(appleJSON)}
	for name, data := range fuzzSeeds(t, "FuzzDecodeObject") {
		out["FuzzDecodeObject/"+name] = data
	}
	for name, data := range fuzzSeeds(t, "FuzzRequestFromAdmission") {
		var ar admissionv1.AdmissionRequest
		if json.Unmarshal(data, &ar) != nil {
			continue
		}
		if len(ar.Object.Raw) > 0 {
			out["FuzzRequestFromAdmission/"+name+"/object"] = ar.Object.Raw
		}
		if len(ar.OldObject.Raw) > 0 {
			out["FuzzRequestFromAdmission/"+name+"/oldObject"] = ar.OldObject.Raw
		}
	}
	samples, err := filepath.Glob("../manifests/samples/*.yaml")
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples in ../manifests/samples: %v", err)
	}
	pods := 0
	for _, file := range samples {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---") {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			var tm struct{ Kind string }
			if json.Unmarshal(js, &tm) != nil || tm.Kind != KindPod {
				continue
			}
			out[filepath.Base(file)+"/"+strconv.Itoa(i)] = js
			pods++
		}
	}
	if pods == 0 {
		t.Fatal("manifests/samples holds no Pods")
	}
	return out
}

// fuzzSeeds reads the seed corpus of a fuzz target, all single []byte.
func fuzzSeeds(t testing.TB, target string) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimSpace(string(data)), "\n", 2)
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s/%s is not a single []byte seed", dir, e.Name())
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, e.Name(), err)
		}
		out[e.Name()] = []byte(s)
	}
	return out
}

// rulesView is what rules read of a Pod decoded whole: the definition of
// the fields podFields must carry.
func rulesView(full *corev1.Pod) *corev1.Pod {
	view := func(c *corev1.Container) corev1.Container {
		out := corev1.Container{Name: c.Name, Image: c.Image}
		out.Resources.Limits = c.Resources.Limits
		if sc := c.SecurityContext; sc != nil {
			out.SecurityContext = &corev1.SecurityContext{Privileged: sc.Privileged, RunAsNonRoot: sc.RunAsNonRoot, RunAsUser: sc.RunAsUser}
		}
		return out
	}
	p := &corev1.Pod{}
	p.APIVersion, p.Kind = "v1", KindPod
	p.Name, p.GenerateName, p.Namespace = full.Name, full.GenerateName, full.Namespace
	p.Labels, p.DeletionTimestamp = full.Labels, full.DeletionTimestamp
	s := &full.Spec
	p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC = s.HostNetwork, s.HostPID, s.HostIPC
	if psc := s.SecurityContext; psc != nil {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: psc.RunAsNonRoot, RunAsUser: psc.RunAsUser}
	}
	if s.InitContainers != nil {
		p.Spec.InitContainers = []corev1.Container{}
	}
	for i := range s.InitContainers {
		p.Spec.InitContainers = append(p.Spec.InitContainers, view(&s.InitContainers[i]))
	}
	if s.Containers != nil {
		p.Spec.Containers = []corev1.Container{}
	}
	for i := range s.Containers {
		p.Spec.Containers = append(p.Spec.Containers, view(&s.Containers[i]))
	}
	if s.EphemeralContainers != nil {
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{}
	}
	for i := range s.EphemeralContainers {
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(view(&c))})
	}
	if s.Volumes != nil {
		p.Spec.Volumes = []corev1.Volume{}
	}
	for _, v := range s.Volumes {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{HostPath: v.HostPath}})
	}
	return p
}

// checkSameAsWhole checks that the fast decoder accepts whatever
// encoding/json decodes into a whole corev1.Pod, to the same fields and
// the same verdicts; and that what it refuses comes with a reason.
func checkSameAsWhole(t *testing.T, set *Set, raw []byte) {
	t.Helper()
	var full corev1.Pod
	fullErr := json.Unmarshal(raw, &full)
	lean, _, err := DecodeObject(KindPod, raw)
	if err != nil {
		if fullErr == nil {
			t.Fatalf("encoding/json decodes %q, the fast decoder does not: %v", raw, err)
		}
		if !strings.HasPrefix(err.Error(), "decoding Pod: ") || len(err.Error()) <= len("decoding Pod: ") {
			t.Fatalf("error without a reason: %q", err)
		}
		return
	}
	if fullErr != nil {
		// A wrong type in a field no rule reads, skipped as unknown
		// members are: nothing to compare.
		return
	}
	// What the scanner reads is the rules' view of the whole Pod; what it
	// leaves to encoding/json is the whole Pod.
	want := rulesView(&full)
	if scanPodBytes(raw) == nil {
		want = &full
	}
	if !apiequality.Semantic.DeepEqual(lean, want) {
		t.Fatalf("decoding %q\nfast:  %#v\nwhole: %#v", raw, lean, want)
	}
	// Down to nil and empty lists and maps, which Semantic.DeepEqual
	// does not tell apart.
	if !sameNilness(reflect.ValueOf(lean).Elem(), reflect.ValueOf(want).Elem()) {
		t.Fatalf("decoding %q: nil and empty differ\nfast:  %#v\nwhole: %#v", raw, lean, want)
	}
	for _, op := range []Operation{Create, Update} {
		a := &Request{Kind: KindPod, Operation: op, Namespace: full.Namespace, Pod: lean}
		b := &Request{Kind: KindPod, Operation: op, Namespace: full.Namespace, Pod: &full}
		if op == Update {
			a.OldPod, b.OldPod = &corev1.Pod{}, &corev1.Pod{}
		}
		if da, db := set.Evaluate(a, testCluster()), set.Evaluate(b, testCluster()); !sameDecision(da, db) {
			t.Fatalf("%s of %q judged differently\nfast:  %+v\nwhole: %+v", op, raw, da, db)
		}
	}
}

// sameNilness reports whether a and b, of one type, have their nil and
// empty slices and maps in the same places.
func sameNilness(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameNilness(a.Index(i), b.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		return a.IsNil() == b.IsNil() && a.Len() == b.Len()
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameNilness(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() && !sameNilness(a.Field(i), b.Field(i)) {
				return false
			}
		}
	}
	return true
}

func TestDecodePodSameAsWhole(t *testing.T) {
	set := fuzzSet(t)
	for name, raw := range decodeCorpus(t) {
		t.Run(name, func(t *testing.T) { checkSameAsWhole(t, set, raw) })
	}
}

// TestScannerReadsPods: the scanner, not the slower exact decoder, reads
// the Pods the API server sends: every Pod of the samples, Pods with every
// field rules read, and the benchmark's, whatever its container count.
func TestScannerReadsPods(t *testing.T) {
	corpus := map[string][]byte{"podJSON": []byte(podJSON)}
	for name, raw := range decodeCorpus(t) {
		// Fuzz seeds hold what the scanner rightly leaves to the exact decoder.
		if !strings.HasPrefix(name, "Fuzz") {
			corpus[name] = raw
		}
	}
	for _, n := range []int{1, 2, 5} {
		raw, err := json.Marshal(workload.DeploymentPod(n == 5, n))
		if err != nil {
			t.Fatal(err)
		}
		corpus["workload/containers="+strconv.Itoa(n)] = raw
	}
	pods := 0
	for name, raw := range corpus {
		var tm struct{ Kind string }
		if json.Unmarshal(raw, &tm) != nil || tm.Kind != KindPod {
			continue
		}
		pods++
		var s jsonscan.Scanner
		s.Reset(raw)
		if ScanPod(&s) == nil {
			t.Errorf("%s: the scanner gave up: %s", name, s.Reason())
		}
	}
	if pods < 10 {
		t.Fatalf("only %d Pods to read", pods)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, raw := range []string{``, `{`, `{"metadata":{"labels":{"a":1}}}`, `{"metadata":{"labels":[]}}`, `{"metadata":{"labels":{"a":"b",}}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":{}}}}]}}`, `{"spec":{"containers":[{"resources":{"limits":"x"}}]}}`, `{"spec":{"containers":[{"image":7}]}}`,
		`{"spec":{"hostPID":"yes"}}`, `{"spec":{"containers":[{"resources":{"limits":{"cpu":"lots"}}}]}}`,
		`{"metadata":{"deletionTimestamp":"yesterday"}}`, `{"spec":{}} trailing`, "{\"metadata\":{\"name\":\"\xff\"}",
	} {
		_, _, err := DecodeObject(KindPod, []byte(raw))
		if err == nil || !strings.HasPrefix(err.Error(), "decoding Pod: ") {
			t.Errorf("DecodeObject(%q) = %v, want a decoding error", raw, err)
		}
	}
	// What encoding/json accepts, the fast decoder accepts the same way.
	for _, raw := range []string{
		`{"Metadata":{"NAME":"x","labels":{"a":"b"}},"SPEC":{"containers":[{"Image":"nginx"}]}}`,
		`{"metadata":{"name":"a","name":"b"}}`,
		`{"metadata":{"labels":{"a":"1"},"labels":{"b":"2","a":null}}}`,
		`{"metadata":{"labels":{}}}`, `{"metadata":{"labels":null}}`, `{"metadata":{"labels":{"a":"1"},"labels":null}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":2,"memory":"1Gi","cpu":" 500m ","x":null}}},{"resources":{"limits":{}}}]}}`,
		`{"spec":{"containers":[{"resources":{"limits":{"cpu":"1"},"limits":{"memory":"1"}}}]}}`,
		`{"spec":{"containers":[{"resources":{"limits":null}}]}}`,
		"{\"metadata\":{\"labels\":{\"\xff\":\"\xfe\",\"\\u00e9\":\"\\ud800\"}}}",
		"{\"metadata\":{\"name\":\"\xff\"}}",
		`null`, `{"spec":null}`, `{"spec":{"containers":null,"volumes":[]}}`,
	} {
		checkSameAsWhole(t, fuzzSet(t), []byte(raw))
	}
}

// FuzzDecodePod: the fast decoder is encoding/json's equal for every Pod
// encoding/json accepts.
func FuzzDecodePod(f *testing.F) {
	for _, raw := range decodeCorpus(f) {
		f.Add(raw)
	}
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkSameAsWhole(t, set, raw)
	})
}
