package cache

import (
	"fmt"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
	"github.com/policy-webhook/policy-webhook/test/fakecluster"
)

const testReplica = "replica-a"

// fixture is a Cache on a fake cluster.
type fixture struct {
	*fakecluster.Cluster
	reg   *prometheus.Registry
	cache *Cache
	stop  func() // stops what start started
	// compiler compiles the cache's policies; nil: the default.
	compiler *carrier.Compiler
}

// newFixture makes a Cache whose fake cluster starts with objs.
func newFixture(t testing.TB, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{Cluster: fakecluster.New(t, objs...), reg: prometheus.NewRegistry()}
	f.cache = f.newCache(testReplica, f.reg)
	return f
}

// newCache makes a Cache on the fixture's clients: a replica of the one
// cluster the fixture fakes.
func (f *fixture) newCache(replica string, reg prometheus.Registerer) *Cache {
	f.T.Helper()
	c, err := New(Config{
		Dynamic:         f.Dyn,
		Metadata:        f.Meta,
		PolicyNamespace: fakecluster.PolicyNamespace,
		Log:             testr.NewWithInterface(f.T, testr.Options{Verbosity: 1}).WithName(replica),
		Metrics:         reg,
		Compiler:        f.compiler,
	})
	if err != nil {
		f.T.Fatalf("New: %v", err)
	}
	return c
}

// start runs the cache until the test ends or stop, and waits for it to
// sync.
func (f *fixture) start() {
	f.T.Helper()
	f.stop = fakecluster.Run(f.T, f.cache, f.cache.Start)
}

// inForce waits until the snapshot enforces version of src.
func (f *fixture) inForce(src policy.Source, version string) {
	f.T.Helper()
	fakecluster.Eventually(f.T, fmt.Sprintf("%s version %s is in force", src, version), func() bool {
		for _, p := range f.cache.Snapshot().Policies() {
			if p.Source == src && p.Version == version {
				return true
			}
		}
		return false
	})
}

// failed waits until the snapshot reports version of src as invalid.
func (f *fixture) failed(src policy.Source, version string) SourceError {
	f.T.Helper()
	var se SourceError
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
		if _, ok := s.Errors[src]; ok {
			return false
		}
		for _, p := range s.Policies() {
			if p.Source == src {
				return false
			}
		}
		return true
	})
}
