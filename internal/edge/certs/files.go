package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// A certificate and its key live in two files, which cannot be replaced
// together atomically. writePair stages both as "<file>.new", then renames
// the key and then the certificate; load finishes a pair left half-renamed
// by a crash, so the files on disk always end up matching.
const pendingSuffix = ".new"

// writePair persists a certificate and its key (both 0600, directories 0700).
func (m *Manager) writePair(certDER, keyDER []byte) error {
	certNew, keyNew := m.cfg.CertFile+pendingSuffix, m.cfg.KeyFile+pendingSuffix
	if err := writeFileAtomic(keyNew, pki.EncodeKeyPEM(keyDER), 0o600, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(certNew, pki.EncodeCertPEM(certDER), 0o600, 0o700); err != nil {
		return err
	}
	if err := os.Rename(keyNew, m.cfg.KeyFile); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(certNew, m.cfg.CertFile); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// load reads the CA, certificate and key files. Errors wrap fs.ErrNotExist
// when a file is missing.
func (m *Manager) load() (*x509.Certificate, *tls.Certificate, error) {
	data, err := os.ReadFile(m.cfg.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA file: %w", err)
	}
	ca, err := pki.ParseCertPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA file %s: %w", m.cfg.CAFile, err)
	}
	pair, err := tls.LoadX509KeyPair(m.cfg.CertFile, m.cfg.KeyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A crash between writePair's renames leaves the new key with the
		// old certificate and the new certificate pending.
		if p, perr := tls.LoadX509KeyPair(m.cfg.CertFile+pendingSuffix, m.cfg.KeyFile); perr == nil {
			if err := os.Rename(m.cfg.CertFile+pendingSuffix, m.cfg.CertFile); err != nil {
				return nil, nil, fmt.Errorf("certs: finish interrupted rotation: %w", err)
			}
			m.deps.Logger.Warn("finished a certificate rotation interrupted by a crash", "file", m.cfg.CertFile)
			pair, err = p, nil
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate %s and key %s: %w", m.cfg.CertFile, m.cfg.KeyFile, err)
	}
	if err := pair.Leaf.CheckSignatureFrom(ca); err != nil {
		return nil, nil, fmt.Errorf("certs: certificate %s is not signed by the CA in %s: %w", m.cfg.CertFile, m.cfg.CAFile, err)
	}
	return ca, &pair, nil
}

// writeFileAtomic replaces path with data via a synced temporary file in the
// same directory, creating the directory with dirPerm if missing.
func writeFileAtomic(path string, data []byte, perm, dirPerm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certs: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
