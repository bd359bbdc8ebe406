package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
)

// WriteKeyPair writes certPEM and keyPEM to dir/tls.crt (0644) and dir/tls.key
// (0600), refusing a pair that does not match. Each file is replaced
// atomically, the pair is not: that is what [WriteSecretVolume] is for.
func WriteKeyPair(dir string, certPEM, keyPEM []byte) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("writing key pair to %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing key pair: %w", err)
	}
	// The key first: a reader that sees the new certificate then finds its key.
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing key pair: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("writing key pair: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path by renaming a synced temporary file of the
// same directory, so a crash never leaves a partial file under path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	// CreateTemp makes the file 0600; set the final mode before any data lands.
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
