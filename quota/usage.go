package quota

import (
	"math"
	"slices"
	"time"

	"github.com/policy-webhook/policy-webhook/policy"
)

// view is the cache plus one namespace's pending reservations.
type view struct {
	Cache
	namespace string
	reserved  []Reservation
	now       time.Time
	ttl       time.Duration
}

func (l *Ledger) view(namespace string, rs []Reservation, now time.Time) *view {
	return &view{Cache: l.opts.Cache, namespace: namespace, reserved: rs, now: now, ttl: l.opts.TTL}
}

// MyAppleQuantity adds to the cache's total what pending reservations hold
// beyond it; except (the MyApple under admission) is left out of both.
//
// The reservations are read before the total: the informer may store a
// MyApple between the two reads. Read in this order, one it stores then is
// counted twice (a refusal too many, for a moment); in the other order it
// would be counted nowhere, and the quota exceeded.
func (v *view) MyAppleQuantity(namespace, except string) int64 {
	var extra int64
	if namespace == v.namespace {
		for i := range v.reserved {
			r := &v.reserved[i]
			if r.Name == except {
				continue
			}
			extra = saturatingAdd(extra, pending(v.Cache, namespace, r, v.now, v.ttl))
		}
	}
	return saturatingAdd(extra, v.Cache.MyAppleQuantity(namespace, except))
}

// saturatingAdd adds two quantities, neither negative, stopping at MaxInt64.
func saturatingAdd(a, b int64) int64 {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// pending is what a reservation holds beyond what the cache counts for its
// MyApple: nothing once expired or confirmed.
func pending(ix Index, namespace string, r *Reservation, now time.Time, ttl time.Duration) int64 {
	rv, quantity, deleted := ix.MyAppleSeen(namespace, r.UID)
	switch {
	case expired(r, now, ttl) || confirmed(r, rv, deleted):
		return 0
	case rv != "":
		return max(0, r.Quantity-quantity)
	}
	return r.Quantity
}

// expired: r was made longer than ttl ago, or claims a time more than ttl
// ahead, which no replica's clock is: a reservation can then count for 2×ttl
// at most, however it is dated. Read, not written: a ledger written behind
// the webhook's back (dated 2099) is clamped as it is read.
func expired(r *Reservation, now time.Time, ttl time.Duration) bool {
	age := now.Sub(r.At)
	return age > ttl || age < -ttl
}

// confirmed: the cache saw r's MyApple deleted, or holds it at a version
// after the one r replaces.
func confirmed(r *Reservation, rv string, deleted bool) bool {
	return deleted || (rv != "" && rv != r.Replaces)
}

// keep is the reservations not expired nor confirmed for longer than
// KeepConfirmed, in a new slice: the stored one is shared with readers.
func (l *Ledger) keep(namespace string, rs []Reservation, now time.Time) []Reservation {
	out := make([]Reservation, 0, len(rs)+1)
	for _, r := range rs {
		rv, _, deleted := l.opts.Cache.MyAppleSeen(namespace, r.UID)
		if !expired(&r, now, l.opts.TTL) && (now.Sub(r.At) <= KeepConfirmed || !confirmed(&r, rv, deleted)) {
			out = append(out, r)
		}
	}
	return out
}

// withReservation adds what req reserves, replacing any earlier
// reservation for the same MyApple: the new one says what it will hold.
func withReservation(rs []Reservation, req *policy.Request, quantity int64, now time.Time) []Reservation {
	r := Reservation{UID: req.MyApple.UID, Name: req.MyApple.Name, Quantity: quantity, At: now}
	if req.Operation == policy.Update && req.OldMyApple != nil {
		r.Replaces = req.OldMyApple.ResourceVersion
	}
	rs = slices.DeleteFunc(rs, func(o Reservation) bool { return o.Name == r.Name })
	return append(rs, r)
}
