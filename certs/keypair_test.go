package certs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func issueForTest(t *testing.T, ca *CA) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestWriteKeyPair(t *testing.T) {
	ca := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "certs") // does not exist yet
	for round := range 2 {                     // the second round replaces existing files
		certPEM, keyPEM := issueForTest(t, ca)
		if err := WriteKeyPair(dir, certPEM, keyPEM); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, f := range []struct {
			name string
			want []byte
			mode os.FileMode
		}{
			{CertFile, certPEM, 0o644},
			{KeyFile, keyPEM, 0o600},
		} {
			path := filepath.Join(dir, f.name)
			info, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !info.Mode().IsRegular() || info.Mode().Perm() != f.mode {
				t.Errorf("round %d: %s mode %s, want a regular file with %s", round, f.name, info.Mode(), f.mode)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.want) {
				t.Errorf("round %d: %s does not hold what was written", round, f.name)
			}
		}
		assertDirHolds(t, dir, CertFile, KeyFile)
	}
}

func TestWriteKeyPairRefusesAMismatchedPair(t *testing.T) {
	ca := newTestCA(t)
	certPEM, _ := issueForTest(t, ca)
	_, otherKeyPEM := issueForTest(t, ca)
	dir := t.TempDir()
	err := WriteKeyPair(dir, certPEM, otherKeyPEM)
	if err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("WriteKeyPair(mismatched) error = %v", err)
	}
	assertDirHolds(t, dir)
}

// assertDirHolds fails unless dir holds exactly names: no temporary files left.
func assertDirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
