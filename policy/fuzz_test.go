package policy

import (
	"encoding/json"
	"errors"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; crashers found by
// `go test -fuzz` are added there as regression seeds.

// fuzzSet is a small set of every rule, in every enforcement, scoped both
// ways, with selectors: what a fuzzed object is judged against.
func fuzzSet(t testing.TB, opts ...SetOption) *Set {
	return NewSet([]*Policy{
		admissionPolicy(t, "everything", designExample),
		configMapPolicy(t, "team-a", "warn", "enforcement: Warn\nmatch:\n  objectSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [batch]}]}\npods:\n  requireDigest: true\n  requireResourceLimits: [cpu, ephemeral-storage]\nmyApples:\n  maxTotalQuantityPerNamespace: 10\n"),
		configMapPolicy(t, testPolicyNamespace, "audit", "enforcement: Audit\nmatch:\n  namespaceSelector: {matchLabels: {env: prod}}\npods:\n  allowedRegistries: [docker.io/library/]\n  disallowedTags: [latest, dev]\n"),
	}, opts...)
}

// FuzzParseSpec: parsing never panics, fails the same way for both
// carriers, reports only FieldErrors, and a spec it accepts compiles.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(designExample))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseSpec(data)
		_, cmErr := ParseConfigMapData(map[string]string{ConfigMapDataKey: string(data)})
		_, apErr := ParseAdmissionPolicySpec(data)
		if (err == nil) != (cmErr == nil) || (err == nil) != (apErr == nil) {
			t.Fatalf("carriers disagree: ParseSpec %v, ConfigMap %v, AdmissionPolicy %v", err, cmErr, apErr)
		}
		if err != nil {
			var fes FieldErrors
			if !errors.As(err, &fes) || len(fes) == 0 || err.Error() == "" {
				t.Fatalf("error %q (%T) is not a non-empty FieldErrors", err, err)
			}
			if spec != nil {
				t.Fatal("a spec came with the error")
			}
			if _, err2 := ParseSpec(data); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("second parse: %v, first: %v", err2, err)
			}
			return
		}
		p, err := Compile(Source{Kind: SourceAdmissionPolicy, Name: "fuzz"}, "", spec)
		if err != nil {
			t.Fatalf("ParseSpec accepted a spec Compile refuses: %v", err)
		}
		// What was accepted reads back the same once written out, as the
		// API server stores an AdmissionPolicy's spec.
		js, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSpec(js)
		if err != nil {
			t.Fatalf("spec written as %s does not parse: %v", js, err)
		}
		if js2, _ := json.Marshal(again); string(js2) != string(js) {
			t.Fatalf("spec written as %s reads back as %s", js, js2)
		}
		set := NewSet([]*Policy{p})
		set.Evaluate(podRequest(latestPod("team-a")), testCluster())
		set.Evaluate(appleRequest(apple("team-a", "a", "blue", "large", 50)), testCluster())
	})
}

// FuzzDecodeObject: decoding never panics, and a decoded object is judged
// without panicking, the same way twice, and an UPDATE that changes
// nothing is never refused (every violation was already there).
func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(podJSON))
	f.Add([]byte(appleJSON))
	set := fuzzSet(f, WithImageCache(NewImageCache(64)))
	uncached := fuzzSet(f)
	cluster := testCluster()
	cluster.apples = map[string]map[string]int64{"team-a": {"a": 5, "b": 7}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, kind := range []string{KindPod, KindMyApple} {
			pod, a, err := DecodeObject(kind, raw)
			if err != nil {
				continue
			}
			req := &Request{Kind: kind, Operation: Create, Pod: pod, MyApple: a}
			req.Namespace = req.Object().Namespace
			d := set.Evaluate(req, cluster)
			if again := set.Evaluate(req, cluster); !sameDecision(d, again) {
				t.Fatalf("%s judged twice: %+v then %+v", kind, d, again)
			}
			if u := uncached.Evaluate(req, cluster); !sameDecision(d, u) {
				t.Fatalf("%s judged with the image cache: %+v, without: %+v", kind, d, u)
			}
			if d.Allowed != (len(d.Denials()) == 0) {
				t.Fatalf("%s: allowed=%v with denials %v", kind, d.Allowed, d.Denials())
			}
			upd := *req
			upd.Operation, upd.OldPod, upd.OldMyApple = Update, pod, a
			if u := set.Evaluate(&upd, cluster); len(u.Violations) != 0 {
				t.Fatalf("%s UPDATE that changes nothing: %v", kind, u.Violations)
			}
		}
	})
}

func sameDecision(a, b Decision) bool {
	if a.Allowed != b.Allowed || len(a.Violations) != len(b.Violations) {
		return false
	}
	for i := range a.Violations {
		if a.Violations[i] != b.Violations[i] {
			return false
		}
	}
	return true
}

// FuzzRequestFromAdmission: whatever AdmissionRequest reaches the webhook,
// turning it into a Request and judging it never panics.
func FuzzRequestFromAdmission(f *testing.F) {
	f.Add([]byte(`{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-a","operation":"CREATE","object":` + podJSON + `}`))
	set := fuzzSet(f, WithImageCache(NewImageCache(64)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ar admissionv1.AdmissionRequest
		if json.Unmarshal(raw, &ar) != nil {
			return
		}
		req, err := RequestFromAdmission(&ar)
		if err != nil {
			return
		}
		if req.Kind != KindOf(&ar) {
			t.Fatalf("request kind %q, KindOf %q", req.Kind, KindOf(&ar))
		}
		set.Evaluate(req, nil)
		d := set.Evaluate(req, testCluster())
		_ = d.Message()
		_ = d.Warnings()
	})
}
