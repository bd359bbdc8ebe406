package carrier

import (
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/policy"
)

func TestBounds(t *testing.T) {
	deepBlock := "pods:\n"
	for i := range 40 {
		deepBlock += strings.Repeat("  ", i+1) + "a:\n"
	}
	for _, tc := range []struct {
		name, doc, err string
	}{
		{"design example", designExample, ""},
		{"a block scalar's indentation is not nesting", "pods:\n  requiredLabels:\n  - |\n" + strings.Repeat("                                          x\n", 50) + "  forbidPrivileged: true\n", "invalid label key"},
		{"brackets in strings and comments", "pods: # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n  requiredLabels: ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', \"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"]\n", "pods.requiredLabels[0]: invalid label key"},
		{"deep flow", "pods:\n  requiredLabels: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n", "the policy nests deeper than 32 levels"},
		{"deep flow maps", "pods: " + strings.Repeat("{a: ", 40) + "1" + strings.Repeat("}", 40) + "\n", "the policy nests deeper than 32 levels"},
		{"deep sequences on a line", "pods:\n  requiredLabels:\n  " + strings.Repeat("- ", 40) + "x\n", "the policy nests deeper than 32 levels"},
		{"deep blocks", deepBlock, "the policy nests deeper than 32 levels"},
		{"too large", "pods:\n  requiredLabels: [" + strings.Repeat("a, ", MaxPolicyBytes/3) + "a]\n", "larger than the limit of 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := ParseSpec([]byte(tc.doc))
			got := policy.ErrorText(errs)
			if tc.err == "" && len(errs) > 0 || tc.err != "" && !strings.Contains(got, tc.err) {
				t.Fatalf("errors %q, want %q", got, tc.err)
			}
		})
	}
}

// Refusing a deep document costs about what reading its text does.
func BenchmarkRefuseDeepPolicy(b *testing.B) {
	doc := []byte("pods:\n  requiredLabels: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := ParseSpec(doc); len(errs) == 0 {
			b.Fatal("accepted")
		}
	}
}
