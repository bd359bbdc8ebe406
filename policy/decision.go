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
// `<source> <rule> <field>: <message>`, the field left out when empty.
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
	// Applied are the policies that judged the request, in evaluation order.
	Applied []*Policy
	// Reserve is the quantity an allowed MyApple adds to its namespace under
	// a Deny maxTotalQuantityPerNamespace rule of policy ReserveFor, zero if
	// none. Concurrent admissions could each fit under the limit and together
	// exceed it, so the webhook records it before allowing the request.
	Reserve    int64
	ReserveFor string
	// Candidates are the outcomes of the candidates judged beside the
	// policies in force (candidate.go); they never change the verdict.
	Candidates []CandidateResult
}

// RefuseReservation turns an allowed decision into a refusal by the quota
// rule, for when the webhook could not record the reservation.
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

// Bounds of what one decision writes back, so that a refusal stays small
// however many rules an object breaks.
const (
	// MaxListed is how many violations a refusal, or the warnings, list.
	MaxListed = 20
	// MaxMessageBytes bounds one violation's message, which quotes the object.
	MaxMessageBytes = 512
)

// Warnings are the Warn violations, as AdmissionResponse warnings: at most
// MaxListed, then one saying how many more there are.
func (d *Decision) Warnings() []string {
	warn := d.only(v1alpha1.Warn)
	var out []string
	for i := range warn[:min(len(warn), MaxListed)] {
		out = append(out, warn[i].String())
	}
	if len(warn) > MaxListed {
		out = append(out, fmt.Sprintf("and %d more policy warnings", len(warn)-MaxListed))
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
