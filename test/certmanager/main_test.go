package certmanager

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"
)

// TestMain gives controller-runtime's process-wide logger, which
// cainjector and the webhook's manager log through, a home before anything
// starts: errors and the first verbosity level go to stderr, which `go
// test` shows for a failing package.
func TestMain(m *testing.M) {
	// TEST_LOG_V raises the verbosity, to see what cainjector does.
	v, _ := strconv.Atoi(os.Getenv("TEST_LOG_V"))
	ctrl.SetLogger(funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, prefix, args)
	}, funcr.Options{Verbosity: v}))
	os.Exit(m.Run())
}
