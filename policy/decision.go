package policy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// Violation is one rule one object breaks, with everything its author needs
// to fix it: which policy, which rule, where in the object, and why.
type Violation struct {
	Source      string               `json:"source"`
	Rule        string               `json:"rule"`
	Enforcement v1alpha1.Enforcement `json:"enforcement"`
	Field       string               `json:"field"`
	Message     string               `json:"message"`
}

// String is the one-line form used in denials, warnings and `check`:
// `<source> <rule> <field>: <message>`, without the field when it has none
// (a CEL validation without fieldPath).
func (v *Violation) String() string {
	if v.Field == "" {
		return v.Source + " " + v.Rule + ": " + v.Message
	}
	return v.Source + " " + v.Rule + " " + v.Field + ": " + v.Message
}

// Decision is the verdict on one request. Every applicable policy is
// evaluated, so it lists every violation, of every enforcement.
type Decision struct {
	Allowed    bool
	Violations []Violation
	// Applied are the policies that judged the request, in evaluation
	// order, each at the version in force: what the decision can be traced
	// back to.
	Applied []*Policy
	// Reserve is the quantity an allowed MyApple CREATE, or an UPDATE that
	// grows one, adds to its namespace under an enforced (Deny)
	// maxTotalQuantityPerNamespace rule, and ReserveFor names that rule's
	// policy. Judged one at a time against what the cache holds,
	// concurrent admissions could each fit under the limit and together
	// exceed it: the webhook records the quantity where every admission
	// sees it before allowing the request. Zero when no such rule judged it.
	Reserve    int64
	ReserveFor string
}

// RefuseReservation turns an allowed decision into a refusal by the quota
// rule that asked for the reservation, for when the webhook could not
// record it: a quota that cannot be kept exactly is not kept at all.
func (d *Decision) RefuseReservation(why string) {
	d.Allowed = false
	d.Violations = append(d.Violations, Violation{
		Source:      d.ReserveFor,
		Rule:        ruleMaxTotal,
		Enforcement: v1alpha1.Deny,
		Field:       "spec.quantity",
		Message:     truncate(why, MaxMessageBytes),
	})
	d.Reserve = 0
}

// Denials are the Deny violations, the reasons for a refusal.
func (d *Decision) Denials() []Violation { return d.only(v1alpha1.Deny) }

// Bounds of what one decision writes back, whatever the policy and the
// object: a Pod of thousands of containers breaking every rule still gets
// a refusal of a few KiB that says what to fix first and how much more
// there is.
const (
	// MaxListed is how many violations a refusal, or the warnings, list.
	MaxListed = 20
	// MaxMessageBytes bounds one violation's message; values quoted from
	// the object (a host path, an image) are what could make it long.
	MaxMessageBytes = 512
)

// Warnings are the Warn violations, as AdmissionResponse warnings: at most
// MaxListed, then one saying how many more there are.
func (d *Decision) Warnings() []string {
	var out []string
	n := 0
	for i := range d.Violations {
		if d.Violations[i].Enforcement != v1alpha1.Warn {
			continue
		}
		if n++; n <= MaxListed {
			out = append(out, d.Violations[i].String())
		}
	}
	if n > MaxListed {
		out = append(out, fmt.Sprintf("and %d more policy warnings", n-MaxListed))
	}
	return out
}

func (d *Decision) only(e v1alpha1.Enforcement) []Violation {
	var out []Violation
	for _, v := range d.Violations {
		if v.Enforcement == e {
			out = append(out, v)
		}
	}
	return out
}

// Message is the refusal a user reads from kubectl: every Deny violation,
// one a line.
func (d *Decision) Message() string {
	deny := d.Denials()
	if len(deny) == 0 {
		return ""
	}
	if len(deny) == 1 {
		return "policy violation: " + deny[0].String()
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(deny)))
	b.WriteString(" policy violations:")
	for i := range deny[:min(len(deny), MaxListed)] {
		b.WriteString("\n- ")
		b.WriteString(deny[i].String())
	}
	if len(deny) > MaxListed {
		fmt.Fprintf(&b, "\n- and %d more", len(deny)-MaxListed)
	}
	return b.String()
}
