package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPKI is a CA with a server certificate for 127.0.0.1 and a node
// certificate, the way cloudcore and edgecore hold them.
type testPKI struct {
	ca     *pki.CA
	server tls.Certificate
	node   tls.Certificate
}

func newTestPKI(t *testing.T, node string) *testPKI {
	t.Helper()
	ca := pkitest.NewCA(t)
	return &testPKI{ca: ca, server: pkitest.ServerCert(t, ca), node: pkitest.NodeCert(t, ca, node)}
}

func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.Pool(),
	}
}

func (p *testPKI) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      p.ca.Pool(),
		Certificates: []tls.Certificate{p.node},
	}
}

// pair is a connected client and server Conn and what the server saw.
type pair struct {
	client, server Conn
	hello          Hello         // QUIC: the hello the server accepted
	request        *http.Request // WebSocket: the upgrade request
}

func withTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wsPair connects over a real TLS WebSocket on 127.0.0.1. The server end
// reads at most serverMax bytes per frame, the client clientMax.
func wsPair(t *testing.T, p *testPKI, serverMax, clientMax int) pair {
	t.Helper()
	type accepted struct {
		c   Conn
		req *http.Request
	}
	got := make(chan accepted, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := NewWebSocketAcceptor(serverMax).Accept(w, r)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		if _, ok := c.(*serverWebSocket); !ok {
			t.Errorf("a TLS WebSocket was accepted as %T, want the cloud's own framing", c)
		}
		got <- accepted{c, r}
	}))
	srv.TLS = p.serverTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	client, err := DialWebSocket(withTimeout(t), addr, "proj", "edge-1", p.clientTLS(), clientMax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseWithReason("") })
	select {
	case a := <-got:
		t.Cleanup(func() { _ = a.c.CloseWithReason("") })
		return pair{client: client, server: a.c, request: a.req}
	case <-time.After(10 * time.Second):
		t.Fatal("server never accepted the WebSocket")
	}
	return pair{}
}

// quicListener listens for QUIC on 127.0.0.1 with the hub's ALPN.
func quicListener(t *testing.T, p *testPKI) *quic.Listener {
	t.Helper()
	tc := p.serverTLS()
	tc.NextProtos = []string{ALPN}
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// quicPair connects over real QUIC on 127.0.0.1.
func quicPair(t *testing.T, p *testPKI, serverMax, clientMax int) pair {
	t.Helper()
	ln := quicListener(t, p)
	ctx := withTimeout(t)
	type accepted struct {
		c     Conn
		hello Hello
		err   error
	}
	got := make(chan accepted, 1)
	go func() {
		qc, err := ln.Accept(ctx)
		if err != nil {
			got <- accepted{err: err}
			return
		}
		c, h, err := AcceptQUICSession(ctx, qc, serverMax)
		got <- accepted{c, h, err}
	}()
	client, err := DialQUIC(ctx, ln.Addr().String(), Hello{NodeID: "edge-1", ProjectID: "proj"}, p.clientTLS(), clientMax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseWithReason("") })
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { _ = a.c.CloseWithReason("") })
	return pair{client: client, server: a.c, hello: a.hello}
}

var kinds = []struct {
	kind string
	dial func(t *testing.T, p *testPKI, serverMax, clientMax int) pair
}{
	{KindWebSocket, wsPair},
	{KindQUIC, quicPair},
}

func TestRoundTrip(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			c := k.dial(t, p, wire.DefaultMaxFrameBytes, wire.DefaultMaxFrameBytes)
			big := bytes.Repeat([]byte("x"), 256<<10) // spans many WebSocket/QUIC packets
			frames := [][]byte{[]byte(`{"a":1}`), big, []byte(`"ping"`), []byte("{}")}
			for _, dir := range []struct {
				name     string
				from, to Conn
			}{{"client to server", c.client, c.server}, {"server to client", c.server, c.client}} {
				errc := make(chan error, 1)
				go func() {
					for _, f := range frames {
						if err := dir.from.WriteFrame(f); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				for i, want := range frames {
					got, err := dir.to.ReadFrame()
					if err != nil {
						t.Fatalf("%s: frame %d: %v", dir.name, i, err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("%s: frame %d is %d bytes, want %d bytes as sent", dir.name, i, len(got), len(want))
					}
				}
				if err := <-errc; err != nil {
					t.Fatalf("%s: write: %v", dir.name, err)
				}
			}
			for _, side := range []Conn{c.client, c.server} {
				if side.Kind() != k.kind {
					t.Errorf("Kind() = %q, want %q", side.Kind(), k.kind)
				}
				if _, _, err := net.SplitHostPort(side.RemoteAddr()); err != nil {
					t.Errorf("RemoteAddr() = %q: %v", side.RemoteAddr(), err)
				}
			}
			certs := c.server.PeerCertificates()
			if len(certs) == 0 {
				t.Fatal("server sees no client certificate")
			}
			if node, err := pki.NodeNameFromCert(certs[0]); err != nil || node != "edge-1" {
				t.Errorf("client certificate names node %q (%v), want edge-1", node, err)
			}
			if certs := c.client.PeerCertificates(); len(certs) == 0 || len(certs[0].IPAddresses) == 0 {
				t.Errorf("client sees server certificates %v, want the 127.0.0.1 server certificate", certs)
			}
		})
	}
}

func TestSessionIdentity(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	t.Run(KindWebSocket, func(t *testing.T) {
		c := wsPair(t, p, 0, 0)
		r := c.request
		if r.URL.Path != "/proj/edge-1/events" {
			t.Errorf("path = %q, want KubeEdge's /{project}/{node}/events", r.URL.Path)
		}
		if r.Header.Get(HeaderNodeID) != "edge-1" || r.Header.Get(HeaderProjectID) != "proj" {
			t.Errorf("headers %s=%q %s=%q, want edge-1 and proj", HeaderNodeID, r.Header.Get(HeaderNodeID), HeaderProjectID, r.Header.Get(HeaderProjectID))
		}
	})
	t.Run(KindQUIC, func(t *testing.T) {
		c := quicPair(t, p, 0, 0)
		if c.hello != (Hello{NodeID: "edge-1", ProjectID: "proj"}) {
			t.Errorf("hello = %+v, want edge-1/proj", c.hello)
		}
	})
}

func TestReadLimit(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	const limit = 1024
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			c := k.dial(t, p, limit, wire.DefaultMaxFrameBytes)
			written := make(chan error, 1)
			go func() {
				// A frame exactly at the limit passes, one byte more does not.
				if err := c.client.WriteFrame(bytes.Repeat([]byte("a"), limit)); err != nil {
					written <- err
					return
				}
				written <- c.client.WriteFrame(bytes.Repeat([]byte("b"), limit+1))
			}()
			defer func() {
				if err := <-written; err != nil {
					t.Errorf("client write: %v", err)
				}
			}()
			if f, err := c.server.ReadFrame(); err != nil || len(f) != limit {
				t.Fatalf("frame at the limit: %d bytes, %v", len(f), err)
			}
			_, err := c.server.ReadFrame()
			if !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("ReadFrame of %d bytes with limit %d = %v, want an error wrapping wire.ErrFrameTooLarge", limit+1, limit, err)
			}
		})
	}
}

func TestCloseWithReasonReachesPeer(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			c := k.dial(t, p, 0, 0)
			const reason = "replaced by a new connection of the same node"
			if err := c.server.CloseWithReason(reason); err != nil {
				t.Fatalf("CloseWithReason: %v", err)
			}
			_, err := c.client.ReadFrame()
			if err == nil || !strings.Contains(err.Error(), reason) {
				t.Fatalf("client ReadFrame after close = %v, want an error carrying %q", err, reason)
			}
			switch k.kind {
			case KindWebSocket:
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != reason {
					t.Errorf("error = %#v, want a CloseError %d with the reason", err, websocket.ClosePolicyViolation)
				}
			case KindQUIC:
				var ae *quic.ApplicationError
				if !errors.As(err, &ae) || !ae.Remote || ae.ErrorMessage != reason {
					t.Errorf("error = %#v, want a remote ApplicationError with the reason", err)
				}
			}
		})
	}
}

func TestWebSocketCloseReasonIsTruncated(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	c := wsPair(t, p, 0, 0)
	long := strings.Repeat("r", 300) // a close frame carries at most 123 bytes of text
	if err := c.server.CloseWithReason(long); err != nil {
		t.Fatal(err)
	}
	_, err := c.client.ReadFrame()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Text != long[:120] {
		t.Fatalf("client ReadFrame = %v, want a CloseError with the first 120 bytes of the reason", err)
	}
}

func TestReadDeadlineTimesOut(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			c := k.dial(t, p, 0, 0)
			if err := c.server.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			_, err := c.server.ReadFrame()
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("ReadFrame past the deadline = %v, want a timeout (the hub's keepalive check relies on it)", err)
			}
		})
	}
}

func TestDialWebSocketReportsRefusal(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "client certificate is for node \"a\", not \"edge-1\"", http.StatusForbidden)
	}))
	srv.TLS = p.serverTLS()
	srv.StartTLS()
	defer srv.Close()
	_, err := DialWebSocket(withTimeout(t), strings.TrimPrefix(srv.URL, "https://"), "proj", "edge-1", p.clientTLS(), 0)
	if err == nil {
		t.Fatal("dial succeeded against a server that refuses")
	}
	for _, want := range []string{"HTTP 403", `client certificate is for node "a", not "edge-1"`, "/proj/edge-1/events"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if !errors.Is(err, websocket.ErrBadHandshake) {
		t.Errorf("error %v does not wrap websocket.ErrBadHandshake", err)
	}
}

func TestAcceptQUICSessionRejectsBadHello(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	for _, tc := range []struct {
		name  string
		hello []byte
		want  string
	}{
		{"not JSON", []byte("edge-1"), "quic hello is not JSON {node_id, project_id}"},
		{"too large", bytes.Repeat([]byte("x"), 5000), "quic hello: wire: frame too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := quicListener(t, p)
			ctx := withTimeout(t)
			errc := make(chan error, 1)
			go func() {
				qc, err := ln.Accept(ctx)
				if err != nil {
					errc <- err
					return
				}
				defer qc.CloseWithError(0, "")
				_, _, err = AcceptQUICSession(ctx, qc, 0)
				errc <- err
			}()
			tc2 := p.clientTLS()
			tc2.NextProtos = []string{ALPN}
			qc, err := quic.DialAddr(ctx, ln.Addr().String(), tc2, QUICConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer qc.CloseWithError(0, "")
			s, err := qc.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The server may refuse (and close) before the whole frame is
			// written, so a write error here is expected for large hellos.
			_ = wire.WriteFrame(s, tc.hello)
			err = <-errc
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AcceptQUICSession = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDialQUICUnreachable(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	// A bound UDP socket that never answers: the handshake cannot finish.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = DialQUIC(ctx, pc.LocalAddr().String(), Hello{NodeID: "edge-1"}, p.clientTLS(), 0)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("transport: quic dial %s", pc.LocalAddr())) {
		t.Fatalf("DialQUIC = %v, want an error naming the address", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialQUIC = %v, want it to wrap the context's deadline", err)
	}
}
