package quota

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/policy-webhook/policy-webhook/policy"
)

const maxAttempts = 8

// account is one namespace's ledger as this replica last read or wrote it,
// and the admissions waiting to reserve in it.
type account struct {
	mu      sync.Mutex // guards queue and leading
	queue   []*waiter
	leading bool // an admission holds the lead; the rest queue
	// Only the admission settling touches these.
	loaded bool // cm and reserved reflect the API server's, as of the last call
	cm     *corev1.ConfigMap
	// reserved is the ledger's reservations, read without mu by
	// admissions that reserve nothing (dry runs, refusals).
	reserved atomic.Pointer[[]Reservation]
}

// waiter is one admission waiting for its reservation. Its answer is
// written by whoever settles it, before done.
type waiter struct {
	req    *policy.Request
	judged policy.Decision // against the ledger as last seen
	answer policy.Decision // judged again, or refused for a reservation not made
	begun  time.Time
	done   chan policy.Decision // buffered: settle never blocks on it
	lead   chan struct{}        // buffered: the lead is handed over without blocking
}

// reserve queues the admission on its namespace's account and waits for its
// decision. One admission at a time leads: it settles every admission queued
// so far in one ledger write, then hands the lead to the newest one queued
// meanwhile, so one write serves all that arrived while the last was in
// flight. If ctx ends first, the decision so far is returned refused.
func (l *Ledger) reserve(ctx context.Context, w *waiter, acc *account) policy.Decision {
	// A copy: the leader settling w may append to its violations meanwhile.
	d := w.judged
	d.Violations = slices.Clip(d.Violations)
	w.answer, w.begun, w.done, w.lead = w.judged, l.opts.Clock.Now(), make(chan policy.Decision, 1), make(chan struct{}, 1)
	acc.mu.Lock()
	acc.queue = append(acc.queue, w)
	if !acc.leading {
		acc.leading = true
		w.lead <- struct{}{}
	}
	acc.mu.Unlock()
	for {
		// A decision already made wins over a context that ended since.
		select {
		case d := <-w.done:
			return d
		default:
		}
		select {
		case d := <-w.done:
			return d
		case <-w.lead:
			l.lead(ctx, w.req.Namespace, acc)
		case <-ctx.Done():
			l.leave(acc, w)
			l.opts.Metrics.reserved(outcomeError, l.opts.Clock.Now().Sub(w.begun))
			d.RefuseReservation(fmt.Sprintf("the quota of namespace %s could not be checked in time: nothing was stored, try again", w.req.Namespace))
			return d
		}
	}
}

// lead settles the admissions queued, then hands the lead on.
func (l *Ledger) lead(ctx context.Context, ns string, acc *account) {
	acc.mu.Lock()
	batch := acc.queue
	acc.queue = nil
	acc.mu.Unlock()
	l.settle(ctx, ns, acc, batch)
	acc.mu.Lock()
	l.handOver(acc)
	acc.mu.Unlock()
}

// handOver passes the lead to the newest admission queued, which has the
// most time left, or lets it go. acc.mu is held.
func (l *Ledger) handOver(acc *account) {
	if n := len(acc.queue); n > 0 {
		acc.queue[n-1].lead <- struct{}{}
		return
	}
	acc.leading = false
}

// leave takes an admission that gave up out of the queue, handing on the lead
// if it had it. One already batched may still be reserved for: unconfirmed,
// that reservation lapses after the TTL.
func (l *Ledger) leave(acc *account, w *waiter) {
	acc.mu.Lock()
	defer acc.mu.Unlock()
	acc.queue = slices.DeleteFunc(acc.queue, func(o *waiter) bool { return o == w })
	select {
	case <-w.lead:
		l.handOver(acc)
	default:
	}
}

// settle judges a batch in order against the ledger as stored, each with
// the reservations of those before it, and records the reservations in one
// write, with the ledger's resourceVersion as the precondition. On a
// conflict it reads the ledger again and judges the whole batch again.
func (l *Ledger) settle(ctx context.Context, ns string, acc *account, batch []*waiter) {
	ref := fmt.Sprintf("ConfigMap %s/%s%s", l.opts.Namespace, LedgerPrefix, ns)
	var err error
	for attempt := 1; ; attempt++ {
		if !acc.loaded {
			if err = l.load(ctx, ns, acc); err != nil {
				err = fmt.Errorf("reading the quota ledger %s: %w", ref, err)
				break
			}
		}
		now := l.opts.Clock.Now()
		next := l.keep(ns, *acc.reserved.Load(), now)
		reserve := false
		for _, w := range batch {
			w.answer = l.opts.Cache.EvaluateIn(w.req, l.view(ns, next, now))
			if !reserving(w.answer) {
				continue
			}
			if len(next) >= l.opts.MaxReservations {
				l.opts.Metrics.reserved(outcomeFull, now.Sub(w.begun))
				w.answer.RefuseReservation(fmt.Sprintf("namespace %s has %d MyApple admissions its quota has yet to see stored: try again in a few seconds", ns, len(next)))
				continue
			}
			next, reserve = withReservation(next, w.req, w.answer.Reserve, now), true
		}
		if !reserve {
			break
		}
		if err = l.write(ctx, ns, acc, next); err == nil {
			break
		}
		if !retriable(err) || attempt >= maxAttempts || ctx.Err() != nil {
			err = fmt.Errorf("recording the reservation in the quota ledger %s: %w", ref, err)
			break
		}
		// Another replica wrote first: read what it wrote.
		l.opts.Metrics.conflict()
		acc.loaded = false
	}
	if err != nil {
		acc.loaded = false
		l.opts.Log.Error(err, "Refusing the MyApples whose quota could not be reserved", "namespace", ns, "admissions", len(batch))
	}
	now := l.opts.Clock.Now()
	for _, w := range batch {
		switch {
		case !reserving(w.answer):
		case err != nil:
			l.opts.Metrics.reserved(outcomeError, now.Sub(w.begun))
			w.answer.RefuseReservation(fmt.Sprintf("the quota of namespace %s could not be checked exactly (%s): nothing was stored, try again", ns, err))
		default:
			l.opts.Metrics.reserved(outcomeReserved, now.Sub(w.begun))
		}
		w.done <- w.answer
	}
}

func reserving(d policy.Decision) bool { return d.Allowed && d.Reserve > 0 }
