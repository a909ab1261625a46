package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Unix(1700000000, 0)

// ---- certificates ----

type testPKI struct {
	ca     *pki.CA
	server tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := pkitest.NewCA(t)
	return &testPKI{ca: ca, server: pkitest.ServerCert(t, ca)}
}

// clientTLS returns a client configuration presenting a certificate issued
// to node through the real CSR path.
func (p *testPKI) clientTLS(t *testing.T, node string) *tls.Config {
	t.Helper()
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.ca.Pool(),
		Certificates: []tls.Certificate{pkitest.NodeCert(t, p.ca, node)}}
}

func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.ca.Pool()}
}

// ---- a recording handler ----

type event struct {
	kind   string // started, ended, keepalive, acked, message
	s      *Session
	parent string
	m      wire.Message
}

type recorder struct {
	events chan event
}

func newRecorder() *recorder { return &recorder{events: make(chan event, 1024)} }

func (r *recorder) SessionStarted(s *Session) { r.events <- event{kind: "started", s: s} }
func (r *recorder) SessionEnded(s *Session)   { r.events <- event{kind: "ended", s: s} }
func (r *recorder) Keepalive(s *Session)      { r.events <- event{kind: "keepalive", s: s} }
func (r *recorder) Acked(s *Session, parentID string) {
	r.events <- event{kind: "acked", s: s, parent: parentID}
}
func (r *recorder) HandleMessage(ctx context.Context, s *Session, m wire.Message) {
	if ctx.Err() != nil {
		panic("HandleMessage with a dead context")
	}
	r.events <- event{kind: "message", s: s, m: m}
}

// next returns the next event of one of kinds, skipping others.
func (r *recorder) next(t *testing.T, kinds ...string) event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-r.events:
			for _, k := range kinds {
				if e.kind == k {
					return e
				}
			}
		case <-timeout:
			t.Fatalf("timed out waiting for a %v event", kinds)
		}
	}
}

// ---- a running hub ----

type testHub struct {
	h   *Hub
	p   *testPKI
	rec *recorder
	ws  string // host:port
	qc  string
	// stop cancels Run and returns its error.
	stop func() error
}

func startHub(t *testing.T, cfg Config) *testHub {
	t.Helper()
	p := newTestPKI(t)
	rec := newRecorder()
	if cfg.WebSocketAddr == "" {
		cfg.WebSocketAddr = "127.0.0.1:0"
	}
	if cfg.QUICAddr == "" {
		cfg.QUICAddr = "127.0.0.1:0"
	}
	h, err := New(cfg, Deps{TLS: p.serverTLS(), Handler: rec, Clock: clocktesting.NewFakePassiveClock(epoch),
		NodeFromCert: pki.NodeNameFromCert})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	ws, qa := h.Addrs()
	th := &testHub{h: h, p: p, rec: rec, ws: ws.String(), qc: qa.String()}
	var once sync.Once
	var runErr error
	th.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = errors.New("Run did not return within 5s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := th.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return th
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects as node over kind with node's own certificate.
func (th *testHub) dial(t *testing.T, kind, node string) transport.Conn {
	t.Helper()
	return th.dialAs(t, kind, node, node)
}

// dialAs connects claiming node while holding a certificate for certNode.
func (th *testHub) dialAs(t *testing.T, kind, node, certNode string) transport.Conn {
	t.Helper()
	c, err := th.tryDial(t, kind, node, certNode)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (th *testHub) tryDial(t *testing.T, kind, node, certNode string) (transport.Conn, error) {
	t.Helper()
	tc := th.p.clientTLS(t, certNode)
	var c transport.Conn
	var err error
	if kind == transport.KindQUIC {
		c, err = transport.DialQUIC(ctxT(t), th.qc, transport.Hello{NodeID: node, ProjectID: "proj"}, tc, 0)
	} else {
		c, err = transport.DialWebSocket(ctxT(t), th.ws, "proj", node, tc, 0)
	}
	if err == nil {
		t.Cleanup(func() { _ = c.CloseWithReason("") })
	}
	return c, err
}

func send(t *testing.T, c transport.Conn, m wire.Message) {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, c, b)
}

func sendRaw(t *testing.T, c transport.Conn, b []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteFrame(b); err != nil {
		t.Fatalf("edge write: %v", err)
	}
}

// read returns the next message from the cloud, or the read error.
func read(t *testing.T, c transport.Conn) (wire.Message, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.ReadFrame()
	if err != nil {
		return wire.Message{}, err
	}
	m, err := wire.Decode(b, 0)
	if err != nil {
		t.Fatalf("cloud sent an undecodable frame %q: %v", b, err)
	}
	return m, nil
}

func mustRead(t *testing.T, c transport.Conn, what string) wire.Message {
	t.Helper()
	m, err := read(t, c)
	if err != nil {
		t.Fatalf("reading %s: %v", what, err)
	}
	return m
}

// readClosed reads until the connection fails and returns that error;
// frames before it are returned too.
func readClosed(t *testing.T, c transport.Conn) ([]wire.Message, error) {
	t.Helper()
	var got []wire.Message
	for {
		m, err := read(t, c)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the cloud did not close the connection; got %d frames", len(got))
			}
			return got, err
		}
		got = append(got, m)
	}
}

func ping(t *testing.T) wire.Message {
	t.Helper()
	m, err := wire.New(epoch, wire.SourceEdgeHub, wire.GroupHub, wire.OpKeepalive, wire.Resource{}, "ping")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pingPong checks that the session is alive: a ping gets a pong.
func pingPong(t *testing.T, c transport.Conn) {
	t.Helper()
	send(t, c, ping(t))
	for {
		m := mustRead(t, c, "pong")
		if s, _ := m.ContentString(); m.Operation == wire.OpKeepalive && s == "pong" {
			return
		}
	}
}

var kinds = []string{transport.KindWebSocket, transport.KindQUIC}

// ---- tests ----

func TestNewValidates(t *testing.T) {
	deps := Deps{TLS: &tls.Config{}, Handler: newRecorder(), Clock: clocktesting.NewFakePassiveClock(epoch), NodeFromCert: pki.NodeNameFromCert}
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"no listener", Config{}, deps, "neither the WebSocket nor the QUIC listener is enabled"},
		{"no TLS", Config{QUICAddr: ":0"}, Deps{Handler: deps.Handler, Clock: deps.Clock, NodeFromCert: deps.NodeFromCert},
			"TLS, Handler, Clock and NodeFromCert are required"},
		{"no NodeFromCert", Config{QUICAddr: ":0"}, Deps{TLS: deps.TLS, Handler: deps.Handler, Clock: deps.Clock},
			"TLS, Handler, Clock and NodeFromCert are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.deps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h, err := New(Config{WebSocketAddr: ln.Addr().String(), QUICAddr: "127.0.0.1:0"},
		Deps{TLS: newTestPKI(t).serverTLS(), Handler: newRecorder(), Clock: clocktesting.NewFakePassiveClock(epoch), NodeFromCert: pki.NodeNameFromCert})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "hub: websocket listen") {
		t.Fatalf("Run on a busy address = %v, want a websocket listen error", err)
	}
}

func TestSessionLifecycle(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			th := startHub(t, Config{})
			c := th.dial(t, kind, "edge-1")
			started := th.rec.next(t, "started")
			s := started.s
			if s.Node != "edge-1" || s.ProjectID != "proj" || s.Transport() != kind || !s.ConnectedAt.Equal(epoch) {
				t.Errorf("session = node %q project %q transport %q at %v; want edge-1, proj, %s, %v",
					s.Node, s.ProjectID, s.Transport(), s.ConnectedAt, kind, epoch)
			}
			if th.h.Session("edge-1") != s || th.h.SessionCount() != 1 {
				t.Errorf("Session(edge-1) = %p, count %d; want %p, 1", th.h.Session("edge-1"), th.h.SessionCount(), s)
			}

			// A keepalive "ping" is reported and answered with "pong".
			send(t, c, ping(t))
			pong := mustRead(t, c, "pong")
			if txt, _ := pong.ContentString(); pong.Operation != wire.OpKeepalive || txt != "pong" || pong.Source != wire.SourceCloudHub {
				t.Errorf("reply to ping = %s %q from %q, want keepalive pong from cloudhub", pong.Operation, txt, pong.Source)
			}
			if e := th.rec.next(t, "keepalive", "acked", "message"); e.kind != "keepalive" || e.s != s {
				t.Errorf("handler got %s, want keepalive for the session", e.kind)
			}

			// A response is an ack of what the cloud sent.
			down := wire.Message{Header: wire.Header{ID: "down-1"}, Source: wire.SourceEdgeController, Group: wire.GroupResource,
				Operation: wire.OpInsert, Resource: wire.Resource{Namespace: "default", Type: wire.TypeConfigMap, Name: "cm"}, Content: []byte(`{}`)}
			if err := s.Send(down); err != nil {
				t.Fatalf("Session.Send: %v", err)
			}
			if got := mustRead(t, c, "the downstream message"); got.Header.ID != "down-1" {
				t.Fatalf("edge got %q, want down-1", got.Header.ID)
			}
			send(t, c, wire.NewAck(epoch, wire.SourceMetaManager, down))
			if e := th.rec.next(t, "keepalive", "acked", "message"); e.kind != "acked" || e.parent != "down-1" || e.s != s {
				t.Errorf("handler got %s parent %q, want acked down-1", e.kind, e.parent)
			}

			// Anything else goes to HandleMessage, decoded.
			up, _ := wire.New(epoch, wire.SourceEdged, wire.GroupResource, wire.OpUpdate,
				wire.Resource{Type: wire.TypeNodeStatus, Name: "edge-1"}, map[string]string{"phase": "Running"})
			send(t, c, up)
			e := th.rec.next(t, "keepalive", "acked", "message")
			if e.kind != "message" || e.m.Header.ID != up.Header.ID || e.m.Resource != up.Resource || string(e.m.Content) != `{"phase":"Running"}` {
				t.Errorf("handler got %s %+v, want the uploaded message", e.kind, e.m)
			}
			if s.ReceivedMessages.Load() != 3 || s.SentMessages.Load() != 2 {
				t.Errorf("counters received %d sent %d, want 3 and 2", s.ReceivedMessages.Load(), s.SentMessages.Load())
			}

			// The edge going away ends the session.
			_ = c.CloseWithReason("")
			ended := th.rec.next(t, "ended")
			if ended.s != s {
				t.Fatal("SessionEnded for another session")
			}
			select {
			case <-s.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed after SessionEnded")
			}
			if th.h.Session("edge-1") != nil || th.h.SessionCount() != 0 {
				t.Errorf("session still registered after it ended")
			}
			if err := s.Send(down); !errors.Is(err, ErrSessionClosed) {
				t.Errorf("Send on an ended session = %v, want ErrSessionClosed", err)
			}
		})
	}
}

func TestReconnectReplacesSession(t *testing.T) {
	for _, tc := range []struct{ first, second string }{
		{transport.KindWebSocket, transport.KindWebSocket},
		{transport.KindQUIC, transport.KindQUIC},
		{transport.KindWebSocket, transport.KindQUIC},
	} {
		t.Run(tc.first+"-then-"+tc.second, func(t *testing.T) {
			th := startHub(t, Config{})
			c1 := th.dial(t, tc.first, "edge-1")
			s1 := th.rec.next(t, "started").s
			c2 := th.dial(t, tc.second, "edge-1")
			// Strict order: the old session ends before the new one starts.
			e := th.rec.next(t, "started", "ended")
			if e.kind != "ended" || e.s != s1 {
				t.Fatalf("first event after the reconnect = %s (old session: %v), want ended for the old session", e.kind, e.s == s1)
			}
			e = th.rec.next(t, "started", "ended")
			if e.kind != "started" || e.s == s1 {
				t.Fatalf("second event = %s, want started for the new session", e.kind)
			}
			s2 := e.s
			if th.h.Session("edge-1") != s2 || th.h.SessionCount() != 1 {
				t.Errorf("Session(edge-1) is not the new session, or count %d != 1", th.h.SessionCount())
			}
			_, err := readClosed(t, c1)
			if err == nil || !strings.Contains(err.Error(), "replaced by a new connection of the same node") {
				t.Errorf("old connection ended with %v, want the replacement reason", err)
			}
			pingPong(t, c2)
		})
	}
}

func TestKeepaliveTimeoutDropsSilentSession(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			th := startHub(t, Config{KeepaliveTimeout: timeout})
			// A session that keeps talking survives several timeouts.
			talker := th.dial(t, kind, "talker")
			th.rec.next(t, "started")
			stopTalk := make(chan struct{})
			talked := make(chan error, 1)
			pingFrame, err := wire.Encode(ping(t))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				tick := time.NewTicker(timeout / 6)
				defer tick.Stop()
				for {
					select {
					case <-stopTalk:
						talked <- nil
						return
					case <-tick.C:
						if err := talker.WriteFrame(pingFrame); err != nil {
							talked <- err
							return
						}
					}
				}
			}()

			silent := th.dial(t, kind, "silent")
			e := th.rec.next(t, "started")
			if e.s.Node != "silent" {
				t.Fatalf("started %q, want silent", e.s.Node)
			}
			e = th.rec.next(t, "ended")
			if e.s.Node != "silent" {
				t.Fatalf("session %q ended, want only the silent one", e.s.Node)
			}
			if _, err := readClosed(t, silent); err == nil {
				t.Fatal("silent connection not closed")
			}
			// By now the talker has lived past the timeout twice over.
			e = th.rec.next(t, "ended", "keepalive")
			for range 2 * 6 {
				if e.kind == "ended" {
					t.Fatalf("talking session %q was dropped", e.s.Node)
				}
				e = th.rec.next(t, "ended", "keepalive")
			}
			close(stopTalk)
			if err := <-talked; err != nil {
				t.Fatalf("talker write: %v", err)
			}
			if th.h.Session("talker") == nil {
				t.Error("talking session gone")
			}
		})
	}
}

func TestBadFramesCloseSession(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			th := startHub(t, Config{MaxBadFrames: 3})
			c := th.dial(t, kind, "edge-1")
			th.rec.next(t, "started")
			bad := func(id string) []byte {
				return []byte(`{"header":{"msg_id":"` + id + `"},"route":{"operation":"explode","resource":"default/pod/p"},"content":null}`)
			}
			// Two bad frames, then a good one, resets the count.
			sendRaw(t, c, bad("b1"))
			sendRaw(t, c, []byte("not json"))
			for _, want := range []string{"b1", ""} {
				r := mustRead(t, c, "error reply")
				if r.Operation != wire.OpError || r.Header.ParentID != want {
					t.Fatalf("reply = %s parent %q, want an error reply to %q", r.Operation, r.Header.ParentID, want)
				}
				if want == "b1" {
					if txt, _ := r.ContentString(); !strings.Contains(txt, `wire: unknown operation: "explode"`) {
						t.Errorf("error reply says %q, want it to name the operation", txt)
					}
				}
			}
			pingPong(t, c)
			for i := range 3 {
				sendRaw(t, c, bad(fmt.Sprintf("c%d", i)))
			}
			frames, err := readClosed(t, c)
			// QUIC's CONNECTION_CLOSE discards stream data not yet delivered,
			// so there some of the replies may be lost; the reason is not.
			if len(frames) != 3 && (kind != transport.KindQUIC || len(frames) > 3) {
				t.Errorf("got %d frames before the close, want 3 error replies", len(frames))
			}
			for i, f := range frames {
				if f.Operation != wire.OpError || f.Header.ParentID != fmt.Sprintf("c%d", i) {
					t.Errorf("frame %d = %s to %q, want an error reply to c%d", i, f.Operation, f.Header.ParentID, i)
				}
			}
			if err == nil || !strings.Contains(err.Error(), "3 consecutive bad messages") {
				t.Errorf("connection closed with %v, want the reason naming 3 consecutive bad messages", err)
			}
			th.rec.next(t, "ended")
		})
	}
}

func TestOversizeFrameClosesSession(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			th := startHub(t, Config{MaxFrameBytes: 1024})
			c := th.dial(t, kind, "edge-1")
			th.rec.next(t, "started")
			sendRaw(t, c, []byte(`{"pad":"`+strings.Repeat("x", 2048)+`"}`))
			_, err := readClosed(t, c)
			if err == nil || !strings.Contains(err.Error(), "frame larger than 1024 bytes") {
				t.Errorf("closed with %v, want the reason naming the limit", err)
			}
			if kind == transport.KindWebSocket {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
					t.Errorf("closed with %v, want close code %d", err, websocket.ClosePolicyViolation)
				}
			}
			th.rec.next(t, "ended")
		})
	}
}

func TestIdentityChecks(t *testing.T) {
	th := startHub(t, Config{})
	t.Run("websocket certificate for another node", func(t *testing.T) {
		_, err := th.tryDial(t, transport.KindWebSocket, "edge-b", "edge-a")
		want := `client certificate is for node "edge-a", but the session claims node "edge-b"`
		if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), want) {
			t.Fatalf("dial = %v, want HTTP 403 with %q", err, want)
		}
	})
	t.Run("quic certificate for another node", func(t *testing.T) {
		c, err := th.tryDial(t, transport.KindQUIC, "edge-b", "edge-a")
		if err != nil {
			t.Fatal(err) // the hello is checked after the handshake
		}
		_, err = readClosed(t, c)
		want := `client certificate is for node "edge-a", but the session claims node "edge-b"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("session ended with %v, want %q", err, want)
		}
	})
	t.Run("quic invalid node name", func(t *testing.T) {
		c, err := th.tryDial(t, transport.KindQUIC, "Edge_B", "edge-a")
		if err != nil {
			t.Fatal(err)
		}
		_, err = readClosed(t, c)
		if err == nil || !strings.Contains(err.Error(), `node name "Edge_B"`) {
			t.Fatalf("session ended with %v, want the invalid name named", err)
		}
	})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: th.p.clientTLS(t, "edge-a")}}
	defer hc.CloseIdleConnections()
	get := func(t *testing.T, path string, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "https://"+th.ws+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	t.Run("wrong path", func(t *testing.T) {
		for _, path := range []string{"/", "/proj/edge-a", "/proj/edge-a/event", "/a/b/edge-a/events"} {
			code, body := get(t, path, nil)
			want := fmt.Sprintf("unknown path %q: want /{projectID}/{nodeName}/events", path)
			if code != http.StatusNotFound || body != want {
				t.Errorf("GET %s = %d %q, want 404 %q", path, code, body, want)
			}
		}
	})
	t.Run("node_id header differs from path", func(t *testing.T) {
		code, body := get(t, "/proj/edge-a/events", http.Header{transport.HeaderNodeID: {"edge-z"}})
		want := `header node_id "edge-z" differs from the node "edge-a" in the path`
		if code != http.StatusForbidden || body != want {
			t.Errorf("GET = %d %q, want 403 %q", code, body, want)
		}
	})
	t.Run("websocket dial with a bad project", func(t *testing.T) {
		_, err := th.tryDial(t, transport.KindWebSocket, "edge-a", "edge-a")
		if err != nil {
			t.Fatalf("control dial: %v", err)
		}
		_, err = transport.DialWebSocket(ctxT(t), th.ws, "a/b", "edge-a", th.p.clientTLS(t, "edge-a"), 0)
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "unknown path") {
			t.Errorf("dial = %v, want HTTP 404 naming the unknown path", err)
		}
	})
	if th.h.Session("edge-b") != nil {
		t.Error("a refused session was registered")
	}
}

func TestRunClosesSessionsOnCancel(t *testing.T) {
	th := startHub(t, Config{})
	ws := th.dial(t, transport.KindWebSocket, "edge-ws")
	qc := th.dial(t, transport.KindQUIC, "edge-quic")
	th.rec.next(t, "started")
	th.rec.next(t, "started")
	if err := th.stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	// Run has returned: both sessions have ended and the handler was told.
	ended := map[string]bool{}
	for range 2 {
		select {
		case e := <-th.rec.events:
			if e.kind != "ended" {
				t.Fatalf("event %s after Run returned, want ended", e.kind)
			}
			ended[e.s.Node] = true
			select {
			case <-e.s.Done():
			default:
				t.Errorf("session %s not done when Run returned", e.s.Node)
			}
		default:
			t.Fatalf("SessionEnded not delivered before Run returned; ended so far %v", ended)
		}
	}
	if !ended["edge-ws"] || !ended["edge-quic"] || th.h.SessionCount() != 0 {
		t.Errorf("ended %v, count %d; want both ended and none left", ended, th.h.SessionCount())
	}
	for _, c := range []transport.Conn{ws, qc} {
		if _, err := readClosed(t, c); err == nil || !strings.Contains(err.Error(), "cloudhub shutting down") {
			t.Errorf("%s connection ended with %v, want the shutdown reason", c.Kind(), err)
		}
	}
	// Nothing listens any more.
	if _, err := th.tryDial(t, transport.KindWebSocket, "edge-ws", "edge-ws"); err == nil {
		t.Error("WebSocket dial succeeded after Run returned")
	}
}

// TestConcurrentConnectsOfOneNode races several connections of the same
// node: whatever the interleaving, at most one session is registered, every
// started session ends before the next starts, and nothing leaks.
func TestConcurrentConnectsOfOneNode(t *testing.T) {
	th := startHub(t, Config{})
	var wg sync.WaitGroup
	conns := make(chan transport.Conn, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := kinds[i%2]
			tc := th.p.clientTLS(t, "edge-1")
			var c transport.Conn
			var err error
			if kind == transport.KindQUIC {
				c, err = transport.DialQUIC(ctxT(t), th.qc, transport.Hello{NodeID: "edge-1"}, tc, 0)
			} else {
				c, err = transport.DialWebSocket(ctxT(t), th.ws, "proj", "edge-1", tc, 0)
			}
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			conns <- c
		}()
	}
	wg.Wait()
	close(conns)
	var open []transport.Conn
	for c := range conns {
		open = append(open, c)
		t.Cleanup(func() { _ = c.CloseWithReason("") })
	}
	// Drain events until exactly one session is live and stays so: every
	// "started" but the last must be followed by its "ended".
	var live *Session
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-th.rec.events:
			switch e.kind {
			case "started":
				if live != nil {
					t.Fatalf("session started while another (%p) was live", live)
				}
				live = e.s
			case "ended":
				if e.s != live {
					t.Fatalf("ended a session that was not the live one")
				}
				live = nil
			}
			continue
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("events did not settle")
		}
		if live != nil && th.h.Session("edge-1") == live && th.h.SessionCount() == 1 {
			break
		}
	}
	_ = open
}

// lateRecorder fails the test if a session starts or ends after Run returned.
type lateRecorder struct {
	recorder
	returned chan struct{}
	late     chan string
}

func (r *lateRecorder) check(what string) {
	select {
	case <-r.returned:
		select {
		case r.late <- what:
		default:
		}
	default:
	}
}

func (r *lateRecorder) SessionStarted(s *Session) { r.check("SessionStarted(" + s.Node + ")") }
func (r *lateRecorder) SessionEnded(s *Session)   { r.check("SessionEnded(" + s.Node + ")") }

// TestShutdownDuringConnects cancels Run while WebSocket sessions are being
// set up: Run must wait for every session it let start, and none may start
// once it returned.
func TestShutdownDuringConnects(t *testing.T) {
	p := newTestPKI(t)
	tlsByNode := map[string]*tls.Config{}
	for i := range 8 {
		node := fmt.Sprintf("edge-%d", i)
		tlsByNode[node] = p.clientTLS(t, node)
	}
	for round := range 5 {
		rec := &lateRecorder{returned: make(chan struct{}), late: make(chan string, 1)}
		h, err := New(Config{WebSocketAddr: "127.0.0.1:0"}, Deps{TLS: p.serverTLS(), Handler: rec,
			Clock: clocktesting.NewFakePassiveClock(epoch), NodeFromCert: pki.NodeNameFromCert})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		<-h.Ready()
		ws, _ := h.Addrs()
		var wg sync.WaitGroup
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		for node, tc := range tlsByNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for dctx.Err() == nil {
					c, err := transport.DialWebSocket(dctx, ws.String(), "proj", node, tc, 0)
					if err != nil {
						return // the hub is gone
					}
					_ = c.CloseWithReason("")
				}
			}()
		}
		// Let some sessions come and go, then shut down in the middle of it.
		for h.SessionCount() == 0 && dctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Run = %v", round, err)
		}
		close(rec.returned)
		dcancel()
		wg.Wait()
		select {
		case what := <-rec.late:
			t.Fatalf("round %d: %s after Run returned", round, what)
		default:
		}
	}
}
