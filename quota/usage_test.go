package quota

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// cacheView is a Cache of fixed contents, for the arithmetic of views.
type cacheView struct {
	total  map[string]int64 // by namespace
	byName map[string]int64 // namespace/name → quantity
	seen   map[string]seen  // by UID
	stale  time.Duration
	// moves, if set, runs once after the first read of the MyApple
	// index: the informer storing an event between two reads.
	moves func(*cacheView)
}

func (c *cacheView) read() {
	if m := c.moves; m != nil {
		c.moves = nil
		m(c)
	}
}

// seen is what the cache has seen of a MyApple: held at rv, or deleted.
type seen struct {
	rv       string
	quantity int64
	deleted  bool
}

func (c *cacheView) NamespaceLabels(string) (map[string]string, bool)           { return nil, true }
func (c *cacheView) NamespaceAnnotations(string) map[string]string              { return nil }
func (c *cacheView) MyApples(string) cel.AppleList                              { return cel.AppleList{} }
func (c *cacheView) MyAppleTally(string, cel.GroupBy, string, string) cel.Tally { return cel.Tally{} }
func (c *cacheView) MyAppleGroups(string, cel.GroupBy) []string                 { return nil }
func (c *cacheView) HasSynced() bool                                            { return true }
func (c *cacheView) Evaluate(*policy.Request) policy.Decision                   { return policy.Decision{Allowed: true} }
func (c *cacheView) EvaluateIn(*policy.Request, policy.Cluster) policy.Decision {
	return policy.Decision{Allowed: true}
}
func (c *cacheView) MyAppleQuantity(ns, except string) int64 {
	defer c.read()
	return c.total[ns] - c.byName[ns+"/"+except]
}
func (c *cacheView) MyAppleSeen(_, uid string) (string, int64, bool) {
	defer c.read()
	s := c.seen[uid]
	return s.rv, s.quantity, s.deleted
}
func (c *cacheView) DeletedRetention() time.Duration          { return 10 * time.Minute }
func (c *cacheView) MyAppleStaleness(time.Time) time.Duration { return c.stale }

func TestPending(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	const ttl = time.Minute
	create := Reservation{UID: "u", Name: "a", Quantity: 10, At: now.Add(-time.Second)}
	update := Reservation{UID: "u", Name: "a", Quantity: 10, Replaces: "5", At: now.Add(-time.Second)}
	for _, tc := range []struct {
		name string
		r    Reservation
		seen seen
		want int64
	}{
		{"create not seen yet", create, seen{}, 10},
		{"create seen", create, seen{rv: "6", quantity: 10}, 0},
		{"create seen deleted", create, seen{deleted: true}, 0},
		{"create expired", Reservation{UID: "u", Quantity: 10, At: now.Add(-ttl - time.Second)}, seen{}, 0},
		{"dated ahead within the TTL, as a clock a little ahead dates it", Reservation{UID: "u", Quantity: 10, At: now.Add(ttl - time.Second)}, seen{}, 10},
		{"dated ahead beyond the TTL: written behind the webhook's back", Reservation{UID: "u", Quantity: 10, At: now.Add(ttl + time.Second)}, seen{}, 0},
		{"dated 2099", Reservation{UID: "u", Quantity: 10, At: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}, seen{}, 0},
		{"update not seen: the old quantity is counted, the growth is pending", update, seen{rv: "5", quantity: 4}, 6},
		{"update seen", update, seen{rv: "7", quantity: 10}, 0},
		{"update of a MyApple deleted meanwhile", update, seen{deleted: true}, 0},
		{"update the cache has not seen created", update, seen{}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cacheView{seen: map[string]seen{"u": tc.seen}}
			if got := pending(c, "ns", &tc.r, now, ttl); got != tc.want {
				t.Errorf("pending = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestViewQuantity(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	c := &cacheView{
		total:  map[string]int64{"a": 15, "b": 100},
		byName: map[string]int64{"a/x": 5, "a/y": 10},
		seen: map[string]seen{
			"ux": {rv: "1", quantity: 5},
			"uy": {rv: "2", quantity: 10},
		},
	}
	v := &view{Cache: c, namespace: "a", now: now, ttl: time.Minute, reserved: []Reservation{
		{UID: "ux", Name: "x", Quantity: 5, At: now},                 // confirmed
		{UID: "uz", Name: "z", Quantity: 20, At: now},                // pending create
		{UID: "uy", Name: "y", Quantity: 12, Replaces: "2", At: now}, // pending growth of y by 2
	}}
	for _, tc := range []struct {
		ns, except string
		want       int64
	}{
		{"a", "", 15 + 20 + 2},
		{"a", "new", 15 + 20 + 2},
		{"a", "y", 5 + 20}, // y's own cached quantity and reservation left out
		{"a", "z", 15 + 2},
		{"b", "", 100}, // another namespace: no reservations of its own
	} {
		if got := v.MyAppleQuantity(tc.ns, tc.except); got != tc.want {
			t.Errorf("MyAppleQuantity(%q, %q) = %d, want %d", tc.ns, tc.except, got, tc.want)
		}
	}

	huge := &view{Cache: c, namespace: "a", now: now, ttl: time.Minute, reserved: []Reservation{
		{UID: "p", Name: "p", Quantity: math.MaxInt64, At: now},
		{UID: "q", Name: "q", Quantity: math.MaxInt64, At: now},
	}}
	if got := huge.MyAppleQuantity("a", ""); got != math.MaxInt64 {
		t.Errorf("a total past int64 = %d, want it saturated at %d", got, int64(math.MaxInt64))
	}
}

// TestViewQuantityWhileTheCacheMoves: the informer stores a MyApple, or
// the growth of one, between the view's reads of the index. It may be
// counted twice, never not at all: the quota would be exceeded.
func TestViewQuantityWhileTheCacheMoves(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		reserved Reservation
		before   seen  // the reserved MyApple as the cache held it
		after    seen  // as the event stores it
		grows    int64 // what the event adds to the namespace's total
		want     int64 // the least the view may count: 30 stored + what is reserved
	}{
		{"a create stored", Reservation{UID: "u", Name: "n", Quantity: 10, At: now}, seen{}, seen{rv: "7", quantity: 10}, 10, 40},
		{"an update stored", Reservation{UID: "u", Name: "n", Quantity: 25, Replaces: "5", At: now}, seen{rv: "5", quantity: 5}, seen{rv: "8", quantity: 25}, 20, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cacheView{
				total: map[string]int64{"a": 30},
				seen:  map[string]seen{"u": tc.before},
				moves: func(c *cacheView) { c.seen["u"], c.total["a"] = tc.after, c.total["a"]+tc.grows },
			}
			v := &view{Cache: c, namespace: "a", now: now, ttl: time.Minute, reserved: []Reservation{tc.reserved}}
			if got := v.MyAppleQuantity("a", "new"); got < tc.want {
				t.Errorf("MyAppleQuantity = %d while the cache stored the reserved MyApple, want at least %d", got, tc.want)
			}
		})
	}
}

func TestKeep(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	c := &cacheView{seen: map[string]seen{
		"old-confirmed":   {rv: "1"},
		"fresh-confirmed": {rv: "1"},
	}}
	l := &Ledger{opts: Options{Cache: c, TTL: time.Minute}}
	got := l.keep("ns", []Reservation{
		{UID: "old-confirmed", Name: "a", At: now.Add(-KeepConfirmed - time.Second)},
		{UID: "fresh-confirmed", Name: "b", At: now.Add(-time.Second)},
		{UID: "expired", Name: "c", At: now.Add(-time.Minute - time.Second)},
		{UID: "pending", Name: "d", At: now.Add(-30 * time.Second)},
	}, now)
	var uids []string
	for _, r := range got {
		uids = append(uids, r.UID)
	}
	if want := "fresh-confirmed,pending"; strings.Join(uids, ",") != want {
		t.Errorf("kept %v, want %s", uids, want)
	}
}
