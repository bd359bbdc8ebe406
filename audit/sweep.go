package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Judge decides one request.
type Judge func(*policy.Request) policy.Decision

// Totals say what a sweep read.
type Totals struct {
	// Judged counts the objects judged, by kind.
	Judged map[string]int
	// NotServed lists the kinds the API server does not serve.
	NotServed []string
}

// Sweep judges every object of Kinds, kind after kind, and hands each object with
// its decision to fn, one at a time: nothing is kept but what fn keeps.
func Sweep(ctx context.Context, l *Lister, judge Judge, fn func(*Object, *policy.Decision) error) (Totals, error) {
	kinds := Kinds()
	t := Totals{Judged: make(map[string]int, len(kinds))}
	for _, kind := range kinds {
		err := l.Each(ctx, kind, "", func(o *Object) error {
			d := judge(o.Request)
			t.Judged[kind]++
			return fn(o, &d)
		})
		switch {
		case errors.Is(err, ErrNotServed):
			t.NotServed = append(t.NotServed, kind)
		case err != nil:
			return t, fmt.Errorf("judging the existing %ss: %w", kind, err)
		}
	}
	return t, nil
}
