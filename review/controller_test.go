package review

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/policy"
)

// controllers returns one object of each Pod controller kind, typed as the
// API defines them, each with tmpl as its Pod template.
func controllers(tmpl corev1.PodTemplateSpec) map[policy.Kind]runtime.Object {
	meta := metav1.ObjectMeta{Name: "web", Namespace: "team-b", UID: "u-1", Labels: map[string]string{"on": "controller"}}
	return map[policy.Kind]runtime.Object{
		policy.KindDeployment:  &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}},
		policy.KindReplicaSet:  &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}},
		policy.KindStatefulSet: &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}},
		policy.KindDaemonSet:   &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}},
		policy.KindJob:         &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}},
		policy.KindCronJob: &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "@hourly",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
		policy.KindReplicationController: &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}},
	}
}

func podTemplate(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDecodeControllers(t *testing.T) {
	objs := controllers(podTemplate("evil.io/nginx:latest"))
	olds := controllers(podTemplate("registry.example.com/nginx:1"))
	if len(objs) != len(policy.PodControllers()) {
		t.Fatalf("the test covers %d kinds, policy names %d", len(objs), len(policy.PodControllers()))
	}
	for kind, obj := range objs {
		t.Run(string(kind), func(t *testing.T) {
			req, err := Decode(kind, mustJSON(t, obj), mustJSON(t, olds[kind]), "")
			if err != nil {
				t.Fatal(err)
			}
			c := req.Controller
			switch {
			case req.Kind != policy.KindPod || req.Operation != policy.Update || c == nil:
				t.Fatalf("kind %q operation %q controller %v: want the Pod of an UPDATE's template", req.Kind, req.Operation, c)
			case c.Kind != kind || c.Meta.Name != "web" || c.Meta.UID != "u-1" || req.Name() != "web" || req.ObjectKind() != kind:
				t.Errorf("controller %+v, name %q: want %s web", c, req.Name(), kind)
			case req.Namespace != "team-b" || req.Pod.Namespace != "team-b" || req.OldPod.Namespace != "team-b":
				t.Errorf("namespaces %q, %q, %q: want the controller's", req.Namespace, req.Pod.Namespace, req.OldPod.Namespace)
			case !reflect.DeepEqual(req.Pod.Labels, map[string]string{"app": "web"}):
				t.Errorf("labels %v: want the template's", req.Pod.Labels)
			case req.Pod.Spec.Containers[0].Image != "evil.io/nginx:latest" || req.OldPod.Spec.Containers[0].Image != "registry.example.com/nginx:1":
				t.Errorf("images %q, %q", req.Pod.Spec.Containers[0].Image, req.OldPod.Spec.Containers[0].Image)
			}
			wantPath := "spec.template"
			if kind == policy.KindCronJob {
				wantPath = "spec.jobTemplate.spec.template"
			}
			if c.Template != wantPath {
				t.Errorf("template path %q, want %q", c.Template, wantPath)
			}
			// CEL reads the same Pod, as a Pod.
			pod, old, err := req.Unstructured()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []map[string]any{pod, old} {
				md := m["metadata"].(map[string]any)
				if m["kind"] != "Pod" || m["apiVersion"] != "v1" || md["namespace"] != "team-b" || md["labels"].(map[string]any)["app"] != "web" {
					t.Errorf("CEL object %v: want the template's Pod in team-b", m)
				}
			}
			if img := pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "evil.io/nginx:latest" {
				t.Errorf("CEL object image %v", img)
			}
		})
	}
}

func TestDecodeControllerErrors(t *testing.T) {
	for _, tc := range []struct {
		kind policy.Kind
		raw  string
		err  string
	}{
		{policy.KindDeployment, `{"metadata":{"name":"a"},"spec":{}}`, "spec.template: required"},
		{policy.KindCronJob, `{"metadata":{"name":"a"},"spec":{"template":{"spec":{}}}}`, "spec.jobTemplate.spec.template: required"},
		{policy.KindJob, `{"metadata":{"name":"a"},"spec":{"template":{"spec":{"containers":7}}}}`, "Job"},
		{policy.KindDeployment, ``, "empty"},
	} {
		if _, err := Decode(tc.kind, []byte(tc.raw), nil, "team-a"); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s %s: error %v, want %q", tc.kind, tc.raw, err, tc.err)
		}
	}
}

// FuzzDecodeController: decoding a Pod controller never panics; what it
// decodes, the typed decoder and CEL's unstructured one agree on; a
// decoded controller is judged the same way twice, with every violation
// naming a field under its template, and an UPDATE that changes nothing
// is never refused.
func FuzzDecodeController(f *testing.F) {
	for _, obj := range controllers(podTemplate("evil.io/nginx:latest")) {
		f.Add(mustJSON(f, obj))
	}
	f.Add([]byte(`{"metadata":{"name":"a","namespace":"n"},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"tier":"batch"}},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}],"hostPID":true}}}}}}`))
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, c := range policy.PodControllers() {
			req, err := Decode(c.Kind, raw, nil, "team-a")
			if err != nil {
				continue
			}
			if req.Pod == nil || req.Controller == nil || req.Kind != policy.KindPod {
				t.Fatalf("%s decoded to %+v", c.Kind, req)
			}
			if pod, _, err := req.Unstructured(); err == nil {
				again, _, derr := DecodeObject(policy.KindPod, mustJSON(t, pod))
				if derr == nil && !reflect.DeepEqual(again.Spec, req.Pod.Spec) {
					t.Fatalf("%s: the template's Pod decodes to %+v, CEL's copy of it to %+v", c.Kind, req.Pod.Spec, again.Spec)
				}
			}
			d := set.Evaluate(req, nil)
			if again := set.Evaluate(req, nil); !reflect.DeepEqual(d, again) {
				t.Fatalf("%s judged twice: %+v then %+v", c.Kind, d, again)
			}
			for _, v := range d.Violations {
				if v.Field != "" && !strings.HasPrefix(v.Field, c.Template+".") {
					t.Fatalf("%s: violation %v names a field outside %s", c.Kind, v, c.Template)
				}
			}
			upd := *req
			upd.Operation, upd.OldPod = policy.Update, req.Pod
			if u := set.Evaluate(&upd, nil); len(u.Violations) != 0 {
				t.Fatalf("%s UPDATE that changes nothing: %v", c.Kind, u.Violations)
			}
		}
	})
}
