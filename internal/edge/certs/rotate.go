package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Run renews the certificate at a jittered point of its life, over mTLS with
// the current certificate, until ctx is done. Failures (the cloud being
// unreachable, typically) are retried with capped exponential backoff; they
// never end Run. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	cur := m.Current()
	if cur == nil {
		return errors.New("certs: Run called before a successful Bootstrap")
	}
	deadline := m.rotationDeadline(cur.Leaf)
	var retry time.Duration // zero unless the last attempt failed
	for {
		leaf := m.Current().Leaf
		now := m.deps.Clock.Now()
		if left := leaf.NotAfter.Sub(now); left <= 0 {
			m.deps.Logger.Warn("node certificate has expired; renewal needs a fresh join token", "notAfter", leaf.NotAfter)
		} else if left < expiryWarning {
			m.deps.Logger.Warn("node certificate expires soon", "notAfter", leaf.NotAfter, "left", left.Round(time.Second))
		}
		wait := deadline.Sub(now)
		if retry > 0 {
			wait = retry/2 + time.Duration(m.deps.Rand()*float64(retry/2))
		}
		if wait > 0 {
			t := m.deps.Clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
		}
		next, err := m.rotate(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			retry = min(max(2*retry, retryMin), retryMax)
			m.deps.Logger.Warn("node certificate renewal failed; will retry", "err", err, "retryWithin", retry)
			continue
		}
		retry = 0
		deadline = m.rotationDeadline(next.Leaf)
		m.deps.Logger.Info("rotated node certificate", "serial", next.Leaf.SerialNumber, "notAfter", next.Leaf.NotAfter, "nextRotation", deadline)
	}
}

// rotationDeadline picks a point uniformly in [RotateMin, RotateMax] of
// the certificate's life, so a fleet joined together does not renew together.
func (m *Manager) rotationDeadline(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	f := m.cfg.RotateMin + m.deps.Rand()*(m.cfg.RotateMax-m.cfg.RotateMin)
	return leaf.NotBefore.Add(time.Duration(f * float64(life)))
}

// rotate obtains a certificate for a new key using the current one,
// persists it, then makes it current.
func (m *Manager) rotate(ctx context.Context) (*tls.Certificate, error) {
	m.mu.RLock()
	roots := m.roots
	m.mu.RUnlock()
	pair, keyDER, err := m.requestCert(ctx, m.ClientTLSConfig(""), roots, "")
	if err != nil {
		return nil, err
	}
	if err := m.writePair(pair.Certificate[0], keyDER); err != nil {
		return nil, fmt.Errorf("certs: persist rotated certificate: %w", err)
	}
	m.mu.Lock()
	m.cert = pair
	m.mu.Unlock()
	return pair, nil
}
