package policy

import (
	"fmt"
	"math"
	"slices"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

const (
	ruleColors   = "myApples.allowedColors"
	ruleSizes    = "myApples.allowedSizes"
	ruleMin      = "myApples.minQuantity"
	ruleMax      = "myApples.maxQuantity"
	ruleMaxTotal = "myApples.maxTotalQuantityPerNamespace"
)

func (r *appleRules) check(a *MyApple, out *sink) {
	if len(r.colors) > 0 && !slices.Contains(r.colors, a.Spec.Color) {
		out.add(ruleColors, "spec.color", fmt.Sprintf("color %q is not allowed: use one of %s", a.Spec.Color, r.colorList))
	}
	if len(r.sizes) > 0 && !slices.Contains(r.sizes, a.Spec.Size) {
		out.add(ruleSizes, "spec.size", fmt.Sprintf("size %q is not allowed: use one of %s", a.Spec.Size, r.sizeList))
	}
	if r.min != nil && a.Spec.Quantity < *r.min {
		out.add(ruleMin, "spec.quantity", fmt.Sprintf("quantity %d is below the minimum %d", a.Spec.Quantity, *r.min))
	}
	if r.max != nil && a.Spec.Quantity > *r.max {
		out.add(ruleMax, "spec.quantity", fmt.Sprintf("quantity %d is above the maximum %d", a.Spec.Quantity, *r.max))
	}
}

// quota counts the MyApples already in the namespace, less the old version
// on UPDATE, plus this one. As with a ResourceQuota, an update that does not
// grow the quantity passes. A Deny rule that passes asks for a reservation.
func (e *evaluation) quota(r *appleRules, out *sink) {
	if r.maxTotal == nil {
		return
	}
	a := e.req.MyApple
	if e.req.Operation == Update && e.req.OldMyApple != nil && a.Spec.Quantity <= e.req.OldMyApple.Spec.Quantity {
		return
	}
	var others int64
	if e.cluster != nil {
		others = e.cluster.MyAppleQuantity(e.req.Namespace, a.Name)
	}
	// The CRD sets no maximum: a sum past int64 would wrap and pass.
	if q := a.Spec.Quantity; others > 0 && q > math.MaxInt64-others {
		out.add(ruleMaxTotal, "spec.quantity", fmt.Sprintf("namespace %s would hold a total quantity above %d (%d in its other MyApples + %d here), above the limit %d",
			e.req.Namespace, int64(math.MaxInt64), others, q, *r.maxTotal))
		return
	}
	if total := others + a.Spec.Quantity; total > *r.maxTotal {
		out.add(ruleMaxTotal, "spec.quantity", fmt.Sprintf("namespace %s would hold a total quantity of %d (%d in its other MyApples + %d here), above the limit %d",
			e.req.Namespace, total, others, a.Spec.Quantity, *r.maxTotal))
		return
	}
	if out.p.Enforcement == v1alpha1.Deny && a.Spec.Quantity > out.d.Reserve {
		out.d.Reserve, out.d.ReserveFor = a.Spec.Quantity, out.p.sourceName
	}
}
