package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

const (
	// expiryWarning is how close to expiry the manager starts warning.
	expiryWarning = 7 * 24 * time.Hour
	retryMin      = 5 * time.Second
	retryMax      = 5 * time.Minute
	// maxResponse bounds what is read from the join server.
	maxResponse    = 64 << 10
	requestTimeout = 30 * time.Second
)

// Config says where the cloud is and where the certificates live.
type Config struct {
	// Server is the join endpoint, "https://host:10002".
	Server string
	// Token is the join token from "keadm gettoken". It is only needed when
	// no usable certificates are on disk.
	Token                     string
	NodeName                  string
	CAFile, CertFile, KeyFile string
	// The certificate is renewed at a random point between RotateMin and
	// RotateMax of its lifetime.
	RotateMin, RotateMax float64
}

// WithDefaults returns c with KubeEdge's default paths and rotation window
// where fields are zero.
func (c Config) WithDefaults() Config {
	if c.CAFile == "" {
		c.CAFile = "/etc/kubeedge/ca/rootCA.crt"
	}
	if c.CertFile == "" {
		c.CertFile = "/etc/kubeedge/certs/server.crt"
	}
	if c.KeyFile == "" {
		c.KeyFile = "/etc/kubeedge/certs/server.key"
	}
	if c.RotateMin == 0 && c.RotateMax == 0 {
		c.RotateMin, c.RotateMax = 0.7, 0.9
	}
	return c
}

// Validate reports the first invalid field. It has no side effects.
func (c Config) Validate() error {
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("certs: server %q must be an https://host:port URL", c.Server)
	}
	if err := pki.ValidateNodeName(c.NodeName); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if c.Token != "" {
		if _, _, err := pki.ParseToken(c.Token); err != nil {
			return fmt.Errorf("certs: join token: %w", err)
		}
	}
	for name, path := range map[string]string{"CA file": c.CAFile, "certificate file": c.CertFile, "key file": c.KeyFile} {
		if path == "" {
			return fmt.Errorf("certs: %s path is empty", name)
		}
	}
	if !(0 < c.RotateMin && c.RotateMin <= c.RotateMax && c.RotateMax < 1) {
		return fmt.Errorf("certs: rotation window [%v, %v] must satisfy 0 < min <= max < 1", c.RotateMin, c.RotateMax)
	}
	return nil
}

// Deps are the manager's collaborators; all are optional.
type Deps struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// Rand returns a number in [0, 1) for rotation and retry jitter.
	Rand func() float64
}

// Manager owns the node's certificate.
type Manager struct {
	cfg  Config
	deps Deps

	mu    sync.RWMutex
	roots *x509.CertPool   // guarded by mu; set by Bootstrap
	cert  *tls.Certificate // guarded by mu; Leaf set; replaced whole on rotation
}

// New validates cfg (after defaults); it does no I/O.
func New(cfg Config, deps Deps) (*Manager, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Rand == nil {
		deps.Rand = rand.Float64
	}
	return &Manager{cfg: cfg, deps: deps}, nil
}

// Bootstrap makes a certificate available: from disk if the files there are
// usable, which needs no network, or else by joining with the token.
func (m *Manager) Bootstrap(ctx context.Context) error {
	ca, pair, err := m.load()
	switch {
	case err == nil:
		reason := m.rejoinReason(ca, pair.Leaf)
		if reason == "" || m.cfg.Token == "" {
			if reason != "" {
				m.deps.Logger.Warn("using certificate from disk although it is not usable; configure a join token to replace it", "reason", reason)
			}
			m.set(ca, pair)
			m.deps.Logger.Info("loaded node certificate", "file", m.cfg.CertFile, "serial", pair.Leaf.SerialNumber, "notAfter", pair.Leaf.NotAfter)
			return nil
		}
		m.deps.Logger.Info("joining again", "reason", reason)
	case m.cfg.Token == "":
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("certs: no certificates on disk and no join token configured: %w", err)
		}
		return fmt.Errorf("certs: %w (configure a join token to fetch new certificates)", err)
	case !errors.Is(err, fs.ErrNotExist):
		m.deps.Logger.Warn("certificates on disk are unusable; joining again", "err", err)
	}
	return m.join(ctx)
}

// rejoinReason says why certificates on disk should be replaced when a
// token is configured: the token pins another CA, or the certificate expired.
func (m *Manager) rejoinReason(ca, leaf *x509.Certificate) string {
	if m.cfg.Token != "" {
		if want, _, _ := pki.ParseToken(m.cfg.Token); want != pki.HashCert(ca.Raw) {
			return fmt.Sprintf("the join token pins CA %s but %s holds CA %s", want, m.cfg.CAFile, pki.HashCert(ca.Raw))
		}
	}
	if now := m.deps.Clock.Now(); !now.Before(leaf.NotAfter) {
		return fmt.Sprintf("certificate %s expired at %s", m.cfg.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// join fetches the CA, checks it against the token's hash, and obtains a
// node certificate with the token.
func (m *Manager) join(ctx context.Context) error {
	wantHash, jwt, err := pki.ParseToken(m.cfg.Token)
	if err != nil {
		return fmt.Errorf("certs: join token: %w", err)
	}
	// The CA is fetched without verifying the server: the hash pinned in
	// the token is the trust anchor.
	caDER, err := m.fetch(ctx, http.MethodGet, "/ca.crt", &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}, nil, nil)
	if err != nil {
		return err
	}
	if got := pki.HashCert(caDER); got != wantHash {
		return fmt.Errorf("certs: CA certificate hash %s from %s does not match the token's %s", got, m.cfg.Server, wantHash)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("certs: parse CA certificate from %s: %w", m.cfg.Server, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Time: m.deps.Clock.Now}
	pair, keyDER, err := m.requestCert(ctx, tlsCfg, roots, "Bearer "+jwt)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(m.cfg.CAFile, pki.EncodeCertPEM(caDER), 0o644, 0o755); err != nil {
		return err
	}
	if err := m.writePair(pair.Certificate[0], keyDER); err != nil {
		return err
	}
	m.set(ca, pair)
	m.deps.Logger.Info("joined the cloud", "node", m.cfg.NodeName, "serial", pair.Leaf.SerialNumber, "notAfter", pair.Leaf.NotAfter)
	return nil
}

// requestCert generates a key and asks /edge.crt to certify it. auth is the
// Authorization header, empty when tlsCfg presents the current certificate.
func (m *Manager) requestCert(ctx context.Context, tlsCfg *tls.Config, roots *x509.CertPool, auth string) (*tls.Certificate, []byte, error) {
	key, keyDER, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	csr, err := pki.NewNodeCSR(key, m.cfg.NodeName)
	if err != nil {
		return nil, nil, err
	}
	hdr := http.Header{"NodeName": {m.cfg.NodeName}}
	if auth != "" {
		hdr.Set("Authorization", auth)
	}
	der, err := m.fetch(ctx, http.MethodPost, "/edge.crt", tlsCfg, hdr, pki.EncodeCSRPEM(csr))
	if err != nil {
		return nil, nil, err
	}
	pair, err := tls.X509KeyPair(pki.EncodeCertPEM(der), pki.EncodeKeyPEM(keyDER))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate from %s: %w", m.cfg.Server, err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: m.deps.Clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("certs: certificate from %s does not verify: %w", m.cfg.Server, err)
	}
	if name, err := pki.NodeNameFromCert(pair.Leaf); err != nil || name != m.cfg.NodeName {
		return nil, nil, fmt.Errorf("certs: certificate from %s is not for node %q (got %q, %v)", m.cfg.Server, m.cfg.NodeName, name, err)
	}
	return &pair, keyDER, nil
}

// fetch does one request and returns the body of a 200 response; any other
// status becomes an error carrying the server's explanation.
func (m *Manager) fetch(ctx context.Context, method, path string, tlsCfg *tls.Config, hdr http.Header, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	target := strings.TrimSuffix(m.cfg.Server, "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("certs: %s %s: %w", method, target, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("certs: %s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("certs: %s %s: reading response: %w", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("certs: %s %s: %s: %s", method, target, resp.Status, strings.TrimSpace(string(data[:min(len(data), 1024)])))
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("certs: %s %s: response larger than %d bytes", method, target, maxResponse)
	}
	return data, nil
}

func (m *Manager) set(ca *x509.Certificate, pair *tls.Certificate) {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.roots, m.cert = roots, pair
}

// Current returns the certificate in use, or nil before Bootstrap.
func (m *Manager) Current() *tls.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert
}

// NotAfter returns the expiry of the current certificate (zero before
// Bootstrap).
func (m *Manager) NotAfter() time.Time {
	if c := m.Current(); c != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// ClientTLSConfig returns a TLS config that trusts only the cloud's CA and
// presents whatever certificate is current at each handshake. Call it after
// Bootstrap.
func (m *Manager) ClientTLSConfig(serverName string) *tls.Config {
	m.mu.RLock()
	roots := m.roots
	m.mu.RUnlock()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    roots,
		Time:       m.deps.Clock.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := m.Current(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // no certificate yet: send none
		},
	}
}
