package policy

import (
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// FuzzException: any PolicyException spec compiles to an exception or to
// field errors, never panics, and a compiled one judges a request without
// panicking; name globs match in bounded time whatever they hold.
func FuzzException(f *testing.F) {
	f.Add([]byte(legacyRoot), "legacy-db")
	f.Add([]byte(legacyRoot+"match: {names: [\"*a*b*c*\"], kinds: [Pod], objectSelector: {matchLabels: {app: x}}}\n"), "aaabbbccc")
	f.Add([]byte(legacyRoot+"match: {namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}}\n"), "")
	f.Add([]byte("reason: x\nexpiresAt: \"2027-01-31T00:00:00Z\"\nexceptions: [{policy: {kind: AdmissionPolicy, name: p}, rules: [\"\"]}]\n"), "x")
	baseline := configMapPolicy(f, testPolicyNamespace, "baseline", rootPolicy)
	f.Fuzz(func(t *testing.T, doc []byte, name string) {
		if len(doc) > 1<<16 || len(name) > 253 {
			return
		}
		var spec v1alpha1.PolicyExceptionSpec
		if sigsyaml.Unmarshal(doc, &spec) != nil {
			return
		}
		for _, ns := range []string{"team-a", testPolicyNamespace} {
			x, errs := CompileException(ns, "x", "1", &spec, testPolicyNamespace)
			if (x == nil) == (len(errs) == 0) {
				t.Fatalf("compiled %v with errors %v", x, errs)
			}
			if x == nil {
				continue
			}
			_, _ = x.CheckRules(spec.Exceptions, func(Source) *Policy { return baseline })
			_ = ValidateExpiry(x.ExpiresAt, exceptionNow, 90*24*time.Hour)
			req := podRequest(rootPod("team-a", name, map[string]string{"app": "x"}))
			req.Now = exceptionNow
			set := NewSet([]*Policy{baseline}, WithExceptions(NewExceptionSet([]*Exception{x})))
			d := set.Evaluate(req, testCluster())
			if d.Allowed && len(d.Excepted()) == 0 && len(d.Violations) > 0 {
				t.Fatalf("allowed with unexcepted violations: %v", d.Violations)
			}
		}
	})
}
