package certs

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// tsDirPattern is the kubelet's timestamped data directory name.
var tsDirPattern = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

func TestWriteSecretVolumeLayout(t *testing.T) {
	dir := t.TempDir()
	v1 := map[string][]byte{CertFile: []byte("cert 1"), KeyFile: []byte("key 1"), CAFile: []byte("ca")}
	if err := WriteSecretVolume(dir, v1); err != nil {
		t.Fatal(err)
	}
	ts1 := assertSecretVolume(t, dir, v1)

	// A change swaps ..data to a new directory and removes the old one; the
	// top-level links stay as they are.
	v2 := map[string][]byte{CertFile: []byte("cert 2"), KeyFile: []byte("key 2"), CAFile: []byte("ca")}
	if err := WriteSecretVolume(dir, v2); err != nil {
		t.Fatal(err)
	}
	ts2 := assertSecretVolume(t, dir, v2)
	if ts2 == ts1 {
		t.Errorf("..data still points at %s after a change", ts1)
	}

	// The same contents again write nothing.
	if err := WriteSecretVolume(dir, v2); err != nil {
		t.Fatal(err)
	}
	if ts3 := assertSecretVolume(t, dir, v2); ts3 != ts2 {
		t.Errorf("an unchanged secret was rewritten: %s -> %s", ts2, ts3)
	}

	// A key dropped from the secret loses its top-level link.
	v4 := map[string][]byte{CertFile: []byte("cert 2"), KeyFile: []byte("key 2")}
	if err := WriteSecretVolume(dir, v4); err != nil {
		t.Fatal(err)
	}
	assertSecretVolume(t, dir, v4)
}

func TestWriteSecretVolumeRecovers(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{CertFile: []byte("cert"), KeyFile: []byte("key")}
	if err := WriteSecretVolume(dir, files); err != nil {
		t.Fatal(err)
	}
	// A top-level link removed by hand comes back even when nothing changed.
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretVolume(dir, files); err != nil {
		t.Fatal(err)
	}
	assertSecretVolume(t, dir, files)

	// A ..data_tmp left by an interrupted write does not block the next one.
	if err := os.Symlink("..gone", filepath.Join(dir, newDataDirName)); err != nil {
		t.Fatal(err)
	}
	files[CertFile] = []byte("cert 2")
	if err := WriteSecretVolume(dir, files); err != nil {
		t.Fatal(err)
	}
	assertSecretVolume(t, dir, files)
}

func TestWriteSecretVolumeRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"nothing", map[string][]byte{}, "no files"},
		{"empty name", map[string][]byte{"": nil}, "invalid file name"},
		{"path", map[string][]byte{"a/tls.crt": nil}, "must not contain '/'"},
		{"parent", map[string][]byte{"..": nil}, "invalid file name"},
		{"writer's own name", map[string][]byte{dataDirName: nil}, "must not start with '..'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteSecretVolume(dir, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteSecretVolume error = %v, want one containing %q", err, tc.want)
			}
			assertDirHolds(t, dir)
		})
	}
}

// assertSecretVolume checks dir is laid out like a kubelet Secret volume holding
// exactly files, and returns the name of the data directory ..data points at.
func assertSecretVolume(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	ts, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil {
		t.Fatal(err)
	}
	if !tsDirPattern.MatchString(ts) {
		t.Errorf("..data -> %q, not a timestamped directory", ts)
	}
	want := []string{ts, dataDirName}
	for name, data := range files {
		want = append(want, name)
		path := filepath.Join(dir, name)
		if link, err := os.Readlink(path); err != nil || link != filepath.Join(dataDirName, name) {
			t.Errorf("%s -> %q (%v), want a link to ..data/%s", name, link, err, name)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s reads %q, want %q", name, got, data)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != secretFileMode {
			t.Errorf("%s mode %s, want %s", name, info.Mode().Perm(), os.FileMode(secretFileMode))
		}
	}
	// Nothing else: no earlier data directory, no ..data_tmp, no stale links.
	slices.Sort(want)
	assertDirHolds(t, dir, want...)
	return ts
}
