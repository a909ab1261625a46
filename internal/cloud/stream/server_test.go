package stream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestStreamReachesTheRightEdge(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.addNode("edge-a", "127.0.0.2", true)
	h.addNode("edge-b", "127.0.0.3", true)
	h.connectEdge("edge-a", nil)
	h.connectEdge("edge-b", nil)

	// By IP and by hostname, as the apiserver's preferred address types allow.
	for _, tc := range []struct{ target, node string }{
		{"127.0.0.2:10350", "edge-a"}, {"127.0.0.3:10350", "edge-b"}, {"edge-a:10350", "edge-a"}, {"EDGE-B.:10350", "edge-b"},
	} {
		c, br := h.mustStream(tc.target, tc.node)
		roundTrip(t, c, br, "second line", tc.node+":second line")
		c.Close()
	}
	waitFor(t, "streams to close", func() bool { return h.srv.Stats().Active == 0 })
	if st := h.srv.Stats(); st.Streams != 4 || st.Pending != 0 || st.ProxyRefused != 0 || st.TunnelRefused != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Many concurrent streams to two nodes never cross.
func TestConcurrentStreamsDoNotCross(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.addNode("edge-a", "127.0.0.2", true)
	h.addNode("edge-b", "127.0.0.3", true)
	h.connectEdge("edge-a", nil)
	h.connectEdge("edge-b", nil)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node, ip := "edge-a", "127.0.0.2"
			if i%2 == 1 {
				node, ip = "edge-b", "127.0.0.3"
			}
			c, br, res, err := h.connect(ip+":10350", nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if res.StatusCode != 200 {
				errs <- fmt.Errorf("stream %d: %s", i, res.Status)
				return
			}
			for j := range 20 {
				msg := fmt.Sprintf("s%d-m%d", i, j)
				if _, err := fmt.Fprintln(c, msg); err != nil {
					errs <- err
					return
				}
				line, err := br.ReadString('\n')
				if want := node + ":" + msg + "\n"; err != nil || line != want {
					errs <- fmt.Errorf("stream %d read %q, %v; want %q", i, line, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := h.srv.Stats(); st.Streams != n {
		t.Errorf("stats %+v, want %d streams", st, n)
	}
}

func TestNodeNotConnected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.addNode("edge-a", "127.0.0.2", true)
	_, _, res, err := h.connect("127.0.0.2:10350", nil)
	wantStatus(t, res, err, 503, `edge node "edge-a" is not connected to cloudcore`)

	// Connected, then gone: the next stream fails the same way.
	h.connectEdge("edge-a", nil)
	c, _ := h.mustStream("127.0.0.2:10350", "edge-a")
	c.Close()
	h.disconnectEdge("edge-a")
	_, _, res, err = h.connect("127.0.0.2:10350", nil)
	wantStatus(t, res, err, 503, `edge node "edge-a" is not connected to cloudcore`)
}

// An edge that is asked but never dials back gets a timeout, on the
// injected clock.
func TestClaimTimeout(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	asked := make(chan wire.Message, 1)
	h := newHarness(t, harnessOpts{cfg: Config{ClaimTimeout: 7 * time.Second}, clock: clk,
		send: func(node string, m wire.Message) error { asked <- m; return nil }})
	h.addNode("edge-a", "127.0.0.2", true)
	type result struct {
		status string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		c, _, res, err := h.connect("127.0.0.2:10350", nil)
		if err != nil {
			got <- result{err: err}
			return
		}
		c.Close()
		got <- result{status: res.Status}
	}()
	m := <-asked
	if r, err := wire.ParseStreamRequest(m); err != nil || r.Service != wire.StreamServiceKubelet {
		t.Fatalf("stream request %+v: %v", r, err)
	}
	waitFor(t, "the claim timer", func() bool { return clk.HasWaiters() })
	clk.Step(7 * time.Second)
	r := <-got
	if r.err != nil || !strings.HasPrefix(r.status, "504 ") || !strings.Contains(r.status, `edge node "edge-a" did not open the stream tunnel within 7s`) {
		t.Fatalf("CONNECT answered %q, %v", r.status, r.err)
	}
	if st := h.srv.Stats(); st.Pending != 0 {
		t.Fatalf("a timed-out stream is still pending: %+v", st)
	}
	// A late claim of that id is refused.
	cert := pkitest.NodeCert(t, h.ca, "edge-a")
	tunnelAddr, _ := h.srv.Addrs()
	tc, err := tls.Dial("tcp", tunnelAddr.String(), &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	req, _ := wire.ParseStreamRequest(m)
	if err := tunnel.WriteHello(tc, req.ID); err != nil {
		t.Fatal(err)
	}
	if err := tunnel.ReadReply(tc); err == nil || !strings.Contains(err.Error(), "unknown or expired stream id") {
		t.Fatalf("late claim: %v", err)
	}
}

// A stream request that reaches node B (leaked id) cannot be claimed with
// B's certificate; the stream still works when A claims it.
func TestOtherNodeCannotClaim(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.addNode("edge-a", "127.0.0.2", true)
	h.addNode("edge-b", "127.0.0.3", true)
	thief := h.connectEdge("edge-b", nil)
	h.connectEdge("edge-a", nil)
	// Every request for edge-a reaches edge-b first.
	h.route = func(node string) []string {
		if node == "edge-a" {
			return []string{"edge-b", "edge-a"}
		}
		return []string{node}
	}
	c, _ := h.mustStream("127.0.0.2:10350", "edge-a")
	c.Close()
	waitFor(t, "the thief's refusal", func() bool { return thief.Stats().Failed == 1 })
	if st := h.srv.Stats(); st.TunnelRefused != 1 {
		t.Fatalf("stats %+v, want 1 tunnel refused", st)
	}

	// A stream client (non-node) certificate on the tunnel port is refused too.
	sc := streamClientCert(t, h.ca, "kube-apiserver-kubelet-client")
	tunnelAddr, _ := h.srv.Addrs()
	tc, err := tls.Dial("tcp", tunnelAddr.String(), &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{sc}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tunnel.ReadReply(tc); err == nil || !strings.Contains(err.Error(), "does not start with \"system:node:\"") {
		t.Fatalf("stream client on the tunnel port: %v", err)
	}
}

// Garbage on both ports is refused and does not disturb a stream in use.
func TestGarbageIsRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{HandshakeTimeout: 2 * time.Second}})
	h.addNode("edge-a", "127.0.0.2", true)
	h.connectEdge("edge-a", nil)
	live, liveBR := h.mustStream("127.0.0.2:10350", "edge-a")
	defer live.Close()
	tunnelAddr, proxyAddr := h.srv.Addrs()
	otherCA := pkitest.NewCA(t)
	foreign := pkitest.NodeCert(t, otherCA, "edge-a")
	nodeCert := pkitest.NodeCert(t, h.ca, "edge-a")

	for _, addr := range []string{tunnelAddr.String(), proxyAddr.String()} {
		// Plain bytes instead of TLS.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02"))
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.ReadAll(c)
		c.Close()
		// TLS without a client certificate, and with one of another CA.
		for _, certs := range [][]tls.Certificate{nil, {foreign}} {
			tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: certs})
			if err == nil {
				_ = tc.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, err = tc.Read(make([]byte, 1))
				tc.Close()
			}
			if err == nil {
				t.Fatalf("%s accepted a TLS client with certificates %v", addr, certs)
			}
		}
	}
	// Valid node certificate, garbage hello.
	tc, err := tls.Dial("tcp", tunnelAddr.String(), &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{nodeCert}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tc.Write([]byte("\x16\x03\x01garbage\n"))
	if err := tunnel.ReadReply(tc); err == nil || !strings.Contains(err.Error(), "does not start with") {
		t.Fatalf("garbage hello: %v", err)
	}
	tc.Close()
	// A node certificate may not use the proxy port.
	nc := nodeCert
	_, _, res, err := h.connect("127.0.0.2:10350", h.proxyTLS(&nc))
	wantStatus(t, res, err, 403, `"system:node:edge-a" is a node certificate`)
	// Garbage after a good handshake on the proxy port.
	pc, err := tls.Dial("tcp", proxyAddr.String(), h.proxyTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = pc.Write([]byte("\x00\x01\x02 nonsense\r\n\r\n"))
	res2, err := readResponse(pc)
	wantStatus(t, res2, err, 400, "bad CONNECT request")
	pc.Close()
	// A silent client is dropped after the handshake timeout.
	sc, err := net.Dial("tcp", proxyAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := sc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("silent client: read %v, want the server to close", err)
	}
	sc.Close()

	roundTrip(t, live, liveBR, "still here", "edge-a:still here")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func readResponse(c net.Conn) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	return http.ReadResponse(bufio.NewReader(c), nil)
}

func TestPassthroughAndRefusals(t *testing.T) {
	// A "cloud service" on loopback for passthrough.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("cloud service\n"))
			c.Close()
		}
	}()
	svc := ln.Addr().String()

	h := newHarness(t, harnessOpts{cfg: Config{Passthrough: true}})
	h.addNode("edge-a", "127.0.0.2", true)
	h.addNode("edge-twin", "127.0.0.2", true)
	h.addNode("edge-c", "127.0.0.4", true)
	h.addNode("cloud-1", "127.0.0.5", false)
	h.connectEdge("edge-c", nil)

	c, br, res, err := h.connect(svc, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("passthrough CONNECT %s: %v %v", svc, res, err)
	}
	if line, _ := br.ReadString('\n'); line != "cloud service\n" {
		t.Fatalf("passthrough read %q", line)
	}
	c.Close()

	_, _, res, err = h.connect("127.0.0.2:10350", nil)
	wantStatus(t, res, err, 502, `127.0.0.2:10350 is the address and kubelet port of nodes "edge-a", "edge-twin"`)
	_, _, res, err = h.connect("127.0.0.4:22", nil)
	wantStatus(t, res, err, 403, `127.0.0.4:22 is an address of edge node "edge-c" (kubelet port 10350)`)
	_, _, res, err = h.connect("127.0.0.1:1", nil)
	wantStatus(t, res, err, 502, "cloudstream passthrough to 127.0.0.1:1")
	// A cloud node's kubelet is passed through (nothing listens there: 502).
	_, _, res, err = h.connect("127.0.0.5:10350", nil)
	wantStatus(t, res, err, 502, "cloudstream passthrough to 127.0.0.5:10350")

	// Passthrough off.
	h2 := newHarness(t, harnessOpts{cfg: Config{Passthrough: false}})
	_, _, res, err = h2.connect(svc, nil)
	wantStatus(t, res, err, 403, "is not the kubelet of an edge node and cloudstream passthrough is disabled")
}

// Shutting down closes open streams and leaves no goroutine behind
// (goleak in TestMain).
func TestShutdownClosesStreams(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.addNode("edge-a", "127.0.0.2", true)
	h.connectEdge("edge-a", nil)
	var open []net.Conn
	for range 5 {
		c, _ := h.mustStream("127.0.0.2:10350", "edge-a")
		open = append(open, c)
	}
	h.stop()
	for _, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("stream still open after shutdown: %v", err)
		}
		c.Close()
	}
}

// Per-node pending limit.
func TestTooManyPending(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{MaxPendingPerNode: 1, ClaimTimeout: time.Hour},
		send: func(string, wire.Message) error { return nil }}) // nobody dials back
	h.addNode("edge-a", "127.0.0.2", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := h.srv.Open(ctx, "edge-a")
		first <- err
	}()
	waitFor(t, "the first stream to wait", func() bool { return h.srv.Stats().Pending == 1 })
	_, _, res, err := h.connect("127.0.0.2:10350", nil)
	wantStatus(t, res, err, 503, `edge node "edge-a" has 1 streams waiting for their tunnel`)
	cancel()
	if err := <-first; err != context.Canceled {
		t.Fatalf("cancelled Open: %v", err)
	}
}

// Edges get kubelet serving certificates for the addresses they alone
// report; other requests are refused clearly.
func TestServingCertificates(t *testing.T) {
	h := newHarness(t, harnessOpts{sign: true})
	h.addNode("edge-a", "127.0.0.2", true)
	h.addNode("edge-twin", "127.0.0.9", true)
	h.addNode("edge-b", "127.0.0.9", true) // shares its IP with edge-twin
	a := h.connectEdgeNamed("edge-a", "edge-a", nil)
	b := h.connectEdgeNamed("edge-b", "edge-b", nil)
	waitFor(t, "serving certificates", func() bool { return a.ServingCert() != nil && b.ServingCert() != nil })
	la, lb := a.ServingCert().Leaf, b.ServingCert().Leaf
	if fmt.Sprint(la.DNSNames, la.IPAddresses) != "[edge-a] [127.0.0.2]" {
		t.Fatalf("edge-a certified for %v %v", la.DNSNames, la.IPAddresses)
	}
	if fmt.Sprint(lb.DNSNames, lb.IPAddresses) != "[edge-b] []" {
		t.Fatalf("edge-b certified for %v %v: a shared address must not be certified", lb.DNSNames, lb.IPAddresses)
	}
	if _, err := la.Verify(x509.VerifyOptions{Roots: h.ca.Pool(), DNSName: "127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if st := h.srv.Stats(); st.ServingCerts != 2 {
		t.Fatalf("stats %+v", st)
	}
	// A node the index does not know yet keeps trying and is refused meanwhile.
	c := h.connectEdgeNamed("edge-new", "edge-new", nil)
	waitFor(t, "a refusal", func() bool { return h.srv.Stats().TunnelRefused >= 1 })
	if c.ServingCert() != nil {
		t.Fatal("a serving certificate for a node without addresses")
	}
	// Without a signer the cloud says so.
	h2 := newHarness(t, harnessOpts{})
	h2.addNode("edge-a", "127.0.0.2", true)
	cert := pkitest.NodeCert(t, h2.ca, "edge-a")
	tunnelAddr, _ := h2.srv.Addrs()
	tc, err := tls.Dial("tcp", tunnelAddr.String(), &tls.Config{RootCAs: h2.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tunnel.WriteCertRequest(tc, []byte("not a csr")); err != nil {
		t.Fatal(err)
	}
	if _, err := tunnel.ReadCertReply(tc); err == nil || !strings.Contains(err.Error(), "does not issue kubelet serving certificates") {
		t.Fatalf("without a signer: %v", err)
	}
}

// An edge that answers the stream request with an error fails the stream at
// once, with its reason, instead of after the claim timeout.
func TestEdgeRefusal(t *testing.T) {
	asked := make(chan wire.Message, 1)
	h := newHarness(t, harnessOpts{cfg: Config{ClaimTimeout: time.Hour},
		send: func(node string, m wire.Message) error { asked <- m; return nil }})
	h.addNode("edge-a", "127.0.0.2", true)
	got := make(chan string, 1)
	go func() {
		c, _, res, err := h.connect("127.0.0.2:10350", nil)
		if err != nil {
			got <- err.Error()
			return
		}
		c.Close()
		got <- res.Status
	}()
	m := <-asked
	if h.srv.EdgeRefused("edge-b", m.Header.ID, "x") || h.srv.EdgeRefused("edge-a", "other-id", "x") {
		t.Fatal("a refusal by another node or for another message was taken")
	}
	if !h.srv.EdgeRefused("edge-a", m.Header.ID, "modules.edgeStream is not enabled on this edge") {
		t.Fatal("the refusal was not matched to the stream")
	}
	if s := <-got; !strings.HasPrefix(s, "502 ") || !strings.Contains(s, `edge node "edge-a": the edge refused the stream: modules.edgeStream is not enabled on this edge`) {
		t.Fatalf("CONNECT answered %q", s)
	}
}
