package devenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// modulePath identifies the repository's go.mod while walking up.
const modulePath = "module github.com/policy-webhook/policy-webhook\n"

// RepoRoot finds the repository root from the working directory, which is a
// package directory under `go test` and the root under `make`.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte(modulePath)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/policy-webhook/policy-webhook above the working directory")
		}
		dir = parent
	}
}
