package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/cloud/join"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cloud is a real join server on loopback that can be stopped and restarted
// on the same address.
type cloud struct {
	t    *testing.T
	ca   *pki.CA
	clk  *clocktesting.FakeClock
	srv  *join.Server
	addr string
	stop func()
}

func newCloud(t *testing.T, validity time.Duration) *cloud {
	t.Helper()
	// The fake clock starts at the real time: the join server's TLS and
	// the manager both use it, and certificates are issued from it.
	now := time.Now()
	ca, err := pki.NewCA(now, 0)
	if err != nil {
		t.Fatal(err)
	}
	certDER, keyDER, err := ca.IssueServerCert(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, now, 2*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pki.EncodeCertPEM(certDER), pki.EncodeKeyPEM(keyDER))
	if err != nil {
		t.Fatal(err)
	}
	c := &cloud{t: t, ca: ca, clk: clocktesting.NewFakeClock(now)}
	c.srv, err = join.New(join.Config{NodeCertValidity: validity}, join.Deps{
		CA: ca, ServerCert: pair, Clock: c.clk, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.start("127.0.0.1:0")
	t.Cleanup(c.down)
	return c
}

func (c *cloud) start(addr string) {
	c.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(ctx, ln) }()
	c.stop = func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("join server: %v", err)
		}
	}
}

func (c *cloud) down() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

func (c *cloud) token(t *testing.T) string {
	t.Helper()
	tok, err := pki.NewToken(c.ca, c.clk.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (c *cloud) config(dir, token string) Config {
	return Config{
		Server:   "https://" + c.addr,
		Token:    token,
		NodeName: "edge-1",
		CAFile:   filepath.Join(dir, "ca", "rootCA.crt"),
		CertFile: filepath.Join(dir, "certs", "server.crt"),
		KeyFile:  filepath.Join(dir, "certs", "server.key"),
	}
}

func newManager(t *testing.T, c *cloud, cfg Config, logs *syncBuffer) *Manager {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, nil)
	}
	m, err := New(cfg, Deps{Clock: c.clk, Logger: slog.New(h), Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestBootstrapWritesFiles(t *testing.T) {
	c := newCloud(t, 0)
	dir := t.TempDir()
	cfg := c.config(dir, c.token(t))
	m := newManager(t, c, cfg, nil)
	if err := m.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	cur := m.Current()
	if cur == nil {
		t.Fatal("no current certificate after Bootstrap")
	}
	if _, err := cur.Leaf.Verify(x509.VerifyOptions{Roots: c.ca.Pool(), CurrentTime: c.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not verify against the cloud CA: %v", err)
	}
	if got := cur.Leaf.Subject.CommonName; got != "system:node:edge-1" {
		t.Errorf("CN = %q", got)
	}
	if !m.NotAfter().Equal(cur.Leaf.NotAfter) {
		t.Errorf("NotAfter() = %s, want %s", m.NotAfter(), cur.Leaf.NotAfter)
	}

	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err := pki.ParseCertPEM(caPEM); err != nil || !bytes.Equal(ca.Raw, c.ca.CertDER) {
		t.Errorf("CA file does not hold the cloud CA (%v)", err)
	}
	onDisk, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		t.Fatalf("written certificate and key: %v", err)
	}
	if !bytes.Equal(onDisk.Certificate[0], cur.Certificate[0]) {
		t.Error("certificate file does not hold the current certificate")
	}
	for path, want := range map[string]os.FileMode{
		cfg.CAFile: 0o644, cfg.CertFile: 0o600, cfg.KeyFile: 0o600,
		filepath.Dir(cfg.CAFile): 0o755, filepath.Dir(cfg.CertFile): 0o700,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*", ".*tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestBootstrapOfflineFromFiles(t *testing.T) {
	c := newCloud(t, 0)
	dir := t.TempDir()
	tok := c.token(t)
	first := newManager(t, c, c.config(dir, tok), nil)
	if err := first.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.down()

	// The token stays in the config file; it must not force a join.
	for name, token := range map[string]string{"with token": tok, "without token": ""} {
		t.Run(name, func(t *testing.T) {
			m := newManager(t, c, c.config(dir, token), nil)
			if err := m.Bootstrap(context.Background()); err != nil {
				t.Fatalf("offline Bootstrap with certificates on disk: %v", err)
			}
			if got, want := m.Current().Leaf.SerialNumber, first.Current().Leaf.SerialNumber; got.Cmp(want) != 0 {
				t.Errorf("serial %v, want the one on disk %v", got, want)
			}
		})
	}

	m := newManager(t, c, c.config(t.TempDir(), ""), nil)
	err := m.Bootstrap(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no certificates on disk and no join token configured") {
		t.Errorf("Bootstrap with nothing on disk and no token = %v", err)
	}
}

func TestBootstrapRejoinsForAnotherCA(t *testing.T) {
	a, b := newCloud(t, 0), newCloud(t, 0)
	dir := t.TempDir()
	if err := newManager(t, a, a.config(dir, a.token(t)), nil).Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The node is re-joined to another cloud: its token pins another CA.
	logs := &syncBuffer{}
	m := newManager(t, b, b.config(dir, b.token(t)), logs)
	if err := m.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap with a token for another cloud: %v", err)
	}
	if _, err := m.Current().Leaf.Verify(x509.VerifyOptions{Roots: b.ca.Pool(), CurrentTime: b.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate is not from the new cloud: %v", err)
	}
	if !strings.Contains(logs.String(), "the join token pins CA "+b.ca.Hash()) {
		t.Errorf("rejoin reason not logged:\n%s", logs)
	}
}

func TestBootstrapHashMismatch(t *testing.T) {
	c := newCloud(t, 0)
	other, err := pki.NewCA(c.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, jwt, _ := pki.ParseToken(c.token(t))
	dir := t.TempDir()
	m := newManager(t, c, c.config(dir, other.Hash()+"."+jwt), nil)
	err = m.Bootstrap(context.Background())
	if err == nil || !strings.Contains(err.Error(), "CA certificate hash "+c.ca.Hash()) || !strings.Contains(err.Error(), "does not match the token's "+other.Hash()) {
		t.Fatalf("Bootstrap against an unpinned CA = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written despite the mismatch: %v", entries)
	}
}

func TestBootstrapSurfacesServerError(t *testing.T) {
	c := newCloud(t, 0)
	tok := c.token(t)
	c.clk.Step(2 * time.Hour)
	err := newManager(t, c, c.config(t.TempDir(), tok), nil).Bootstrap(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "token expired at") {
		t.Fatalf("Bootstrap with an expired token = %v, want the server's explanation", err)
	}
}

// presentedSerial makes one mTLS handshake with cfg against a listener that
// requires a client certificate from ca and returns the serial it saw.
func presentedSerial(t *testing.T, c *cloud, cfg *tls.Config) *big.Int {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{mustServerCert(t, c)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: c.ca.Pool(), Time: c.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *big.Int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if tc.Handshake() != nil || len(tc.ConnectionState().PeerCertificates) == 0 {
			got <- nil
			return
		}
		got <- tc.ConnectionState().PeerCertificates[0].SerialNumber
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	// Reading completes the server's side of a TLS 1.3 handshake.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	conn.Read(make([]byte, 1))
	return <-got
}

func mustServerCert(t *testing.T, c *cloud) tls.Certificate {
	t.Helper()
	certDER, keyDER, err := c.ca.IssueServerCert([]string{"localhost"}, nil, c.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pki.EncodeCertPEM(certDER), pki.EncodeKeyPEM(keyDER))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func runManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestRotation(t *testing.T) {
	c := newCloud(t, 0)
	cfg := c.config(t.TempDir(), c.token(t))
	m := newManager(t, c, cfg, nil)
	if err := m.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	tlsCfg := m.ClientTLSConfig("localhost")
	old := m.Current().Leaf
	if got := presentedSerial(t, c, tlsCfg); got == nil || got.Cmp(old.SerialNumber) != 0 {
		t.Fatalf("TLS config presents serial %v, want %v", got, old.SerialNumber)
	}
	runManager(t, m)

	// Rand is 0.5: rotation is due at 80% of the certificate's life.
	due := old.NotBefore.Add(old.NotAfter.Sub(old.NotBefore) * 8 / 10)
	eventually(t, "rotation timer", c.clk.HasWaiters)
	c.clk.Step(due.Sub(c.clk.Now()) - time.Minute)
	// Not yet due: the manager waits on.
	eventually(t, "rotation timer after an early step", c.clk.HasWaiters)
	if m.Current().Leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatal("rotated before the deadline")
	}
	c.clk.Step(time.Minute)
	eventually(t, "rotated certificate", func() bool { return m.Current().Leaf.SerialNumber.Cmp(old.SerialNumber) != 0 })

	cur := m.Current()
	if !cur.Leaf.NotBefore.After(old.NotBefore) {
		t.Errorf("rotated certificate NotBefore %s is not after the old %s", cur.Leaf.NotBefore, old.NotBefore)
	}
	if got := presentedSerial(t, c, tlsCfg); got == nil || got.Cmp(cur.Leaf.SerialNumber) != 0 {
		t.Errorf("existing TLS config presents serial %v, want the rotated %v", got, cur.Leaf.SerialNumber)
	}
	onDisk, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil || !bytes.Equal(onDisk.Certificate[0], cur.Certificate[0]) {
		t.Errorf("rotated certificate not written to disk (%v)", err)
	}
	// The next rotation is scheduled from the new certificate.
	eventually(t, "next rotation timer", c.clk.HasWaiters)
}

func TestRotationRetriesWhileOffline(t *testing.T) {
	c := newCloud(t, 10*24*time.Hour)
	logs := &syncBuffer{}
	m := newManager(t, c, c.config(t.TempDir(), c.token(t)), logs)
	if err := m.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := m.Current().Leaf
	addr := c.addr
	c.down()
	runManager(t, m)

	eventually(t, "rotation timer", c.clk.HasWaiters)
	c.clk.Step(old.NotBefore.Add(old.NotAfter.Sub(old.NotBefore) * 8 / 10).Sub(c.clk.Now()))
	eventually(t, "failed renewal", func() bool { return strings.Contains(logs.String(), "node certificate renewal failed") })
	if !strings.Contains(logs.String(), "node certificate expires soon") {
		t.Errorf("no warning two days before expiry:\n%s", logs)
	}
	eventually(t, "retry timer", c.clk.HasWaiters)

	c.start(addr)
	c.clk.Step(retryMax)
	eventually(t, "rotated certificate", func() bool { return m.Current().Leaf.SerialNumber.Cmp(old.SerialNumber) != 0 })
}

func TestInterruptedRotationIsFinished(t *testing.T) {
	c := newCloud(t, 0)
	cfg := c.config(t.TempDir(), c.token(t))
	m := newManager(t, c, cfg, nil)
	if err := m.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash in writePair after the key was renamed into place.
	pair, keyDER, err := m.requestCert(context.Background(), m.ClientTLSConfig(""), c.ca.Pool(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.KeyFile, pki.EncodeKeyPEM(keyDER), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.CertFile+".new", pki.EncodeCertPEM(pair.Certificate[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	c.down()
	cfg.Token = ""
	again := newManager(t, c, cfg, nil)
	if err := again.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap after an interrupted rotation: %v", err)
	}
	if again.Current().Leaf.SerialNumber.Cmp(pair.Leaf.SerialNumber) != 0 {
		t.Error("the pending certificate was not adopted")
	}
	if _, err := os.Stat(cfg.CertFile + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending file still present: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{Server: "https://cloud:10002", NodeName: "edge-1"}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Server = "http://cloud:10002" }, `server "http://cloud:10002" must be an https://host:port URL`},
		{func(c *Config) { c.Server = "" }, `server "" must be an https`},
		{func(c *Config) { c.NodeName = "Edge" }, `node name "Edge"`},
		{func(c *Config) { c.Token = "abc" }, "join token: pki: malformed token"},
		{func(c *Config) { c.RotateMin, c.RotateMax = 0.9, 0.7 }, "rotation window [0.9, 0.7]"},
		{func(c *Config) { c.RotateMin, c.RotateMax = 0.5, 1 }, "rotation window"},
	} {
		cfg := base
		tc.mod(&cfg)
		_, err := New(cfg, Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", cfg, err, tc.want)
		}
	}
	m, err := New(base, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.CertFile != "/etc/kubeedge/certs/server.crt" || m.cfg.KeyFile != "/etc/kubeedge/certs/server.key" || m.cfg.CAFile != "/etc/kubeedge/ca/rootCA.crt" {
		t.Errorf("default paths = %+v", m.cfg)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "before a successful Bootstrap") {
		t.Errorf("Run before Bootstrap = %v", err)
	}
}
