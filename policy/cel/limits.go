package cel

import (
	"errors"
	"fmt"
	"time"

	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// Limits bound what CEL may cost: each expression, when compiled and when
// evaluated, and all the expressions of one admission together. A
// namespace's own policies (ConfigMaps outside the policy namespace) are
// held to tighter limits than cluster-wide ones: any team may write them,
// and they must not take the CPU every team's admissions share.
type Limits struct {
	// ExpressionCost stops one evaluation of one expression of a
	// cluster-wide policy, in CEL cost units: VAP's per-call limit. An
	// expression that, with its params, must cost more whatever the object
	// is refused when the policy is written.
	ExpressionCost uint64
	// NamespaceExpressionCost is ExpressionCost for a namespace's own
	// policies.
	NamespaceExpressionCost uint64
	// AdmissionCost and AdmissionTime bound all the CEL of one admission,
	// every policy's together (not one budget per policy, as VAP has).
	AdmissionCost int64
	AdmissionTime time.Duration
	// NamespaceCost and NamespaceTime bound, within those, what the
	// namespace's own policies may spend in one admission. They run after
	// the cluster-wide ones, so they can never take their budget.
	NamespaceCost int64
	NamespaceTime time.Duration
	// NamespaceConcurrency is how many admissions of one namespace may
	// evaluate its own policies at once (see Gate); others wait their turn
	// within NamespaceTime.
	NamespaceConcurrency int
}

// Default limits. The cluster-wide per-expression limit is VAP's; the
// admission's budget is what VAP gives one binding, shared here by all
// policies; a namespace gets a tenth of each. At the CEL cost model's
// nominal 0.1 s per million units, a namespace's policies then cost at most
// about 0.1 s of CPU per admission, and NamespaceTime stops them at that
// however slow the units turn out to be.
const (
	DefaultExpressionCost          = uint64(celconfig.PerCallLimit)
	DefaultNamespaceExpressionCost = DefaultExpressionCost / 10
	DefaultAdmissionCost           = int64(celconfig.RuntimeCELCostBudget)
	DefaultAdmissionTime           = 500 * time.Millisecond
	DefaultNamespaceCost           = DefaultAdmissionCost / 10
	DefaultNamespaceTime           = 100 * time.Millisecond
	// One at a time: a namespace's policies then take at most one CPU,
	// however many of its admissions arrive together.
	DefaultNamespaceConcurrency = 1
)

// DefaultLimits are the limits unless configured otherwise.
func DefaultLimits() Limits {
	return Limits{
		ExpressionCost:          DefaultExpressionCost,
		NamespaceExpressionCost: DefaultNamespaceExpressionCost,
		AdmissionCost:           DefaultAdmissionCost,
		AdmissionTime:           DefaultAdmissionTime,
		NamespaceCost:           DefaultNamespaceCost,
		NamespaceTime:           DefaultNamespaceTime,
		NamespaceConcurrency:    DefaultNamespaceConcurrency,
	}
}

// WithDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.ExpressionCost == 0 {
		l.ExpressionCost = d.ExpressionCost
	}
	if l.NamespaceExpressionCost == 0 {
		l.NamespaceExpressionCost = min(d.NamespaceExpressionCost, l.ExpressionCost)
	}
	if l.AdmissionCost == 0 {
		l.AdmissionCost = d.AdmissionCost
	}
	if l.AdmissionTime == 0 {
		l.AdmissionTime = d.AdmissionTime
	}
	if l.NamespaceCost == 0 {
		l.NamespaceCost = min(d.NamespaceCost, l.AdmissionCost)
	}
	if l.NamespaceTime == 0 {
		l.NamespaceTime = min(d.NamespaceTime, l.AdmissionTime)
	}
	if l.NamespaceConcurrency == 0 {
		l.NamespaceConcurrency = d.NamespaceConcurrency
	}
	return l
}

// Validate refuses limits that are negative, or a namespace's larger than
// the cluster's: a team would then get more than the admission it is in.
func (l Limits) Validate() error {
	var errs []error
	if l.AdmissionCost < 0 || l.NamespaceCost < 0 || l.AdmissionTime < 0 || l.NamespaceTime < 0 || l.NamespaceConcurrency < 0 {
		errs = append(errs, errors.New("CEL limits must not be negative"))
	}
	if l.NamespaceExpressionCost > l.ExpressionCost {
		errs = append(errs, fmt.Errorf("the per-expression CEL cost limit of a namespace's policies (%d) is above the cluster-wide one (%d)", l.NamespaceExpressionCost, l.ExpressionCost))
	}
	if l.NamespaceCost > l.AdmissionCost {
		errs = append(errs, fmt.Errorf("the CEL cost budget of a namespace's policies (%d) is above the admission's (%d)", l.NamespaceCost, l.AdmissionCost))
	}
	if l.NamespaceTime > l.AdmissionTime {
		errs = append(errs, fmt.Errorf("the CEL time budget of a namespace's policies (%s) is above the admission's (%s)", l.NamespaceTime, l.AdmissionTime))
	}
	return errors.Join(errs...)
}

// expressionCost is the per-expression limit of a policy's scope.
func (l *Limits) expressionCost(namespaced bool) uint64 {
	if namespaced {
		return l.NamespaceExpressionCost
	}
	return l.ExpressionCost
}
