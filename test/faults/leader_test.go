package faults

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/promtest"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// leaderWritesWithin is how soon after the API server is back the leader
// must write again (issue 21).
const leaderWritesWithin = 10 * time.Second

// The API server killed for 30 s under direct load, with leader election
// on (its default timings: the Lease is lost after 10 s): no admission
// fails, the process never stops, and once the API server is back the
// replica leads again and its writers write: an AdmissionPolicy edited
// right after the restart has its status.observedGeneration written within
// 10 s of the API server's return.
func TestLeaseLostUnderOutage(t *testing.T) {
	h := startHook(t, inprocess.Options{LeaderElection: true})
	c := setUpCarriers(t, "lease")
	for _, cs := range c.before {
		h.converge(t, 10*time.Second, cs)
	}
	// A Lease left by an earlier webhook of the suite expires first.
	leaderWithin := 2 * time.Minute
	testenv.Eventually(t, leaderWithin, "this replica leads", func() error {
		if v := promtest.Sum(t, h.reg, app.MetricLeader, nil); v != 1 {
			return fmt.Errorf("%s = %v", app.MetricLeader, v)
		}
		return nil
	})
	observed(t, c.colors, leaderWithin)

	ctx := t.Context()
	var unready, leaderWhileDown atomic.Int64
	probeStop, probeDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			if ok, err := h.Ready(ctx); err != nil || !ok {
				unready.Add(1)
			}
			select {
			case <-probeStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	tr := startTraffic(ctx, h, 2, c.before)
	killed := time.Now()
	if err := env.cp.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(outage - time.Since(killed)):
	case <-ctx.Done():
	}
	leaderWhileDown.Store(int64(promtest.Sum(t, h.reg, app.MetricLeader, nil)))
	sent := tr.end(t, fmt.Sprintf("API server down %s, leader election on", outage))
	tr = startTraffic(ctx, h, 2, c.before)
	if err := env.cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()

	// The leader's first write: the status of an edit made as soon as the
	// API server takes it.
	err := devenv.PollEvery(ctx, 100*time.Millisecond, leaderWritesWithin, func(ctx context.Context) error {
		return editColors(ctx, c.colors, "yellow")
	})
	if err != nil {
		t.Fatalf("editing AdmissionPolicy %s after the restart: %v", c.colors, err)
	}
	edited := time.Since(back)
	var leadingAgain time.Duration
	testenv.Eventually(t, 2*time.Minute, "this replica leading again", func() error {
		if v := promtest.Sum(t, h.reg, app.MetricLeader, nil); v != 1 {
			return fmt.Errorf("%s = %v", app.MetricLeader, v)
		}
		leadingAgain = time.Since(back)
		return nil
	})
	wrote := observed(t, c.colors, 2*time.Minute).Sub(back)
	sent += tr.end(t, "API server restarting")
	close(probeStop)
	<-probeDone

	select {
	case <-h.Done():
		t.Fatalf("the webhook stopped: %v", h.Err())
	default:
	}
	if n := leaderWhileDown.Load(); n != 0 {
		t.Errorf("%s = %d at the end of the outage: the Lease (renew deadline 10 s) should have been given up", app.MetricLeader, n)
	}
	if n := unready.Load(); n != 0 {
		t.Errorf("/readyz failed %d times during the outage", n)
	}
	if wrote > leaderWritesWithin {
		t.Errorf("the leader wrote the edit's status %s after the API server's return, want within %s", wrote.Round(time.Millisecond), leaderWritesWithin)
	}
	t.Logf("figures: %d admissions during the outage and restart, 0 failed, 0 wrong (checked above); the process kept running; "+
		"leader again %s after the API server's return (Lease given up during the outage); edit accepted after %s, its status written by the leader %s after the return",
		sent, leadingAgain.Round(time.Millisecond), edited.Round(time.Millisecond), wrote.Round(time.Millisecond))
}

// editColors adds a colour to red, the one an AdmissionPolicy of
// setUpCarriers allows: a new generation, whose status only the leader
// writes, under which the verdicts of its admissions stay the same.
func editColors(ctx context.Context, name, color string) error {
	api := env.dyn.Resource(v1alpha1.Resource)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := unstructured.SetNestedStringSlice(cur.Object, []string{"red", color}, "spec", "myApples", "allowedColors"); err != nil {
		return err
	}
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// observed waits until an AdmissionPolicy's status.observedGeneration, which
// the leader writes, is its generation, and returns when it saw that.
func observed(t *testing.T, name string, within time.Duration) time.Time {
	t.Helper()
	err := devenv.PollEvery(t.Context(), 50*time.Millisecond, within, func(ctx context.Context) error {
		u, err := env.dyn.Resource(v1alpha1.Resource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		gen, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if gen != u.GetGeneration() {
			return fmt.Errorf("status.observedGeneration %d, generation %d", gen, u.GetGeneration())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AdmissionPolicy %s: the leader never wrote its status: %v", name, err)
	}
	return time.Now()
}
