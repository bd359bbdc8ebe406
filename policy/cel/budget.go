package cel

import (
	"context"
	"fmt"
	"time"
)

// Budget is what all the CEL of one admission may spend, shared by every
// policy that judges it: one cost budget and one deadline, and within them
// a smaller part for the namespace's own policies, started when the first
// of them runs. Cluster-wide policies run first (policy.Set orders them so),
// so a namespace's policies can only spend their own part.
//
// A Budget belongs to one admission: it is not safe for concurrent use.
// Stop releases its timers.
type Budget struct {
	ctx    context.Context
	limits Limits
	gate   *Gate  // nil: no turns taken
	leave  func() // ends the namespace's turn, once taken

	cost     int64 // left of AdmissionCost
	deadline time.Time
	timed    context.Context // ctx up to deadline, armed by the first timed expression
	cancel   context.CancelFunc

	nsStarted  bool
	nsCost     int64 // left of NamespaceCost
	nsDeadline time.Time
	nsTimed    context.Context
	nsCancel   context.CancelFunc

	// out names the budget that ran out, "" while there is some left.
	out string
}

// NewBudget starts the budget of one admission, under ctx (the request's).
func NewBudget(ctx context.Context, l Limits) *Budget {
	if ctx == nil {
		ctx = context.Background()
	}
	l = l.WithDefaults()
	return &Budget{ctx: ctx, limits: l, cost: l.AdmissionCost, deadline: time.Now().Add(l.AdmissionTime)}
}

// NewBudget starts the budget of one admission with the limits and the
// Gate of the compiler that compiled p.
func (p *Program) NewBudget(ctx context.Context) *Budget {
	b := NewBudget(ctx, *p.limits)
	b.gate = p.gate
	return b
}

// Stop ends the namespace's turn, if taken, and releases the timers.
func (b *Budget) Stop() {
	if b.leave != nil {
		b.leave()
		b.leave = nil
	}
	if b.cancel != nil {
		b.cancel()
	}
	if b.nsCancel != nil {
		b.nsCancel()
	}
}

// Exhausted names the budget that ran out ("" if none did): every CEL
// evaluation after it fails.
func (b *Budget) Exhausted() string { return b.out }

// Spent is the CEL cost spent so far.
func (b *Budget) Spent() int64 { return b.limits.AdmissionCost - b.cost }

// begin is called before each evaluation of a policy of namespace ns
// (cluster-wide: namespaced false): false once the budget of the scope is
// gone, by cost or by time. The namespace's first takes its turn.
func (b *Budget) begin(namespaced bool, ns string) bool {
	if b.out != "" {
		return false
	}
	if namespaced && !b.nsStarted {
		b.nsStarted = true
		b.nsCost = b.limits.NamespaceCost
		b.nsDeadline = time.Now().Add(b.limits.NamespaceTime)
		if b.nsDeadline.After(b.deadline) {
			b.nsDeadline = b.deadline
		}
		if b.gate != nil {
			leave, ok := b.gate.enter(func() context.Context { return b.context(true) }, ns)
			if !ok {
				b.out = b.timeName(true) + fmt.Sprintf(", spent waiting for its turn (%d admissions of a namespace at a time evaluate its policies)", b.limits.NamespaceConcurrency)
				return false
			}
			b.leave = leave
		}
	}
	// Untimed expressions are not interrupted, so time is also checked
	// between evaluations, as cost is.
	now := time.Now()
	switch {
	case now.After(b.deadline):
		b.out = b.timeName(false)
	case namespaced && now.After(b.nsDeadline):
		b.out = b.timeName(true)
	}
	return b.out == ""
}

// context is what a timed expression runs under: the request's context up
// to the deadline of its scope.
func (b *Budget) context(namespaced bool) context.Context {
	if b.timed == nil {
		b.timed, b.cancel = context.WithDeadline(b.ctx, b.deadline)
	}
	if !namespaced {
		return b.timed
	}
	if b.nsTimed == nil {
		b.nsTimed, b.nsCancel = context.WithDeadline(b.timed, b.nsDeadline)
	}
	return b.nsTimed
}

// charge takes an evaluation's cost, reporting false when that overdrew
// the budget of the scope.
func (b *Budget) charge(namespaced bool, cost uint64) bool {
	c := int64(min(cost, uint64(b.limits.AdmissionCost)+1))
	b.cost -= c
	if namespaced {
		b.nsCost -= c
	}
	switch {
	case b.out != "":
	case b.cost < 0:
		b.out = fmt.Sprintf("the CEL cost budget of one admission (%d)", b.limits.AdmissionCost)
	case namespaced && b.nsCost < 0:
		b.out = fmt.Sprintf("the CEL cost budget of a namespace's own policies in one admission (%d)", b.limits.NamespaceCost)
	}
	return b.out == ""
}

// timedOut says whether err is a timed expression stopped by the deadline
// of its scope, and if so records it.
func (b *Budget) timedOut(namespaced bool) bool {
	switch {
	case b.timed != nil && b.timed.Err() != nil && b.ctx.Err() == nil:
		b.out = b.timeName(false)
	case namespaced && b.nsTimed != nil && b.nsTimed.Err() != nil && b.ctx.Err() == nil:
		b.out = b.timeName(true)
	case b.ctx.Err() != nil:
		b.out = "the time of the request (" + b.ctx.Err().Error() + ")"
	}
	return b.out != ""
}

func (b *Budget) timeName(namespaced bool) string {
	if namespaced {
		return fmt.Sprintf("the CEL time budget of a namespace's own policies in one admission (%s)", b.limits.NamespaceTime)
	}
	return fmt.Sprintf("the CEL time budget of one admission (%s)", b.limits.AdmissionTime)
}
