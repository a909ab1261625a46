package stream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	edgestream "github.com/kubeedge-go/kubeedge/internal/edge/stream"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// harness is a CloudStream on loopback with in-process edges whose "kubelet
// server" answers each line with "<node>:<line>".
type harness struct {
	t      *testing.T
	ca     *pki.CA
	srv    *Server
	index  *addrIndex
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	edges map[string]*testEdge // guarded by mu; connected edges
	// route, if set, decides which edges receive a stream request.
	route func(node string) []string
	conns sync.WaitGroup // echo servers
}

type testEdge struct {
	client *edgestream.Client
	cancel context.CancelFunc
	done   chan struct{}
}

type harnessOpts struct {
	cfg   Config
	clock clock.Clock
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	send  func(node string, m wire.Message) error // replaces the test edges
	// sign issues kubelet serving certificates with the test CA.
	sign bool
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	ca := pkitest.NewCA(t)
	srvCert := pkitest.ServerCert(t, ca)
	tlsCfg := func() *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{srvCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	}
	h := &harness{t: t, ca: ca, index: newAddrIndex(), edges: map[string]*testEdge{}, done: make(chan error, 1)}
	cfg := o.cfg
	cfg.TunnelAddr, cfg.ProxyAddr = "127.0.0.1:0", "127.0.0.1:0"
	send := h.send
	if o.send != nil {
		send = o.send
	}
	deps := Deps{
		TunnelTLS: tlsCfg(), ProxyTLS: tlsCfg(), Router: h.index, Send: send,
		Dial: o.dial, Clock: o.clock, Logger: testLogger(t),
	}
	if o.sign {
		deps.SignServing = func(csr *x509.CertificateRequest, node string, dns []string, ips []net.IP) ([]byte, error) {
			return ca.SignKubeletServingCSR(csr, node, dns, ips, time.Now(), time.Hour)
		}
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-h.done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.mu.Lock()
	edges := h.edges
	h.edges = map[string]*testEdge{}
	h.mu.Unlock()
	for _, e := range edges {
		e.cancel()
		<-e.done
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.conns.Wait()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// send is the Send dependency: it hands the request to the edges the route
// names (by default the node itself), like a CloudHub session would.
func (h *harness) send(node string, m wire.Message) error {
	targets := []string{node}
	if h.route != nil {
		targets = h.route(node)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sent := false
	for _, n := range targets {
		e := h.edges[n]
		if e == nil {
			continue
		}
		if err := e.client.HandleMessage(m); err != nil {
			return err
		}
		sent = true
	}
	if !sent {
		return ErrNodeNotConnected
	}
	return nil
}

// addNode indexes an edge node with address ip and kubelet port 10350.
func (h *harness) addNode(name, ip string, edge bool) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if edge {
		n.Labels[nodes.LabelEdgeRole] = ""
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10350
	h.index.set(n)
}

// connectEdge starts an EdgeStream for node presenting cert (its own node
// certificate unless given).
func (h *harness) connectEdge(node string, cert *tls.Certificate) *edgestream.Client {
	return h.connectEdgeNamed(node, "", cert)
}

// connectEdgeNamed is connectEdge with EdgeStream's NodeName (which makes it
// ask for a serving certificate).
func (h *harness) connectEdgeNamed(node, nodeName string, cert *tls.Certificate) *edgestream.Client {
	h.t.Helper()
	if cert == nil {
		c := pkitest.NodeCert(h.t, h.ca, node)
		cert = &c
	}
	tunnelAddr, _ := h.srv.Addrs()
	ec, err := edgestream.New(edgestream.Config{Server: tunnelAddr.String(), HandshakeTimeout: 20 * time.Second, NodeName: nodeName}, edgestream.Deps{
		TLS: func() *tls.Config {
			return &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{*cert}}
		},
		Serve:  func(c net.Conn) error { h.echo(node, c); return nil },
		Logger: testLogger(h.t),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &testEdge{client: ec, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		_ = ec.Run(ctx)
	}()
	h.mu.Lock()
	h.edges[node] = e
	h.mu.Unlock()
	return ec
}

func (h *harness) disconnectEdge(node string) {
	h.mu.Lock()
	e := h.edges[node]
	delete(h.edges, node)
	h.mu.Unlock()
	if e != nil {
		e.cancel()
		<-e.done
	}
}

// echo answers each line with "<node>:<line>" until EOF.
func (h *harness) echo(node string, c net.Conn) {
	h.conns.Add(1)
	go func() {
		defer h.conns.Done()
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if _, err := fmt.Fprintf(c, "%s:%s\n", node, sc.Text()); err != nil {
				return
			}
		}
	}()
}

// proxyClient returns a TLS client config for the proxy port with a stream
// client certificate (or cert).
func (h *harness) proxyTLS(cert *tls.Certificate) *tls.Config {
	h.t.Helper()
	if cert == nil {
		c := streamClientCert(h.t, h.ca, "kube-apiserver-kubelet-client")
		cert = &c
	}
	return &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{*cert}}
}

func streamClientCert(t testing.TB, ca *pki.CA, cn string) tls.Certificate {
	t.Helper()
	der, keyDER, err := ca.IssueStreamClientCert(cn, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// connect sends CONNECT target through the proxy port the way the
// apiserver does and returns the connection and the response.
func (h *harness) connect(target string, cfg *tls.Config) (net.Conn, *bufio.Reader, *http.Response, error) {
	_, proxyAddr := h.srv.Addrs()
	if cfg == nil {
		cfg = h.proxyTLS(nil)
	}
	c, err := tls.Dial("tcp", proxyAddr.String(), cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target); err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return c, br, res, nil
}

// mustStream opens a stream to target and checks one echo round trip.
func (h *harness) mustStream(target, wantNode string) (net.Conn, *bufio.Reader) {
	h.t.Helper()
	c, br, res, err := h.connect(target, nil)
	if err != nil {
		h.t.Fatalf("CONNECT %s: %v", target, err)
	}
	if res.StatusCode != 200 {
		c.Close()
		h.t.Fatalf("CONNECT %s: %s", target, res.Status)
	}
	roundTrip(h.t, c, br, "ping", wantNode+":ping")
	return c, br
}

func roundTrip(t testing.TB, c net.Conn, br *bufio.Reader, send, want string) {
	t.Helper()
	if _, err := fmt.Fprintln(c, send); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("read %q, %v; want %q", line, err, want)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantStatus(t testing.TB, res *http.Response, err error, code int, reason string) {
	t.Helper()
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	if res.StatusCode != code || !strings.Contains(res.Status, reason) {
		t.Fatalf("CONNECT answered %q, want %d containing %q", res.Status, code, reason)
	}
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), reason) {
		t.Fatalf("body %q does not contain %q", body, reason)
	}
}
