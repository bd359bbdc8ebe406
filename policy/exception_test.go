package policy

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

var exceptionNow = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

const rootPolicy = "pods:\n  requireRunAsNonRoot: true\n  disallowedTags: [latest]\n"

// rootPod runs as root (no runAsNonRoot) but otherwise complies.
func rootPod(namespace, name string, lbls map[string]string) *corev1.Pod {
	pod := compliantPod()
	pod.Namespace, pod.Name, pod.Labels = namespace, name, lbls
	pod.Spec.SecurityContext = nil
	pod.Spec.InitContainers = nil
	return pod
}

func exceptionSpec(t testing.TB, yaml string) *v1alpha1.PolicyExceptionSpec {
	t.Helper()
	var spec v1alpha1.PolicyExceptionSpec
	if err := sigsyaml.UnmarshalStrict([]byte(yaml), &spec); err != nil {
		t.Fatalf("parsing exception: %v", err)
	}
	return &spec
}

func compileException(t testing.TB, namespace, name, yaml string) *Exception {
	t.Helper()
	x, errs := CompileException(namespace, name, "1", exceptionSpec(t, yaml), testPolicyNamespace)
	if len(errs) > 0 {
		t.Fatalf("compiling exception %s/%s: %v", namespace, name, errs.ToAggregate())
	}
	return x
}

const legacyRoot = `reason: vendor image runs as root (TICKET-123)
expiresAt: "2027-01-31T00:00:00Z"
exceptions:
- policy: {kind: ConfigMap, namespace: policy-system, name: baseline}
  rules: [pods.requireRunAsNonRoot]
`

func TestExceptionEvaluate(t *testing.T) {
	baseline := configMapPolicy(t, testPolicyNamespace, "baseline", rootPolicy)
	expiry := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		exceptions map[string]string // namespace/name → spec
		pod        *corev1.Pod
		now        time.Time
		allowed    bool
		warning    string // a part of the first warning; "" none
	}{
		{"no exception", nil, rootPod("team-a", "legacy-db", nil), exceptionNow, false, ""},
		{"same namespace", map[string]string{"team-a/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), exceptionNow, true,
			"excepted by PolicyException team-a/legacy-root until 2027-01-31: ConfigMap policy-system/baseline pods.requireRunAsNonRoot"},
		{"another team's namespace", map[string]string{"team-b/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), exceptionNow, false, ""},
		{"from the policy namespace", map[string]string{"policy-system/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), exceptionNow, true, "policy-system/legacy-root"},
		{"an instant before expiry", map[string]string{"team-a/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), expiry.Add(-time.Nanosecond), true, "until 2027-01-31"},
		{"at expiry", map[string]string{"team-a/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), expiry, false, ""},
		{"no clock applies none", map[string]string{"team-a/legacy-root": legacyRoot}, rootPod("team-a", "legacy-db", nil), time.Time{}, false, ""},
		{"other rule not lifted", map[string]string{"team-a/legacy-root": legacyRoot}, func() *corev1.Pod {
			p := rootPod("team-a", "legacy-db", nil)
			p.Spec.Containers[0].Image = "nginx"
			return p
		}(), exceptionNow, false, "excepted by PolicyException team-a/legacy-root"},
		{"other policy not lifted", map[string]string{"team-a/x": strings.Replace(legacyRoot, "name: baseline", "name: other", 1)}, rootPod("team-a", "legacy-db", nil), exceptionNow, false, ""},
		{"names glob matches", map[string]string{"team-a/x": legacyRoot + "match: {names: [\"legacy-*\"]}\n"}, rootPod("team-a", "legacy-db", nil), exceptionNow, true, "team-a/x"},
		{"names glob misses", map[string]string{"team-a/x": legacyRoot + "match: {names: [\"legacy-*\"]}\n"}, rootPod("team-a", "web", nil), exceptionNow, false, ""},
		{"kinds miss", map[string]string{"team-a/x": legacyRoot + "match: {kinds: [Deployment]}\n"}, rootPod("team-a", "legacy-db", nil), exceptionNow, false, ""},
		{"kinds match", map[string]string{"team-a/x": legacyRoot + "match: {kinds: [Pod, Deployment]}\n"}, rootPod("team-a", "legacy-db", nil), exceptionNow, true, "team-a/x"},
		{"objectSelector matches", map[string]string{"team-a/x": legacyRoot + "match: {objectSelector: {matchLabels: {app: legacy}}}\n"}, rootPod("team-a", "db", map[string]string{"app": "legacy"}), exceptionNow, true, "team-a/x"},
		{"objectSelector misses", map[string]string{"team-a/x": legacyRoot + "match: {objectSelector: {matchLabels: {app: legacy}}}\n"}, rootPod("team-a", "db", map[string]string{"app": "web"}), exceptionNow, false, ""},
		{"namespaceSelector matches", map[string]string{"policy-system/x": legacyRoot + "match: {namespaceSelector: {matchLabels: {env: prod}}}\n"}, rootPod("team-a", "db", nil), exceptionNow, true, "policy-system/x"},
		{"namespaceSelector misses", map[string]string{"policy-system/x": legacyRoot + "match: {namespaceSelector: {matchLabels: {env: prod}}}\n"}, rootPod("team-b", "db", nil), exceptionNow, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var xs []*Exception
			for ref, spec := range tt.exceptions {
				ns, name, _ := strings.Cut(ref, "/")
				xs = append(xs, compileException(t, ns, name, spec))
			}
			set := NewSet([]*Policy{baseline}, WithExceptions(NewExceptionSet(xs)))
			req := podRequest(tt.pod)
			req.Now = tt.now
			d := set.Evaluate(req, testCluster())
			if d.Allowed != tt.allowed {
				t.Fatalf("allowed %v, want %v: %s", d.Allowed, tt.allowed, d.Message())
			}
			w := d.Warnings()
			switch {
			case tt.warning == "" && len(w) > 0:
				t.Errorf("warnings %q, want none", w)
			case tt.warning != "" && (len(w) == 0 || !strings.Contains(w[0], tt.warning)):
				t.Errorf("warnings %q, want one with %q", w, tt.warning)
			}
			if tt.allowed && (len(d.Exceptions) != 1 || len(d.Excepted()) == 0) {
				t.Errorf("exceptions used %v, excepted %v", d.Exceptions, d.Excepted())
			}
			if tt.allowed && strings.Contains(d.Message(), "requireRunAsNonRoot") {
				t.Errorf("an excepted violation is still a denial: %s", d.Message())
			}
		})
	}
}

// A Deployment's exception covers it by the Deployment's own kind and name.
func TestExceptionCoversPodController(t *testing.T) {
	baseline := configMapPolicy(t, testPolicyNamespace, "baseline", rootPolicy)
	x := compileException(t, "team-a", "legacy", legacyRoot+"match: {kinds: [Deployment], names: [legacy-*]}\n")
	set := NewSet([]*Policy{baseline}, WithExceptions(NewExceptionSet([]*Exception{x})))
	pc, _ := PodControllerOf(KindDeployment)
	req := podRequest(rootPod("team-a", "", nil))
	req.Controller = &Controller{PodController: pc, Meta: ObjectMeta{Name: "legacy-db", Namespace: "team-a"}}
	req.Now = exceptionNow
	if d := set.Evaluate(req, testCluster()); !d.Allowed {
		t.Fatalf("Deployment legacy-db refused: %s", d.Message())
	}
	req.Controller.Meta.Name = "web"
	if d := set.Evaluate(req, testCluster()); d.Allowed {
		t.Fatal("Deployment web admitted: the exception names legacy-* only")
	}
}

func TestCompileExceptionErrors(t *testing.T) {
	tests := []struct {
		name, namespace, yaml string
		want                  []string // field paths, in order
	}{
		{"valid", "team-a", legacyRoot, nil},
		{"no reason", "team-a", strings.Replace(legacyRoot, "reason: vendor image runs as root (TICKET-123)\n", "", 1), []string{"spec.reason"}},
		{"blank reason", "team-a", strings.Replace(legacyRoot, "vendor image runs as root (TICKET-123)", `"  "`, 1), []string{"spec.reason"}},
		{"long reason", "team-a", strings.Replace(legacyRoot, "vendor image runs as root (TICKET-123)", strings.Repeat("x", 1025), 1), []string{"spec.reason"}},
		{"no expiry", "team-a", strings.Replace(legacyRoot, "expiresAt: \"2027-01-31T00:00:00Z\"\n", "", 1), []string{"spec.expiresAt"}},
		{"no entries", "team-a", "reason: r\nexpiresAt: \"2027-01-31T00:00:00Z\"\n", []string{"spec.exceptions"}},
		{"quota rule", "team-a", strings.Replace(legacyRoot, "pods.requireRunAsNonRoot", "myApples.maxTotalQuantityPerNamespace", 1), []string{"spec.exceptions[0].rules[0]"}},
		{"budget rule", "team-a", strings.Replace(legacyRoot, "pods.requireRunAsNonRoot", "celBudget", 1), []string{"spec.exceptions[0].rules[0]"}},
		{"no rules", "team-a", strings.Replace(legacyRoot, "[pods.requireRunAsNonRoot]", "[]", 1), []string{"spec.exceptions[0].rules"}},
		{"ConfigMap without namespace", "team-a", strings.Replace(legacyRoot, "namespace: policy-system, ", "", 1), []string{"spec.exceptions[0].policy.namespace"}},
		{"AdmissionPolicy with namespace", "team-a", strings.Replace(legacyRoot, "kind: ConfigMap", "kind: AdmissionPolicy", 1), []string{"spec.exceptions[0].policy.namespace"}},
		{"unknown kind", "team-a", strings.Replace(legacyRoot, "kind: ConfigMap", "kind: Secret", 1), []string{"spec.exceptions[0].policy.kind"}},
		{"bad glob", "team-a", legacyRoot + "match: {names: [\"Legacy/*\"]}\n", []string{"spec.match.names[0]"}},
		{"too many names", "team-a", legacyRoot + "match: {names: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]}\n", []string{"spec.match.names"}},
		{"bad kind", "team-a", legacyRoot + "match: {kinds: [Secret]}\n", []string{"spec.match.kinds[0]"}},
		{"bad selector", "team-a", legacyRoot + "match: {objectSelector: {matchLabels: {\"a b\": c}}}\n", []string{"spec.match.objectSelector.matchLabels"}},
		{"namespaceSelector in a team namespace", "team-a", legacyRoot + "match: {namespaceSelector: {matchLabels: {env: prod}}}\n", []string{"spec.match.namespaceSelector"}},
		{"namespaceSelector in the policy namespace", testPolicyNamespace, legacyRoot + "match: {namespaceSelector: {matchLabels: {env: prod}}}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := CompileException(tt.namespace, "x", "1", exceptionSpec(t, tt.yaml), testPolicyNamespace)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("field errors %v, want fields %v", errs, tt.want)
			}
		})
	}
}

func TestValidateExpiry(t *testing.T) {
	const maxDuration = 90 * 24 * time.Hour
	tests := []struct {
		name      string
		expiresAt time.Time
		wantErr   string
	}{
		{"20 s ahead", exceptionNow.Add(20 * time.Second), ""},
		{"90 days ahead", exceptionNow.Add(maxDuration), ""},
		{"in the past", exceptionNow.Add(-time.Hour), "is not in the future"},
		{"now", exceptionNow, "is not in the future"},
		{"a year ahead", exceptionNow.AddDate(1, 0, 0), "maximum an exception may last (90 days"},
		{"missing", time.Time{}, "Required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidateExpiry(tt.expiresAt, exceptionNow, maxDuration)
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Errorf("errors %v, want none", errs)
			case tt.wantErr != "" && (len(errs) != 1 || errs[0].Field != "spec.expiresAt" || !strings.Contains(errs.ToAggregate().Error(), tt.wantErr)):
				t.Errorf("errors %v, want one at spec.expiresAt with %q", errs, tt.wantErr)
			}
		})
	}
}

func TestExceptionCheckRules(t *testing.T) {
	baseline := configMapPolicy(t, testPolicyNamespace, "baseline", rootPolicy)
	lookup := func(src Source) *Policy {
		if src == baseline.Source {
			return baseline
		}
		return nil
	}
	tests := []struct {
		name, rules, policy string
		errs, warnings      int
	}{
		{"known", "[pods.requireRunAsNonRoot, pods.disallowedTags]", "baseline", 0, 0},
		{"unknown rule", "[pods.requireRunAsNonRoot, pods.forbidPrivileged]", "baseline", 1, 0},
		{"policy not there yet", "[pods.anything]", "later", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(strings.Replace(legacyRoot, "[pods.requireRunAsNonRoot]", tt.rules, 1), "name: baseline", "name: "+tt.policy, 1)
			spec := exceptionSpec(t, y)
			x := compileException(t, "team-a", "x", y)
			errs, warnings := x.CheckRules(spec.Exceptions, lookup)
			if len(errs) != tt.errs || len(warnings) != tt.warnings {
				t.Errorf("errors %v, warnings %q; want %d and %d", errs, warnings, tt.errs, tt.warnings)
			}
			for _, e := range errs {
				if e.Field != "spec.exceptions[0].rules[1]" {
					t.Errorf("error at %s, want spec.exceptions[0].rules[1]", e.Field)
				}
			}
		})
	}
	// CEL rules are named as violations name them.
	spec, err := specOf("validations:\n- name: require-probes\n  expression: 'true'\n- expression: 'true'\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ruleNames(spec), ","); got != "validations.require-probes,validations[1]" {
		t.Errorf("rules %s, want validations.require-probes,validations[1]", got)
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		glob, name string
		want       bool
	}{
		{"legacy-*", "legacy-db", true},
		{"legacy-*", "legacy-", true},
		{"legacy-*", "web", false},
		{"*", "", true},
		{"*-db", "legacy-db", true},
		{"*-db", "legacy-web", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"web-*", "web-*", true}, // generateName: web-
	}
	for _, tt := range tests {
		if got := matchGlob(tt.glob, tt.name); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.glob, tt.name, got, tt.want)
		}
	}
}

func TestExceptionSetExpiry(t *testing.T) {
	a := compileException(t, "team-a", "a", legacyRoot)
	b := compileException(t, "team-a", "b", strings.Replace(legacyRoot, "2027-01-31", "2026-12-08", 1))
	s := NewExceptionSet([]*Exception{a, b})
	if n := s.ActiveAt(exceptionNow); n != 2 {
		t.Errorf("active now: %d, want 2", n)
	}
	if n := s.ActiveAt(b.ExpiresAt); n != 1 {
		t.Errorf("active at b's expiry: %d, want 1", n)
	}
	if next, ok := s.NextExpiry(exceptionNow); !ok || !next.Equal(b.ExpiresAt) {
		t.Errorf("next expiry %v %v, want %v", next, ok, b.ExpiresAt)
	}
	if next, ok := s.NextExpiry(b.ExpiresAt); !ok || !next.Equal(a.ExpiresAt) {
		t.Errorf("next expiry after b %v %v, want %v", next, ok, a.ExpiresAt)
	}
	if got := FormatExpiry(b.ExpiresAt.Add(20 * time.Second)); got != "2026-12-08T00:00:20Z" {
		t.Errorf("FormatExpiry = %q", got)
	}
}
