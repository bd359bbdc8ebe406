package policy

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

const latestPolicy = "pods:\n  disallowedTags: [latest]\n"

// latestPod runs nginx without a tag: it breaks latestPolicy once.
func latestPod(namespace string) *corev1.Pod {
	pod := compliantPod()
	pod.Namespace = namespace
	pod.Spec.Containers[0].Image = "nginx"
	return pod
}

func sources(d Decision) []string {
	var out []string
	for _, v := range d.Violations {
		out = append(out, v.Source)
	}
	return out
}

func TestCarriersAndScopes(t *testing.T) {
	set := NewSet([]*Policy{
		configMapPolicy(t, "team-a", "team-a-tags", latestPolicy),
		configMapPolicy(t, testPolicyNamespace, "cluster-tags", latestPolicy),
		admissionPolicy(t, "no-latest", latestPolicy),
	})
	tests := []struct {
		namespace string
		want      []string
	}{
		// A ConfigMap applies in its own namespace; one in the policy
		// namespace and an AdmissionPolicy apply everywhere.
		{"team-a", []string{"AdmissionPolicy no-latest", "ConfigMap policy-system/cluster-tags", "ConfigMap team-a/team-a-tags"}},
		{"team-b", []string{"AdmissionPolicy no-latest", "ConfigMap policy-system/cluster-tags"}},
		{"unknown", []string{"AdmissionPolicy no-latest", "ConfigMap policy-system/cluster-tags"}},
		{testPolicyNamespace, []string{"AdmissionPolicy no-latest", "ConfigMap policy-system/cluster-tags"}},
	}
	for _, tt := range tests {
		t.Run(tt.namespace, func(t *testing.T) {
			got := sources(set.Evaluate(podRequest(latestPod(tt.namespace)), testCluster()))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("sources %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigMapScope(t *testing.T) {
	if got := ConfigMapScope("team-a", "policy-system"); got != "team-a" {
		t.Errorf("ConfigMapScope(team-a) = %q, want team-a", got)
	}
	if got := ConfigMapScope("policy-system", "policy-system"); got != "" {
		t.Errorf("ConfigMapScope(policy-system) = %q, want cluster-wide", got)
	}
	if !IsPolicyConfigMap(map[string]string{PolicyLabel: "true"}) {
		t.Error("labelled ConfigMap is not a policy")
	}
	for _, l := range []map[string]string{nil, {PolicyLabel: "false"}, {PolicyLabel: "True"}, {"app": "x"}} {
		if IsPolicyConfigMap(l) {
			t.Errorf("IsPolicyConfigMap(%v) = true", l)
		}
	}
	if s := (Source{Kind: SourceConfigMap, Namespace: "team-a", Name: "registries"}).String(); s != "ConfigMap team-a/registries" {
		t.Errorf("ConfigMap source is %q", s)
	}
	if s := (Source{Kind: SourceAdmissionPolicy, Name: "trusted-registries"}).String(); s != "AdmissionPolicy trusted-registries" {
		t.Errorf("AdmissionPolicy source is %q", s)
	}
}

func TestMatchKinds(t *testing.T) {
	const rules = "pods:\n  requiredLabels: [app]\nmyApples:\n  allowedColors: [red]\n"
	tests := []struct {
		name, yaml         string
		judgesPod, judgesA bool
	}{
		{"default is both", rules, true, true},
		{"both", "match:\n  kinds: [Pod, MyApple]\n" + rules, true, true},
		{"MyApple", "match:\n  kinds: [MyApple]\nmyApples:\n  allowedColors: [red]\n", false, true},
		{"Pod", "match:\n  kinds: [Pod]\npods:\n  requiredLabels: [app]\n", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := clusterPolicy(t, tt.yaml)
			pod := compliantPod()
			pod.Labels = nil
			if got := len(set.Evaluate(podRequest(pod), testCluster()).Violations) > 0; got != tt.judgesPod {
				t.Errorf("judges Pod = %v, want %v", got, tt.judgesPod)
			}
			if got := len(set.Evaluate(appleRequest(apple("team-a", "a", "blue", "small", 1)), testCluster()).Violations) > 0; got != tt.judgesA {
				t.Errorf("judges MyApple = %v, want %v", got, tt.judgesA)
			}
		})
	}
}

func TestMatchNamespaceSelector(t *testing.T) {
	tests := []struct {
		name, selector string
		applies        map[string]bool // namespace -> policy applies
	}{
		{"matchLabels", "{matchLabels: {env: prod}}", map[string]bool{"team-a": true, "team-b": false, "kube-system": false, "unknown": false}},
		{"NotIn", "{matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}", map[string]bool{"team-a": false, "team-b": true, "kube-system": true, "unknown": true}},
		{"Exists", "{matchExpressions: [{key: env, operator: Exists}]}", map[string]bool{"team-a": true, "team-b": true, "kube-system": false, "unknown": false}},
		// A namespace the cache has not seen still has the label the API
		// server puts on every namespace.
		{"metadata.name", "{matchLabels: {kubernetes.io/metadata.name: unknown}}", map[string]bool{"team-a": false, "unknown": true}},
		{"empty selects all", "{}", map[string]bool{"team-a": true, "team-b": true, "unknown": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := clusterPolicy(t, "match:\n  namespaceSelector: "+tt.selector+"\n"+latestPolicy)
			for ns, applies := range tt.applies {
				if got := len(set.Evaluate(podRequest(latestPod(ns)), testCluster()).Violations) > 0; got != applies {
					t.Errorf("namespace %s: applies = %v, want %v", ns, got, applies)
				}
			}
		})
	}
	t.Run("nil cluster", func(t *testing.T) {
		set := clusterPolicy(t, "match:\n  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: team-a}}\n"+latestPolicy)
		if d := set.Evaluate(podRequest(latestPod("team-a")), nil); len(d.Violations) != 1 {
			t.Errorf("nil cluster: %v, want the policy to apply by the namespace's name label", d.Violations)
		}
	})
}

func TestMatchObjectSelector(t *testing.T) {
	set := clusterPolicy(t, "match:\n  objectSelector: {matchLabels: {tier: frontend}}\n"+latestPolicy+"myApples:\n  allowedColors: [red]\n")
	pod := latestPod("team-a")
	if d := set.Evaluate(podRequest(pod), testCluster()); len(d.Violations) != 0 {
		t.Errorf("pod without the label judged: %v", d.Violations)
	}
	pod.Labels["tier"] = "frontend"
	if d := set.Evaluate(podRequest(pod), testCluster()); len(d.Violations) != 1 {
		t.Errorf("pod with the label: %v, want one violation", d.Violations)
	}
	a := apple("team-a", "a", "blue", "small", 1)
	if d := set.Evaluate(appleRequest(a), testCluster()); len(d.Violations) != 0 {
		t.Errorf("MyApple without the label judged: %v", d.Violations)
	}
	a.Labels = map[string]string{"tier": "frontend"}
	if d := set.Evaluate(appleRequest(a), testCluster()); len(d.Violations) != 1 {
		t.Errorf("MyApple with the label: %v, want one violation", d.Violations)
	}
}

// TestMatchObjectSelectorOnUpdate: as with a webhook's own objectSelector,
// an UPDATE is judged when the old object or the new one matches, so that
// removing a label in the same update cannot take an object out of a policy.
func TestMatchObjectSelectorOnUpdate(t *testing.T) {
	set := clusterPolicy(t, "match:\n  objectSelector: {matchLabels: {tier: frontend}}\n"+latestPolicy+"myApples:\n  allowedColors: [red]\n")
	old := compliantPod()
	old.Labels["tier"] = "frontend"
	pod := old.DeepCopy()
	delete(pod.Labels, "tier")
	pod.Spec.Containers[0].Image = "nginx"
	checkViolations(t, set.Evaluate(podUpdate(old, pod), testCluster()).Violations, want{ruleTags, "spec.containers[0].image", `image "nginx"`})
	// Adding the label is judged as well, from the new object.
	checkViolations(t, set.Evaluate(podUpdate(pod, old), testCluster()).Violations)
	unlabelled := compliantPod()
	changed := unlabelled.DeepCopy()
	changed.Spec.Containers[0].Image = "nginx"
	checkViolations(t, set.Evaluate(podUpdate(unlabelled, changed), testCluster()).Violations)

	oldApple := apple("team-a", "a", "red", "small", 1)
	oldApple.Labels = map[string]string{"tier": "frontend"}
	a := cloneApple(oldApple)
	a.Labels = nil
	a.Spec.Color = "blue"
	checkViolations(t, set.Evaluate(appleUpdate(oldApple, a), testCluster()).Violations, want{ruleColors, "spec.color", `"blue"`})
}

func TestMatchExcludedNamespaces(t *testing.T) {
	set := NewSet([]*Policy{
		admissionPolicy(t, "no-latest", "match:\n  excludedNamespaces: [kube-system, team-b]\n"+latestPolicy),
		configMapPolicy(t, "team-b", "own", "match:\n  excludedNamespaces: [team-b]\n"+latestPolicy),
	})
	for ns, applies := range map[string]bool{"team-a": true, "team-b": false, "kube-system": false, "unknown": true} {
		if got := len(set.Evaluate(podRequest(latestPod(ns)), testCluster()).Violations) > 0; got != applies {
			t.Errorf("namespace %s: applies = %v, want %v", ns, got, applies)
		}
	}
}

func TestEnforcement(t *testing.T) {
	tests := []struct {
		enforcement          string
		allowed              bool
		denials, warns, auds int
	}{
		{"", false, 1, 0, 0},
		{"enforcement: Deny\n", false, 1, 0, 0},
		{"enforcement: Warn\n", true, 0, 1, 0},
		{"enforcement: Audit\n", true, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.enforcement, func(t *testing.T) {
			d := clusterPolicy(t, tt.enforcement+latestPolicy).Evaluate(podRequest(latestPod("team-a")), testCluster())
			if d.Allowed != tt.allowed || len(d.Denials()) != tt.denials || len(d.Warnings()) != tt.warns || len(d.only(v1alpha1.Audit)) != tt.auds {
				t.Errorf("allowed=%v denials=%d warnings=%d audits=%d, want %v %d %d %d",
					d.Allowed, len(d.Denials()), len(d.Warnings()), len(d.only(v1alpha1.Audit)), tt.allowed, tt.denials, tt.warns, tt.auds)
			}
			if len(d.Violations) != 1 {
				t.Fatalf("violations %v, want every enforcement listed", d.Violations)
			}
			if (d.Message() != "") != !tt.allowed {
				t.Errorf("message %q for allowed=%v", d.Message(), d.Allowed)
			}
		})
	}
}

func TestEnforcementMixed(t *testing.T) {
	set := NewSet([]*Policy{
		admissionPolicy(t, "deny-labels", "pods:\n  requiredLabels: [owner]\n"),
		admissionPolicy(t, "warn-tags", "enforcement: Warn\n"+latestPolicy),
		admissionPolicy(t, "audit-digest", "enforcement: Audit\npods:\n  requireDigest: true\n"),
	})
	d := set.Evaluate(podRequest(latestPod("team-a")), testCluster())
	if d.Allowed {
		t.Error("allowed despite a Deny violation")
	}
	wantWarn := `AdmissionPolicy warn-tags pods.disallowedTags spec.containers[0].image: image "nginx" has no tag, so it means tag "latest", which is not allowed: pin a version or a digest`
	if w := d.Warnings(); len(w) != 1 || w[0] != wantWarn {
		t.Errorf("warnings %q, want [%q]", w, wantWarn)
	}
	if a := d.only(v1alpha1.Audit); len(a) != 1 || a[0].Rule != ruleDigest || a[0].Enforcement != "Audit" {
		t.Errorf("audits %v", a)
	}
	want := `policy violation: AdmissionPolicy deny-labels pods.requiredLabels metadata.labels[owner]: missing required label "owner"`
	if d.Message() != want {
		t.Errorf("message %q, want %q: only Deny violations", d.Message(), want)
	}
	// Warn and Audit alone admit.
	pod := latestPod("team-a")
	pod.Labels["owner"] = "me"
	if d := set.Evaluate(podRequest(pod), testCluster()); !d.Allowed || len(d.Violations) != 2 {
		t.Errorf("warn+audit: allowed=%v violations=%v", d.Allowed, d.Violations)
	}
}

func TestDecisionMessage(t *testing.T) {
	set := NewSet([]*Policy{
		configMapPolicy(t, "team-a", "registries", "pods:\n  allowedRegistries: [registry.example.com/]\n"),
		admissionPolicy(t, "no-latest", latestPolicy),
	})
	pod := latestPod("team-a")
	pod.Spec.InitContainers[0].Image = "registry.example.com/team-a/migrate"
	d := set.Evaluate(podRequest(pod), testCluster())
	want := `3 policy violations:
- AdmissionPolicy no-latest pods.disallowedTags spec.initContainers[0].image: image "registry.example.com/team-a/migrate" has no tag, so it means tag "latest", which is not allowed: pin a version or a digest
- AdmissionPolicy no-latest pods.disallowedTags spec.containers[0].image: image "nginx" has no tag, so it means tag "latest", which is not allowed: pin a version or a digest
- ConfigMap team-a/registries pods.allowedRegistries spec.containers[0].image: image "nginx" resolves to docker.io/library/nginx:latest, which is not under an allowed registry (registry.example.com/)`
	if got := d.Message(); got != want {
		t.Errorf("message:\n%s\nwant:\n%s", got, want)
	}
	if (&Decision{Allowed: true}).Message() != "" {
		t.Error("an admitted request has a message")
	}
}

// TestViolationOrder: whatever order policies arrive in (informer events
// come in any order), violations come out in the same order.
func TestViolationOrder(t *testing.T) {
	ps := []*Policy{
		configMapPolicy(t, "team-a", "b", latestPolicy),
		configMapPolicy(t, "team-a", "a", latestPolicy),
		configMapPolicy(t, testPolicyNamespace, "z", latestPolicy),
		configMapPolicy(t, testPolicyNamespace, "y", latestPolicy),
		admissionPolicy(t, "n", latestPolicy),
		admissionPolicy(t, "m", latestPolicy),
	}
	var first []string
	for i := 0; i < 20; i++ {
		perm := append([]*Policy(nil), ps...)
		for j := range perm { // a fixed, varied shuffle
			k := (j*7 + i*3) % len(perm)
			perm[j], perm[k] = perm[k], perm[j]
		}
		got := sources(NewSet(perm).Evaluate(podRequest(latestPod("team-a")), testCluster()))
		if first == nil {
			first = got
		} else if fmt.Sprint(got) != fmt.Sprint(first) {
			t.Fatalf("order %q differs from %q", got, first)
		}
	}
	if len(first) != len(ps) {
		t.Fatalf("%d violations from %d policies", len(first), len(ps))
	}
}

// TestUpdateForgivesWhatTheOldObjectHad: a Pod or MyApple admitted before a
// policy existed can still be relabelled, while anything the update
// introduces is judged.
func TestUpdateForgivesWhatTheOldObjectHad(t *testing.T) {
	set := clusterPolicy(t, `pods:
  allowedRegistries: [registry.example.com/]
  disallowedTags: [latest]
  requiredLabels: [app]
  forbidPrivileged: true
myApples:
  allowedColors: [red]
  maxQuantity: 10
`)
	oldPod := latestPod("team-a")
	oldPod.Labels = nil

	t.Run("label change keeps old violations", func(t *testing.T) {
		pod := oldPod.DeepCopy()
		pod.Labels = map[string]string{"team": "a"}
		d := set.Evaluate(podUpdate(oldPod, pod), testCluster())
		checkViolations(t, d.Violations)
		if !d.Allowed {
			t.Error("denied")
		}
	})
	t.Run("new image is judged", func(t *testing.T) {
		pod := oldPod.DeepCopy()
		pod.Spec.Containers[0].Image = "nginx:latest"
		checkViolations(t, set.Evaluate(podUpdate(oldPod, pod), testCluster()).Violations,
			want{ruleRegistries, "spec.containers[0].image", `image "nginx:latest"`},
			want{ruleTags, "spec.containers[0].image", `image "nginx:latest" uses tag "latest"`})
	})
	t.Run("fixing one violation", func(t *testing.T) {
		pod := oldPod.DeepCopy()
		pod.Spec.Containers[0].Image = "registry.example.com/team-a/web:1"
		checkViolations(t, set.Evaluate(podUpdate(oldPod, pod), testCluster()).Violations)
	})
	t.Run("new ephemeral container is judged", func(t *testing.T) {
		pod := oldPod.DeepCopy()
		pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: "registry.example.com/tools/debug:1", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}}
		req := podUpdate(oldPod, pod)
		req.SubResource = SubResEphemeral
		d := set.Evaluate(req, testCluster())
		checkViolations(t, d.Violations, want{rulePrivileged, "spec.ephemeralContainers[0].securityContext.privileged", `"debug"`})
		if d.Allowed {
			t.Error("allowed")
		}
	})
	t.Run("UPDATE without the old object is judged in full", func(t *testing.T) {
		req := podUpdate(nil, oldPod.DeepCopy())
		if d := set.Evaluate(req, testCluster()); len(d.Violations) != 3 {
			t.Errorf("violations %v, want 3", d.Violations)
		}
	})
	t.Run("CREATE is judged in full", func(t *testing.T) {
		if d := set.Evaluate(podRequest(oldPod.DeepCopy()), testCluster()); len(d.Violations) != 3 {
			t.Errorf("violations %v, want 3", d.Violations)
		}
	})

	oldApple := apple("team-a", "a", "blue", "small", 20)
	t.Run("MyApple label change", func(t *testing.T) {
		a := cloneApple(oldApple)
		a.Labels = map[string]string{"x": "y"}
		checkViolations(t, set.Evaluate(appleUpdate(oldApple, a), testCluster()).Violations)
	})
	t.Run("MyApple new color is judged", func(t *testing.T) {
		a := cloneApple(oldApple)
		a.Spec.Color = "purple"
		checkViolations(t, set.Evaluate(appleUpdate(oldApple, a), testCluster()).Violations, want{ruleColors, "spec.color", `"purple"`})
	})
	t.Run("MyApple changed quantity still over the maximum is judged", func(t *testing.T) {
		a := cloneApple(oldApple)
		a.Spec.Quantity = 15
		checkViolations(t, set.Evaluate(appleUpdate(oldApple, a), testCluster()).Violations, want{ruleMax, "spec.quantity", "quantity 15"})
	})
}

// cloneApple copies a MyApple whose maps tests replace rather than edit.
func cloneApple(a *MyApple) *MyApple {
	c := *a
	return &c
}

// An object being deleted is judged like any other: removing its
// finalizers changes nothing a rule reads, so it always passes, but an
// image swapped or a quantity raised on the way out is refused.
func TestDeletingObjectIsJudged(t *testing.T) {
	set := clusterPolicy(t, latestPolicy+"  allowedRegistries: [docker.io/library/]\nmyApples:\n  allowedColors: [red]\n  maxTotalQuantityPerNamespace: 10\n")
	now := metav1.Now()
	old := latestPod("team-a")
	old.DeletionTimestamp = &now
	old.Finalizers = []string{"example.com/cleanup"}

	done := old.DeepCopy()
	done.Finalizers = nil
	if d := set.Evaluate(podUpdate(old, done), testCluster()); !d.Allowed || len(d.Violations) != 0 {
		t.Errorf("finalizer removed from a Pod being deleted: %v", d.Violations)
	}
	swapped := old.DeepCopy()
	swapped.Spec.Containers[0].Image = "evil.io/x:1"
	d := set.Evaluate(podUpdate(old, swapped), testCluster())
	checkViolations(t, d.Violations, want{ruleRegistries, "spec.containers[0].image", `"evil.io/x:1"`})
	if d.Allowed {
		t.Error("image swapped on a Pod being deleted was admitted")
	}

	a := apple("team-a", "a", "blue", "small", 5)
	a.DeletionTimestamp = &now
	if d := set.Evaluate(appleUpdate(a, cloneApple(a)), testCluster()); !d.Allowed || len(d.Violations) != 0 {
		t.Errorf("MyApple being deleted, unchanged: %v", d.Violations)
	}
	raised := cloneApple(a)
	raised.Spec.Quantity = 1000
	if d := set.Evaluate(appleUpdate(a, raised), testCluster()); d.Allowed {
		t.Errorf("quantity raised on a MyApple being deleted was admitted: %v", d.Violations)
	}
}

func TestEvaluateOddRequests(t *testing.T) {
	set := clusterPolicy(t, latestPolicy+"myApples:\n  allowedColors: [red]\n")
	for name, req := range map[string]*Request{
		"other kind":      {Kind: "Deployment", Operation: Create, Namespace: "team-a"},
		"Pod without pod": {Kind: KindPod, Operation: Create, Namespace: "team-a"},
		"MyApple without": {Kind: KindMyApple, Operation: Update, Namespace: "team-a"},
	} {
		if d := set.Evaluate(req, nil); !d.Allowed || len(d.Violations) != 0 {
			t.Errorf("%s: %v", name, d.Violations)
		}
	}
	if d := NewSet(nil).Evaluate(podRequest(latestPod("team-a")), nil); !d.Allowed {
		t.Error("empty set denied")
	}
}

// Whatever the policy and the object, what a decision writes back stays
// small: a 1 MB allowlist is named by its first entries, a refusal lists
// MaxListed violations and counts the rest, and a value quoted from the
// object is cut.
func TestDecisionOutputIsBounded(t *testing.T) {
	var regs strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&regs, "r%d.example.com/team/, ", i)
	}
	set := clusterPolicy(t, "pods:\n  allowedRegistries: ["+strings.TrimSuffix(regs.String(), ", ")+"]\n  forbidHostPath: true\n")
	warn := NewSet([]*Policy{configMapPolicy(t, testPolicyNamespace, "w", "enforcement: Warn\npods:\n  disallowedTags: [latest]\n")})
	pod := compliantPod()
	pod.Spec.Containers = nil
	for i := range 300 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "evil.io/x"})
	}
	pod.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/" + strings.Repeat("a", 1<<20)}}}}

	d := set.Evaluate(podRequest(pod), testCluster())
	if d.Allowed || len(d.Denials()) != 302 {
		t.Fatalf("allowed %v with %d denials, want 302", d.Allowed, len(d.Denials()))
	}
	for _, v := range d.Violations {
		if len(v.Message) > MaxMessageBytes {
			t.Fatalf("message of %d bytes: %.200s...", len(v.Message), v.Message)
		}
	}
	if !strings.Contains(d.Violations[1].Message, "r4.example.com/team/ and 39995 more)") {
		t.Errorf("allowlist in the message: %s", d.Violations[1].Message)
	}
	msg := d.Message()
	if len(msg) > 16<<10 || !strings.HasSuffix(msg, fmt.Sprintf("\n- and %d more", 302-MaxListed)) || strings.Count(msg, "\n- ") != MaxListed+1 {
		t.Errorf("refusal of %d bytes, %d lines, ends %q", len(msg), strings.Count(msg, "\n"), msg[max(0, len(msg)-40):])
	}
	wd := warn.Evaluate(podRequest(pod), testCluster())
	w := wd.Warnings()
	if len(w) != MaxListed+1 || w[MaxListed] != fmt.Sprintf("and %d more policy warnings", 300-MaxListed) {
		t.Errorf("%d warnings, last %q", len(w), w[len(w)-1])
	}
}
