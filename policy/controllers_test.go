package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// controllerRequest is the admission of a Pod controller whose template is
// pod (and, on UPDATE, old).
func controllerRequest(kind Kind, old, pod *corev1.Pod) *Request {
	c, ok := PodControllerOf(kind)
	if !ok {
		panic("not a Pod controller: " + kind)
	}
	req := &Request{Kind: KindPod, Operation: Create, Namespace: pod.Namespace, Pod: leanPod(pod), OldPod: leanPod(old),
		Controller: &Controller{PodController: c, Meta: ObjectMeta{Name: "web", Namespace: pod.Namespace}}}
	if old != nil {
		req.Operation = Update
	}
	return req
}

func TestControllersJudgedByTheirTemplate(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/]\n  forbidPrivileged: true\n")
	pod := compliantPod()
	pod.Spec.Containers[0].Image = "evil.io/nginx:latest"
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	for _, c := range PodControllers() {
		t.Run(string(c.Kind), func(t *testing.T) {
			d := set.Evaluate(controllerRequest(c.Kind, nil, pod), testCluster())
			checkViolations(t, d.Violations,
				want{ruleRegistries, c.Template + ".spec.containers[0].image", `"evil.io/nginx:latest"`},
				want{rulePrivileged, c.Template + ".spec.containers[0].securityContext.privileged", `"web"`})
			if d.Allowed {
				t.Error("allowed")
			}
		})
	}
	if PodControllers()[5].Template != "spec.jobTemplate.spec.template" {
		t.Errorf("CronJob template path %q", PodControllers()[5].Template)
	}
}

func TestMatchPodControllers(t *testing.T) {
	pod := compliantPod()
	pod.Spec.Containers[0].Image = "evil.io/nginx:1"
	for _, tc := range []struct {
		name, match string
		judged      []Kind // of the controllers; bare Pods are always judged
	}{
		{"absent: every controller", "", []Kind{KindDeployment, KindReplicaSet, KindStatefulSet, KindDaemonSet, KindJob, KindCronJob, KindReplicationController}},
		{"a list", "match:\n  podControllers: [Deployment, CronJob]\n", []Kind{KindDeployment, KindCronJob}},
		{"empty: bare Pods only", "match:\n  podControllers: []\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := clusterPolicy(t, tc.match+"pods:\n  allowedRegistries: [registry.example.com/]\n")
			if d := set.Evaluate(podRequest(pod), testCluster()); d.Allowed {
				t.Error("the bare Pod was allowed")
			}
			for _, c := range PodControllers() {
				d := set.Evaluate(controllerRequest(c.Kind, nil, pod), testCluster())
				judged := len(d.Violations) > 0
				want := false
				for _, k := range tc.judged {
					want = want || k == c.Kind
				}
				if judged != want {
					t.Errorf("%s judged=%v, want %v", c.Kind, judged, want)
				}
			}
		})
	}
}

func TestPodControllersValidation(t *testing.T) {
	for _, tc := range []struct{ spec, field string }{
		{"match:\n  podControllers: [Deployment, Pod]\npods:\n  forbidPrivileged: true\n", "match.podControllers[1]"},
		{"match:\n  podControllers: [Job, Job]\npods:\n  forbidPrivileged: true\n", "match.podControllers[1]"},
		{"match:\n  kinds: [MyApple]\n  podControllers: [Job]\nmyApples:\n  minQuantity: 1\n", "match.podControllers"},
	} {
		errs := compileErrors(t, tc.spec)
		if len(errs) != 1 || errs[0].Field != tc.field {
			t.Errorf("%q: errors %v, want one at %s", tc.spec, errs, tc.field)
		}
	}
}

// An update that leaves the template alone (scale, pause, a label on the
// controller, a finalizer removed) always passes; a template change is
// judged for what it introduces.
func TestControllerUpdate(t *testing.T) {
	set := clusterPolicy(t, "pods:\n  allowedRegistries: [registry.example.com/]\n  requiredLabels: [app]\n")
	old := compliantPod()
	old.Spec.Containers[0].Image = "evil.io/nginx:1"
	t.Run("template unchanged", func(t *testing.T) {
		if d := set.Evaluate(controllerRequest(KindDeployment, old, old.DeepCopy()), testCluster()); len(d.Violations) != 0 {
			t.Errorf("violations %v", d.Violations)
		}
	})
	t.Run("template fixed", func(t *testing.T) {
		pod := old.DeepCopy()
		pod.Spec.Containers[0].Image = "registry.example.com/nginx:1"
		if d := set.Evaluate(controllerRequest(KindDeployment, old, pod), testCluster()); len(d.Violations) != 0 {
			t.Errorf("violations %v", d.Violations)
		}
	})
	t.Run("template breaks another rule", func(t *testing.T) {
		pod := old.DeepCopy()
		pod.Labels = nil
		d := set.Evaluate(controllerRequest(KindDeployment, old, pod), testCluster())
		checkViolations(t, d.Violations, want{ruleLabels, "spec.template.metadata.labels[app]", `"app"`})
		if d.Allowed {
			t.Error("allowed")
		}
	})
}

// objectSelector reads the template's labels, the Pods' to be.
func TestControllerObjectSelector(t *testing.T) {
	set := clusterPolicy(t, "match:\n  objectSelector: {matchLabels: {tier: web}}\npods:\n  allowedRegistries: [registry.example.com/]\n")
	pod := compliantPod()
	pod.Spec.Containers[0].Image = "evil.io/nginx:1"
	req := controllerRequest(KindDeployment, nil, pod)
	req.Controller.Meta.Labels = map[string]string{"tier": "web"}
	if d := set.Evaluate(req, testCluster()); len(d.Violations) != 0 {
		t.Errorf("judged by the controller's labels: %v", d.Violations)
	}
	pod.Labels["tier"] = "web"
	if d := set.Evaluate(controllerRequest(KindDeployment, nil, pod), testCluster()); d.Allowed {
		t.Error("the template's labels were not read")
	}
}

func compileErrors(t *testing.T, yaml string) field.ErrorList {
	t.Helper()
	spec, err := specOf(yaml)
	if err != nil {
		t.Fatal(err)
	}
	_, errs := Compile(Source{Kind: SourceAdmissionPolicy, Name: "p"}, "", spec)
	return errs
}
