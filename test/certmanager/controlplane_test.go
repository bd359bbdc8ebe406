package certmanager

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// certManagerModule holds cert-manager's own CRDs, under deploy/crds, in
// the version go.mod requires.
const certManagerModule = "github.com/cert-manager/cert-manager"

// startControlPlane starts etcd and kube-apiserver with the project's CRDs
// and cert-manager's installed, and stops them when the test ends.
func startControlPlane(t *testing.T) *rest.Config {
	t.Helper()
	cmCRDs := filepath.Join(moduleDir(t, certManagerModule), "deploy", "crds")
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{ExtraCRDDirs: []string{cmCRDs}})
	for _, want := range []string{"certificates.cert-manager.io", "issuers.cert-manager.io", "admissionpolicies.policy.example.com", "policyexceptions.policy.example.com", "myapples.stable.example.com"} {
		if !slices.Contains(cp.CRDs(), want) {
			t.Fatalf("CRD %s was not installed (from manifests/crds and %s)", want, cmCRDs)
		}
	}
	return cp.Config
}

// moduleDir is where the module cache holds the version of module that
// go.mod requires.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
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
