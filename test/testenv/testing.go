package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// ControlPlaneForTest starts a control plane for t and stops it when t
// ends. Without $KUBEBUILDER_ASSETS it skips t under -short and fails it
// otherwise: these tests are part of `make test`, and a silent skip would
// hide that they never ran. With opts.ControllerManager, a t that failed
// gets the end of kube-controller-manager's log in its output.
func ControlPlaneForTest(t testing.TB, opts devenv.ControlPlaneOptions) *devenv.ControlPlane {
	t.Helper()
	if os.Getenv(devenv.AssetsEnv) == "" {
		if testing.Short() {
			t.Skip("needs a local control plane (-short): " + devenv.ErrNoAssets.Error())
		}
		t.Fatal(devenv.ErrNoAssets)
	}
	cp, err := devenv.StartControlPlane(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The log is read once it has stopped, so it ends with whatever it
		// said while shutting down.
		err := cp.Stop()
		if err != nil {
			t.Error(err)
		}
		if opts.ControllerManager && t.Failed() {
			t.Logf("kube-controller-manager's log (its end):\n%s", cp.ControllerManagerLog())
		}
	})
	t.Logf("control plane at %s with CRDs %s", cp.Config.Host, strings.Join(cp.CRDs(), ", "))
	return cp
}

// Eventually fails t unless check returns nil within timeout, saying what
// was awaited and check's last error. It returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := devenv.Poll(t.Context(), timeout, func(context.Context) error { return check() }); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
	return time.Since(start)
}

// Until is Eventually for a condition with nothing more to say than
// whether it holds.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Eventually(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("the condition does not hold yet")
	})
}
