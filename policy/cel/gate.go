package cel

import (
	"context"
	"sync"
)

// Gate lets at most Limits.NamespaceConcurrency admissions of a namespace
// evaluate that namespace's own policies at once. The budget bounds what
// one admission spends; the gate bounds how many spend at once, so that a
// team's many concurrent admissions under expensive policies take at most
// that many CPUs, never the ones every other team's admissions need. An
// admission waits for its turn within its namespace's time budget.
//
// A Compiler holds one, shared by every program it compiles; safe for
// concurrent use.
type Gate struct {
	slots int
	mu    sync.Mutex
	turns map[string]*turn // namespaces with an admission in or waiting
}

type turn struct {
	ch   chan struct{}
	refs int // holders and waiters; the entry goes at 0
}

func newGate(slots int) *Gate {
	return &Gate{slots: slots, turns: map[string]*turn{}}
}

// enter waits for a turn of namespace ns until ctx() is done (called only
// when there is a wait), and returns the function ending it; ok is false
// when ctx ended first.
func (g *Gate) enter(ctx func() context.Context, ns string) (leave func(), ok bool) {
	g.mu.Lock()
	t := g.turns[ns]
	if t == nil {
		t = &turn{ch: make(chan struct{}, g.slots)}
		g.turns[ns] = t
	}
	t.refs++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(g.turns, ns)
		}
		g.mu.Unlock()
	}
	leave = func() { <-t.ch; done() }
	select {
	case t.ch <- struct{}{}: // most often free: no context needed
		return leave, true
	default:
	}
	select {
	case t.ch <- struct{}{}:
		return leave, true
	case <-ctx().Done():
		done()
		return nil, false
	}
}
