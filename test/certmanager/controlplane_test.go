package certmanager

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// assetsEnv names the directory holding kube-apiserver and etcd; the
// Makefile exports it to the tools cache that `make tools` fills.
const assetsEnv = "KUBEBUILDER_ASSETS"

// certManagerModule holds cert-manager's own CRDs, under deploy/crds, in
// the version go.mod requires.
const certManagerModule = "github.com/cert-manager/cert-manager"

// startControlPlane starts etcd and kube-apiserver with the project's CRDs
// and cert-manager's installed, and stops them when the test ends. Without
// KUBEBUILDER_ASSETS it skips under -short and fails otherwise: these proofs
// are part of `make test`, and a silent skip would hide that they never ran.
func startControlPlane(t *testing.T) *rest.Config {
	t.Helper()
	assets := os.Getenv(assetsEnv)
	if assets == "" {
		if testing.Short() {
			t.Skip(assetsEnv + " is not set (-short): skipping the proofs on a local control plane")
		}
		t.Fatal(assetsEnv + " is not set: run `make test`, which builds kube-apiserver and etcd (`make tools`) " +
			"and exports it, or set it to a directory holding them")
	}
	cmCRDs := filepath.Join(moduleDir(t, certManagerModule), "deploy", "crds")
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(manifestsDir, "crds"), cmCRDs},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatalf("starting kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	var names []string
	for _, crd := range env.CRDs {
		names = append(names, crd.Name)
	}
	t.Logf("control plane at %s with CRDs %s", cfg.Host, strings.Join(names, ", "))
	for _, want := range []string{"certificates.cert-manager.io", "issuers.cert-manager.io", "admissionpolicies.policy.example.com", "myapples.stable.example.com"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Fatalf("CRD %s was not installed (from %s and %s)", want, filepath.Join(manifestsDir, "crds"), cmCRDs)
		}
	}
	return cfg
}

// moduleDir is where the module cache holds the version of module that
// go.mod requires.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	// The go command that runs the tests is on PATH (go test puts its own
	// GOROOT/bin first).
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("finding module %s (go list -m): %v %s", module, err, stderr)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("module %s is not in the module cache: run `go mod download %s`", module, module)
	}
	return dir
}

// freePort asks the kernel for a free port on 127.0.0.1. It is released
// before use (controller-runtime's webhook server takes a port number, not a
// listener); on a test machine the window in between is harmless.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// warnings collects the warnings the API server sends back (the Warning
// header): deprecated APIs, Pod Security violations of a Pod template,
// unknown fields, ...
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// HandleWarningHeaderWithContext is the context-aware form client-go
// prefers.
func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, code int, agent string, text string) {
	w.HandleWarningHeader(code, agent, text)
}

// take returns the warnings so far and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}
