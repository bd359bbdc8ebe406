package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// ExceptedBy names the PolicyException (namespace/name) that lifts
	// this violation, "" if none does: it is then not enforced.
	ExceptedBy string `json:"exceptedBy,omitempty"`
	// ExceptedUntil is that exception's expiresAt.
	ExceptedUntil time.Time `json:"exceptedUntil,omitzero"`
}

// ExceptedString is the warning an excepted violation gives:
// `excepted by PolicyException team-a/legacy-root until 2027-01-31: <violation>`.
func (v *Violation) ExceptedString() string {
	return "excepted by " + SourcePolicyException + " " + v.ExceptedBy + " until " + FormatExpiry(v.ExceptedUntil) + ": " + v.String()
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
	// Exceptions are those that lifted a violation, in the order met.
	Exceptions []*Exception
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
		Message:     Truncate(why, MaxMessageBytes),
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

// Warnings are the excepted Deny and Warn violations, each saying which
// exception lifts it and until when, then the Warn violations, as
// AdmissionResponse warnings: at most MaxListed, then one saying how many
// more there are.
func (d *Decision) Warnings() []string {
	var out []string
	n := 0
	for i := range d.Violations {
		v := &d.Violations[i]
		if v.ExceptedBy == "" || v.Enforcement == v1alpha1.Audit {
			continue
		}
		if n++; n <= MaxListed {
			out = append(out, v.ExceptedString())
		}
	}
	for _, v := range d.only(v1alpha1.Warn) {
		if n++; n <= MaxListed {
			out = append(out, v.String())
		}
	}
	if n > MaxListed {
		out = append(out, fmt.Sprintf("and %d more policy warnings", n-MaxListed))
	}
	return out
}

// Excepted are the violations an exception lifts, of every enforcement.
func (d *Decision) Excepted() []Violation {
	var out []Violation
	for _, v := range d.Violations {
		if v.ExceptedBy != "" {
			out = append(out, v)
		}
	}
	return out
}

// only are the violations of enforcement e that no exception lifts.
func (d *Decision) only(e v1alpha1.Enforcement) []Violation {
	var out []Violation
	for _, v := range d.Violations {
		if v.Enforcement == e && v.ExceptedBy == "" {
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
