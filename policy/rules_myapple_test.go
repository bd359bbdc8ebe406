package policy

import (
	"math"
	"testing"
)

func TestMyAppleRules(t *testing.T) {
	set := clusterPolicy(t, `myApples:
  allowedColors: [red, green]
  allowedSizes: [small, medium]
  minQuantity: 2
  maxQuantity: 10
`)
	tests := []struct {
		name        string
		color, size string
		quantity    int64
		wants       []want
	}{
		{"compliant", "red", "small", 5, nil},
		{"at the minimum", "green", "medium", 2, nil},
		{"at the maximum", "green", "medium", 10, nil},
		{"color", "blue", "small", 5, []want{{ruleColors, "spec.color", `color "blue" is not allowed: use one of red, green`}}},
		{"colors are case-sensitive", "Red", "small", 5, []want{{ruleColors, "spec.color", `color "Red"`}}},
		{"no color", "", "small", 5, []want{{ruleColors, "spec.color", `color ""`}}},
		{"size", "red", "large", 5, []want{{ruleSizes, "spec.size", `size "large" is not allowed: use one of small, medium`}}},
		{"below minimum", "red", "small", 1, []want{{ruleMin, "spec.quantity", "quantity 1 is below the minimum 2"}}},
		{"above maximum", "red", "small", 11, []want{{ruleMax, "spec.quantity", "quantity 11 is above the maximum 10"}}},
		{"everything", "blue", "large", 11, []want{
			{ruleColors, "spec.color", ""},
			{ruleSizes, "spec.size", ""},
			{ruleMax, "spec.quantity", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Evaluate(appleRequest(apple("team-a", "a", tt.color, tt.size, tt.quantity)), testCluster())
			checkViolations(t, d.Violations, tt.wants...)
			if d.Allowed != (len(tt.wants) == 0) {
				t.Errorf("Allowed = %v with %d violations", d.Allowed, len(d.Violations))
			}
		})
	}
}

// TestMyAppleRulesLeavePodsAlone: a policy with only MyApple rules does not
// judge Pods, and the reverse.
func TestRulesJudgeTheirKindOnly(t *testing.T) {
	apples := clusterPolicy(t, "myApples:\n  allowedColors: [red]\n")
	pod := compliantPod()
	pod.Spec.Containers[0].Image = "nginx"
	if d := apples.Evaluate(podRequest(pod), testCluster()); len(d.Violations) != 0 {
		t.Errorf("MyApple policy judged a Pod: %v", d.Violations)
	}
	pods := clusterPolicy(t, "pods:\n  requiredLabels: [app]\n")
	if d := pods.Evaluate(appleRequest(apple("team-a", "a", "blue", "large", 1)), testCluster()); len(d.Violations) != 0 {
		t.Errorf("Pod policy judged a MyApple: %v", d.Violations)
	}
}

func TestMaxTotalQuantityPerNamespace(t *testing.T) {
	set := clusterPolicy(t, "myApples:\n  maxTotalQuantityPerNamespace: 100\n")
	cluster := testCluster()
	cluster.apples = map[string]map[string]int64{
		"team-a": {"a": 50, "b": 30}, // 80 in all
		"team-b": {"big": 1000},      // another namespace, never counted for team-a
		"team-c": {"x": 80, "y": 80}, // over the limit already (admitted before the policy)
		"team-d": {"huge": math.MaxInt64 - 10},
	}
	const over = "above the limit 100"
	tests := []struct {
		name string
		req  *Request
		msg  string // "" when admitted
	}{
		{"create within", appleRequest(apple("team-a", "c", "red", "small", 20)), ""},
		{"create over", appleRequest(apple("team-a", "c", "red", "small", 21)),
			"namespace team-a would hold a total quantity of 101 (80 in its other MyApples + 21 here), above the limit 100"},
		{"create in an empty namespace", appleRequest(apple("team-e", "c", "red", "small", 100)), ""},
		{"create alone over the limit", appleRequest(apple("team-e", "c", "red", "small", 101)), over},
		// The old quantity (50) is left out: 30 + 70 = 100.
		{"update does not count the old quantity twice", appleUpdate(apple("team-a", "a", "red", "small", 50), apple("team-a", "a", "red", "small", 70)), ""},
		{"update over", appleUpdate(apple("team-a", "a", "red", "small", 50), apple("team-a", "a", "red", "small", 71)),
			"namespace team-a would hold a total quantity of 101 (30 in its other MyApples + 71 here)"},
		{"update not growing in a namespace over the limit", appleUpdate(apple("team-c", "x", "red", "small", 80), apple("team-c", "x", "green", "small", 80)), ""},
		{"update shrinking in a namespace over the limit", appleUpdate(apple("team-c", "x", "red", "small", 80), apple("team-c", "x", "red", "small", 60)), ""},
		{"update growing in a namespace over the limit", appleUpdate(apple("team-c", "x", "red", "small", 80), apple("team-c", "x", "red", "small", 81)),
			"namespace team-c would hold a total quantity of 161 (80 in its other MyApples + 81 here)"},
		// A sum past the int64 range must not wrap around to a small number.
		{"create overflowing with the others", appleRequest(apple("team-d", "c", "red", "small", 1000)),
			"namespace team-d would hold a total quantity above 9223372036854775807 (9223372036854775797 in its other MyApples + 1000 here), above the limit 100"},
		{"create of the largest quantity", appleRequest(apple("team-a", "c", "red", "small", math.MaxInt64)), over},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Evaluate(tt.req, cluster)
			if tt.msg == "" {
				checkViolations(t, d.Violations)
			} else {
				checkViolations(t, d.Violations, want{ruleMaxTotal, "spec.quantity", tt.msg})
			}
		})
	}
	t.Run("nil cluster counts this one only", func(t *testing.T) {
		checkViolations(t, set.Evaluate(appleRequest(apple("team-a", "c", "red", "small", 100)), nil).Violations)
		checkViolations(t, set.Evaluate(appleRequest(apple("team-a", "c", "red", "small", 101)), nil).Violations,
			want{ruleMaxTotal, "spec.quantity", "(0 in its other MyApples + 101 here)"})
	})
}

// TestQuotaReserve: a Deny quota rule that passes asks for the quantity to
// be reserved; nothing else does.
func TestQuotaReserve(t *testing.T) {
	deny := clusterPolicy(t, "myApples:\n  maxTotalQuantityPerNamespace: 100\n")
	warn := clusterPolicy(t, "enforcement: Warn\nmyApples:\n  maxTotalQuantityPerNamespace: 100\n")
	cluster := testCluster()
	cluster.apples = map[string]map[string]int64{"team-a": {"a": 50, "b": 30}}
	for _, tc := range []struct {
		name string
		set  *Set
		req  *Request
		want int64
	}{
		{"create within", deny, appleRequest(apple("team-a", "c", "red", "small", 20)), 20},
		{"create over", deny, appleRequest(apple("team-a", "c", "red", "small", 21)), 0},
		{"growing update", deny, appleUpdate(apple("team-a", "a", "red", "small", 50), apple("team-a", "a", "red", "small", 60)), 60},
		{"shrinking update", deny, appleUpdate(apple("team-a", "a", "red", "small", 50), apple("team-a", "a", "red", "small", 40)), 0},
		{"Warn rule", warn, appleRequest(apple("team-a", "c", "red", "small", 20)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.set.Evaluate(tc.req, cluster)
			if d.Reserve != tc.want {
				t.Fatalf("Reserve = %d, want %d", d.Reserve, tc.want)
			}
			if d.Reserve == 0 {
				return
			}
			if d.ReserveFor != "ConfigMap policy-system/p" {
				t.Errorf("ReserveFor = %q", d.ReserveFor)
			}
			d.RefuseReservation("the ledger is unreachable")
			if d.Allowed || d.Reserve != 0 {
				t.Errorf("after RefuseReservation: allowed %v, reserve %d", d.Allowed, d.Reserve)
			}
			checkViolations(t, d.Violations, want{ruleMaxTotal, "spec.quantity", "the ledger is unreachable"})
		})
	}
}
