package certs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The names the kubelet's AtomicWriter uses inside a Secret volume.
const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	// tsDirPrefix is a time layout; os.MkdirTemp appends random digits.
	tsDirPrefix = "..2006_01_02_15_04_05."
	// secretFileMode is defaultMode 0600: the files hold private keys.
	secretFileMode = 0o600
)

// WriteSecretVolume updates dir the way the kubelet updates a mounted Secret
// volume, so a server watching dir sees the file-system events of a pod: the
// files go into a new ..<timestamp> directory, a ..data_tmp symlink to it is
// renamed over ..data to swap every file at once, top-level names link once
// through ..data (stale ones are removed), and the previous directory goes.
//
// Nothing is written when files equals what dir already holds. Unlike the
// kubelet, a leftover ..data_tmp is removed instead of failing.
func WriteSecretVolume(dir string, files map[string][]byte) error {
	if len(files) == 0 {
		return fmt.Errorf("writing secret volume %s: no files", dir)
	}
	for name := range files {
		if err := validateSecretKey(name); err != nil {
			return fmt.Errorf("writing secret volume %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing secret volume: %w", err)
	}

	dataDir := filepath.Join(dir, dataDirName)
	oldTsName, err := os.Readlink(dataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("writing secret volume %s: reading the current data link: %w", dir, err)
	}
	var stale []string
	if oldTsName != "" {
		oldTsDir := filepath.Join(dir, oldTsName)
		stale, err = namesNotIn(oldTsDir, files)
		if err != nil {
			return fmt.Errorf("writing secret volume %s: %w", dir, err)
		}
		same, err := sameContents(oldTsDir, files)
		if err != nil {
			return fmt.Errorf("writing secret volume %s: %w", dir, err)
		}
		if same && len(stale) == 0 {
			// Like the kubelet, still restore top-level links someone removed.
			return linkVisibleNames(dir, files)
		}
	}

	tsDir, err := writeTimestampDir(dir, files)
	if err != nil {
		return fmt.Errorf("writing secret volume %s: %w", dir, err)
	}
	if err := swapDataLink(dir, filepath.Base(tsDir)); err != nil {
		_ = os.RemoveAll(tsDir)
		return fmt.Errorf("writing secret volume %s: %w", dir, err)
	}
	if err := linkVisibleNames(dir, files); err != nil {
		return err
	}
	for _, name := range stale {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("writing secret volume %s: removing %s, no longer in the secret: %w", dir, name, err)
		}
	}
	if oldTsName != "" {
		if err := os.RemoveAll(filepath.Join(dir, oldTsName)); err != nil {
			return fmt.Errorf("writing secret volume %s: removing the previous data directory: %w", dir, err)
		}
	}
	return nil
}

// validateSecretKey accepts the names a Secret key can project to the top of a
// volume: one path element that cannot collide with the writer's own ..names.
func validateSecretKey(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid file name %q", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("invalid file name %q: must not contain '/'", name)
	case strings.HasPrefix(name, ".."):
		return fmt.Errorf("invalid file name %q: must not start with '..'", name)
	}
	return nil
}

// writeTimestampDir writes files into a new ..<timestamp>.<random> directory.
func writeTimestampDir(dir string, files map[string][]byte) (string, error) {
	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format(tsDirPrefix))
	if err != nil {
		return "", fmt.Errorf("creating data directory: %w", err)
	}
	// MkdirTemp makes it 0700; a Secret volume's directories are 0755.
	if err := os.Chmod(tsDir, 0o755); err != nil {
		_ = os.RemoveAll(tsDir)
		return "", fmt.Errorf("creating data directory: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tsDir, name), data, secretFileMode); err != nil {
			_ = os.RemoveAll(tsDir)
			return "", fmt.Errorf("writing data directory: %w", err)
		}
	}
	return tsDir, nil
}

// swapDataLink points ..data at tsName in one rename(2) of a fresh symlink, so
// no reader ever finds ..data missing or pointing at a partial directory.
func swapDataLink(dir, tsName string) error {
	tmpLink := filepath.Join(dir, newDataDirName)
	if err := os.Remove(tmpLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing a leftover %s: %w", newDataDirName, err)
	}
	if err := os.Symlink(tsName, tmpLink); err != nil {
		return fmt.Errorf("linking %s: %w", newDataDirName, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		_ = os.Remove(tmpLink)
		return fmt.Errorf("replacing %s: %w", dataDirName, err)
	}
	return nil
}

// linkVisibleNames makes dir/name -> ..data/name for each name not there yet:
// the link goes through ..data, so it never changes after the first write.
func linkVisibleNames(dir string, files map[string][]byte) error {
	for name := range files {
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("writing secret volume %s: checking %s: %w", dir, name, err)
		}
		if err := os.Symlink(filepath.Join(dataDirName, name), path); err != nil {
			return fmt.Errorf("writing secret volume %s: linking %s: %w", dir, name, err)
		}
	}
	return nil
}

// namesNotIn lists the files of tsDir that files no longer has.
func namesNotIn(tsDir string, files map[string][]byte) ([]string, error) {
	entries, err := os.ReadDir(tsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the current data directory: %w", err)
	}
	var stale []string
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok {
			stale = append(stale, e.Name())
		}
	}
	return stale, nil
}

// sameContents reports whether every file already has its content in tsDir.
func sameContents(tsDir string, files map[string][]byte) (bool, error) {
	for name, data := range files {
		current, err := os.ReadFile(filepath.Join(tsDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading the current %s: %w", name, err)
		}
		if !bytes.Equal(current, data) {
			return false, nil
		}
	}
	return true, nil
}
