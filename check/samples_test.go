package check

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// expectAnnotation on each sample object says what the webhook must do with
// it: allow, warn (admitted with warnings) or deny. The samples are what a
// newcomer reads first, so they must never drift from what the engine does.
const expectAnnotation = "policy.example.com/expect"

func TestSamplesVerdicts(t *testing.T) {
	dir := filepath.Join("..", "manifests", "samples")
	docs, err := ReadPaths([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(docs, Options{PolicyNamespace: "policy-system", Notes: io.Discard})
	if err != nil {
		t.Fatalf("the samples' policies must be valid: %v", err)
	}
	if c.Policies() == 0 {
		t.Fatal("no policy in the samples")
	}
	judged := map[string]int{}
	for _, d := range docs {
		r, err := c.Judge(d)
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			continue
		}
		var m struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(d.Raw, &m); err != nil {
			t.Fatal(err)
		}
		want := m.Metadata.Annotations[expectAnnotation]
		if want == "" {
			t.Errorf("%s: %s %s/%s lacks the %s annotation", d.Where, r.Kind, r.Namespace, r.Name, expectAnnotation)
			continue
		}
		if got := strings.ToLower(r.Verdict()); got != want {
			t.Errorf("%s: %s %s/%s: got %s, the sample expects %s; violations: %v", d.Where, r.Kind, r.Namespace, r.Name, got, want, r.Violations)
		}
		judged[want]++
		for _, v := range r.Violations {
			judged[v.Rule]++
		}
	}
	// Every rule must be shown denying or warning by some sample.
	for _, rule := range []string{
		"pods.allowedRegistries", "pods.disallowedTags", "pods.requireDigest", "pods.requiredLabels",
		"pods.forbidPrivileged", "pods.forbidHostNamespaces", "pods.forbidHostPath", "pods.requireRunAsNonRoot",
		"pods.requireResourceLimits", "myApples.allowedColors", "myApples.allowedSizes", "myApples.minQuantity",
		"myApples.maxQuantity", "myApples.maxTotalQuantityPerNamespace", "allow", "warn", "deny",
		// CEL (16-*, 17-*): a Pod rule, and one over cluster.myApples.
		"validations.readinessProbe", "validations.maxPerColor",
	} {
		if judged[rule] == 0 {
			t.Errorf("no sample shows %s", rule)
		}
	}
}
