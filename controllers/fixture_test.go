package controllers

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

const testReplica = "replica-a"

// fixture is one replica on a fake cluster: its cache and its controllers,
// all of them running, as on a replica that leads.
type fixture struct {
	*fakecluster.Cluster
	reg   *prometheus.Registry
	cache *cache.Cache
	cs    *Controllers
	stop  func() // stops what start started
	// candidateEvents is Config.CandidateEventInterval; 0: the default.
	candidateEvents time.Duration
}

func newFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{Cluster: fakecluster.New(t, objs...)}
	f.newReplica()
	return f
}

// newReplica makes the cache and controllers of a replica anew, on the
// same fake cluster.
func (f *fixture) newReplica() {
	f.T.Helper()
	f.reg = prometheus.NewRegistry()
	log := testr.NewWithInterface(f.T, testr.Options{Verbosity: 1}).WithName(testReplica)
	c, err := cache.New(cache.Config{
		Dynamic:         f.Dyn,
		Metadata:        f.Meta,
		PolicyNamespace: fakecluster.PolicyNamespace,
		Log:             log,
		Metrics:         f.reg,
	})
	if err != nil {
		f.T.Fatalf("cache.New: %v", err)
	}
	cs, err := New(Config{
		Cache:           c,
		Dynamic:         f.Dyn,
		Kube:            f.Kube,
		Replica:         testReplica,
		PolicyNamespace: fakecluster.PolicyNamespace,
		Log:             log,
		Metrics:         f.reg,

		CandidateEventInterval: f.candidateEvents,
	})
	if err != nil {
		f.T.Fatalf("New: %v", err)
	}
	f.cache, f.cs = c, cs
}

// start runs the cache and every controller until the test ends or stop,
// and waits for the cache to sync.
func (f *fixture) start() {
	f.T.Helper()
	f.stop = fakecluster.Run(f.T, f.cache, f.cache.Start, f.cs.Replica.Start, f.cs.Status.Start, f.cs.LastGood.Start)
}

// restart stops the replica and starts a new one on the same fake cluster.
func (f *fixture) restart() {
	f.T.Helper()
	f.stop()
	f.newReplica()
	f.start()
}

// inForce waits until the snapshot enforces version of src.
func (f *fixture) inForce(src policy.Source, version string) {
	f.T.Helper()
	fakecluster.Eventually(f.T, fmt.Sprintf("%s version %s is in force", src, version), func() bool {
		p := f.cache.Snapshot().Policy(src)
		return p != nil && p.Version == version
	})
}

// failed waits until the snapshot reports version of src as invalid.
func (f *fixture) failed(src policy.Source, version string) cache.SourceError {
	f.T.Helper()
	var se cache.SourceError
	fakecluster.Eventually(f.T, fmt.Sprintf("%s version %s is reported invalid", src, version), func() bool {
		var ok bool
		se, ok = f.cache.Snapshot().Errors[src]
		return ok && se.Version == version
	})
	return se
}

// gone waits until the snapshot holds neither a policy nor an error of src.
func (f *fixture) gone(src policy.Source) {
	f.T.Helper()
	fakecluster.Eventually(f.T, fmt.Sprintf("%s is gone from the snapshot", src), func() bool {
		s := f.cache.Snapshot()
		_, invalid := s.Errors[src]
		return !invalid && s.Policy(src) == nil
	})
}
