package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// heartbeat is long in real time: keepalive ticks come from the fake clock,
// and the client's read deadline (three heartbeats of real time) never fires.
const heartbeat = time.Hour

var epoch = time.Unix(1700000000, 0)

func TestNewValidates(t *testing.T) {
	deps := Deps{TLS: func() *tls.Config { return nil }, Handler: &recorder{}, Clock: clocktesting.NewFakeClock(epoch)}
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"no server", Config{Transport: transport.KindWebSocket, NodeName: "n"}, deps, "Server and NodeName are required"},
		{"no node", Config{Transport: transport.KindWebSocket, Server: "h:1"}, deps, "Server and NodeName are required"},
		{"bad transport", Config{Transport: "carrier-pigeon", Server: "h:1", NodeName: "n"}, deps, `unknown transport "carrier-pigeon"`},
		{"no clock", Config{Transport: transport.KindQUIC, Server: "h:1", NodeName: "n"}, Deps{TLS: deps.TLS, Handler: deps.Handler}, "TLS, Handler and Clock are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.deps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBackoffEqualJitter(t *testing.T) {
	for _, tc := range []struct {
		name             string
		initial, max     time.Duration
		wantInit, wantMx time.Duration // after defaults
	}{
		{"configured", 100 * time.Millisecond, 2 * time.Second, 100 * time.Millisecond, 2 * time.Second},
		{"defaults", 0, 0, 250 * time.Millisecond, 30 * time.Second},
		// A first delay longer than the default cap: the cap must not be
		// below it, or the very first wait would exceed ReconnectMax.
		{"initial above the default cap", time.Minute, 0, time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, jitter := range []float64{0, 0.5, 0.999} {
				c, err := New(Config{Transport: transport.KindWebSocket, Server: "h:1", NodeName: "n",
					ReconnectInitial: tc.initial, ReconnectMax: tc.max},
					Deps{TLS: func() *tls.Config { return nil }, Handler: &recorder{}, Clock: clocktesting.NewFakeClock(epoch),
						Jitter: func() float64 { return jitter }})
				if err != nil {
					t.Fatal(err)
				}
				if c.cfg.ReconnectInitial != tc.wantInit || c.cfg.ReconnectMax != tc.wantMx {
					t.Fatalf("initial, max = %v, %v; want %v, %v", c.cfg.ReconnectInitial, c.cfg.ReconnectMax, tc.wantInit, tc.wantMx)
				}
				prev := time.Duration(0)
				for attempt := 0; attempt <= 10; attempt++ {
					d := min(tc.wantInit<<attempt, tc.wantMx)
					got := c.backoff(attempt)
					if got < d/2 || got > d {
						t.Errorf("jitter %v attempt %d: backoff %v outside [%v, %v]", jitter, attempt, got, d/2, d)
					}
					if got > tc.wantMx {
						t.Errorf("jitter %v attempt %d: backoff %v above ReconnectMax %v", jitter, attempt, got, tc.wantMx)
					}
					if want := d/2 + time.Duration(jitter*float64(d/2)); got != want {
						t.Errorf("jitter %v attempt %d: backoff %v, want %v", jitter, attempt, got, want)
					}
					if got < prev {
						t.Errorf("jitter %v attempt %d: backoff %v shorter than the previous %v", jitter, attempt, got, prev)
					}
					prev = got
				}
				if got, want := c.backoff(10_000), tc.wantMx/2+time.Duration(jitter*float64(tc.wantMx/2)); got != want {
					t.Errorf("jitter %v attempt 10000: backoff %v, want the capped %v", jitter, got, want)
				}
			}
		})
	}
}

// ---- a tiny cloud for the client to talk to ----

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

// cloudConn is one accepted session with its frames decoded by a reader.
type cloudConn struct {
	c      transport.Conn
	frames chan wire.Message
	gone   chan struct{} // closed when the reader stops
	err    error         // set before gone is closed
}

func (cc *cloudConn) read() {
	defer close(cc.gone)
	for {
		b, err := cc.c.ReadFrame()
		if err != nil {
			cc.err = err
			return
		}
		m, err := wire.Decode(b, 0)
		if err != nil {
			cc.err = fmt.Errorf("edge sent an undecodable frame %q: %w", b, err)
			return
		}
		cc.frames <- m
	}
}

// next returns the next frame the edge sent that matches keep.
func (cc *cloudConn) next(t *testing.T, what string, keep func(wire.Message) bool) wire.Message {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-cc.frames:
			if keep(m) {
				return m
			}
		case <-cc.gone:
			t.Fatalf("connection ended while waiting for %s: %v", what, cc.err)
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (cc *cloudConn) send(t *testing.T, m wire.Message) {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	cc.sendRaw(t, b)
}

func (cc *cloudConn) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	_ = cc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := cc.c.WriteFrame(b); err != nil {
		t.Fatalf("cloud write: %v", err)
	}
}

func isKeepalive(m wire.Message) bool  { return m.Operation == wire.OpKeepalive }
func notKeepalive(m wire.Message) bool { return m.Operation != wire.OpKeepalive }

// cloud accepts WebSocket or QUIC sessions.
type cloud struct {
	addr     string
	accepted chan *cloudConn
	path     chan string // WebSocket upgrade paths
}

func startCloud(t *testing.T, p *testPKI, kind string) *cloud {
	t.Helper()
	cl := &cloud{accepted: make(chan *cloudConn, 8), path: make(chan string, 8)}
	var (
		mu    sync.Mutex
		conns []*cloudConn
	)
	accept := func(c transport.Conn) {
		cc := &cloudConn{c: c, frames: make(chan wire.Message, 256), gone: make(chan struct{})}
		mu.Lock()
		conns = append(conns, cc)
		mu.Unlock()
		go cc.read()
		cl.accepted <- cc
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.ca.Pool()}
	var stop func()
	switch kind {
	case transport.KindWebSocket:
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := transport.Upgrader().Upgrade(w, r, nil)
			if err != nil {
				return
			}
			cl.path <- r.URL.Path
			accept(transport.NewWebSocketConn(c, 0))
		}))
		srv.TLS = tc
		srv.StartTLS()
		cl.addr = strings.TrimPrefix(srv.URL, "https://")
		stop = srv.Close
	case transport.KindQUIC:
		tc.NextProtos = []string{transport.ALPN}
		ln, err := quic.ListenAddr("127.0.0.1:0", tc, transport.QUICConfig())
		if err != nil {
			t.Fatal(err)
		}
		cl.addr = ln.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				qc, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				c, _, err := transport.AcceptQUICSession(ctx, qc, 0)
				if err != nil {
					_ = qc.CloseWithError(1, err.Error())
					continue
				}
				accept(c)
			}
		}()
		stop = func() { cancel(); _ = ln.Close(); <-done }
	}
	t.Cleanup(func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		for _, cc := range conns {
			_ = cc.c.CloseWithReason("")
			<-cc.gone
		}
	})
	return cl
}

func (cl *cloud) accept(t *testing.T) *cloudConn {
	t.Helper()
	select {
	case cc := <-cl.accepted:
		return cc
	case <-time.After(5 * time.Second):
		t.Fatal("the edge did not connect")
	}
	return nil
}

// recorder is a Handler that records what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string       // guarded by mu: "connected", "disconnected"
	msgs   []wire.Message // guarded by mu
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) record(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) Connected(context.Context) {
	r.record(func() { r.events = append(r.events, "connected") })
}
func (r *recorder) Disconnected() {
	r.record(func() { r.events = append(r.events, "disconnected") })
}
func (r *recorder) HandleMessage(_ context.Context, m wire.Message) {
	r.record(func() { r.msgs = append(r.msgs, m) })
}

// waitFor polls cond (under r.mu) until it holds or the deadline passes.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; events %v, %d messages", what, r.events, len(r.msgs))
		}
	}
}

type edge struct {
	c     *Client
	clk   *clocktesting.FakeClock
	rec   *recorder
	cloud *cloud
}

// startEdge runs a Client against a fresh cloud of the given kind; it is
// stopped (and Run's return checked) when the test ends.
func startEdge(t *testing.T, kind string) *edge {
	t.Helper()
	p := newTestPKI(t, "edge-1")
	cl := startCloud(t, p, kind)
	e := &edge{clk: clocktesting.NewFakeClock(epoch), rec: newRecorder(), cloud: cl}
	c, err := New(Config{Transport: kind, Server: cl.addr, ProjectID: "proj", NodeName: "edge-1",
		Heartbeat: heartbeat, ReconnectInitial: 100 * time.Millisecond, ReconnectMax: time.Second},
		Deps{
			TLS: func() *tls.Config {
				return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{p.node}}
			},
			Handler: e.rec, Clock: e.clk, Jitter: func() float64 { return 0 },
		})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	if err := c.SendNow(context.Background(), msg("early", 0)); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendNow before Run = %v, want ErrNotConnected", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if c.IsConnected() {
			t.Error("IsConnected after Run returned")
		}
	})
	return e
}

func msg(id string, i int) wire.Message {
	return wire.Message{
		Header:    wire.Header{ID: id, Timestamp: epoch.UnixMilli()},
		Source:    wire.SourceEdgeController,
		Group:     wire.GroupResource,
		Operation: wire.OpUpdate,
		Resource:  wire.Resource{Namespace: "default", Type: wire.TypeConfigMap, Name: fmt.Sprintf("cm-%d", i)},
		Content:   []byte(fmt.Sprintf(`{"metadata":{"name":"cm-%d","namespace":"default"}}`, i)),
	}
}

var kinds = []string{transport.KindWebSocket, transport.KindQUIC}

func TestFirstFrameIsKeepaliveThenEveryHeartbeat(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, kind)
			cc := e.cloud.accept(t)
			if kind == transport.KindWebSocket {
				if p := <-e.cloud.path; p != "/proj/edge-1/events" {
					t.Errorf("dialled path %q, want /proj/edge-1/events", p)
				}
			}
			first := cc.next(t, "the first frame", func(wire.Message) bool { return true })
			if first.Operation != wire.OpKeepalive || first.Source != wire.SourceEdgeHub || first.Group != wire.GroupHub {
				t.Fatalf("first frame = %s from %q group %q, want a keepalive from edgehub", first.Operation, first.Source, first.Group)
			}
			if s, _ := first.ContentString(); s != "ping" {
				t.Fatalf("first keepalive content = %q, want ping", s)
			}
			if first.Header.Timestamp != epoch.UnixMilli() {
				t.Errorf("first keepalive stamped %d, want the clock's %d", first.Header.Timestamp, epoch.UnixMilli())
			}
			// The ticker exists once the first keepalive is out. Half a
			// period sends nothing; a full period sends one keepalive, stamped
			// at that time.
			for i := 1; i <= 3; i++ {
				e.clk.Step(heartbeat / 2)
				e.clk.Step(heartbeat / 2)
				ka := cc.next(t, fmt.Sprintf("keepalive %d", i), isKeepalive)
				if want := epoch.Add(time.Duration(i) * heartbeat).UnixMilli(); ka.Header.Timestamp != want {
					t.Errorf("keepalive %d stamped %d, want %d (one per heartbeat)", i, ka.Header.Timestamp, want)
				}
			}
			e.rec.waitFor(t, "Connected", func() bool { return len(e.rec.events) == 1 })
			if !e.c.IsConnected() || e.c.Connects() != 1 {
				t.Errorf("IsConnected %v Connects %d, want true 1", e.c.IsConnected(), e.c.Connects())
			}
		})
	}
}

func TestMessagesReachHandlerInOrder(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, kind)
			cc := e.cloud.accept(t)
			const n = 50
			for i := range n {
				cc.send(t, msg(fmt.Sprintf("m-%d", i), i))
				if i == n/2 {
					// Keepalives are the hub's business, not the handler's;
					// an error answering something the edge sent goes to the
					// handler (the uplink stops retrying what was refused).
					pong, _ := wire.New(epoch, wire.SourceCloudHub, wire.GroupHub, wire.OpKeepalive, wire.Resource{}, "pong")
					cc.send(t, pong)
					cc.send(t, wire.NewError(epoch, wire.SourceCloudHub, "x", "something was wrong"))
				}
			}
			e.rec.waitFor(t, "all messages", func() bool { return len(e.rec.msgs) >= n+1 })
			e.rec.mu.Lock()
			defer e.rec.mu.Unlock()
			var got []string
			var errs []wire.Message
			for _, m := range e.rec.msgs {
				if m.Operation == wire.OpError {
					errs = append(errs, m)
					continue
				}
				got = append(got, m.Header.ID)
			}
			if len(errs) != 1 || errs[0].Header.ParentID != "x" {
				t.Errorf("error replies handled: %+v, want the one answering x", errs)
			}
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("m-%d", i))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("handled messages (-want +got):\n%s", diff)
			}
			if m := e.rec.msgs[7]; m.Resource != msg("", 7).Resource || string(m.Content) != string(msg("", 7).Content) {
				t.Errorf("message 7 = %v %s, want it decoded as sent", m.Resource, m.Content)
			}
		})
	}
}

func TestSendReachesCloud(t *testing.T) {
	e := startEdge(t, transport.KindWebSocket)
	cc := e.cloud.accept(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Send(ctx, msg("up-1", 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := e.c.SendNow(ctx, msg("up-2", 2)); err != nil {
		t.Fatalf("SendNow: %v", err)
	}
	if err := e.c.SendDeferrable(ctx, msg("up-3", 3)); err != nil {
		t.Fatalf("SendDeferrable: %v", err)
	}
	for _, id := range []string{"up-1", "up-2", "up-3"} {
		if m := cc.next(t, id, notKeepalive); m.Header.ID != id {
			t.Errorf("cloud got %q, want %q", m.Header.ID, id)
		}
	}
}

func TestMalformedFrameGetsErrorAndSessionContinues(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, kind)
			cc := e.cloud.accept(t)
			// Not JSON: there is no id to answer, so it is only dropped.
			cc.sendRaw(t, []byte("garbage"))
			// Decodable header, bad operation: answered with an error naming it.
			cc.sendRaw(t, []byte(`{"header":{"msg_id":"bad-1"},"route":{"operation":"frobnicate","resource":"default/pod/p"},"content":null}`))
			// Bad resource key.
			cc.sendRaw(t, []byte(`{"header":{"msg_id":"bad-2"},"route":{"operation":"update","resource":"Default/pod/p"},"content":{}}`))
			for _, want := range []struct{ id, text string }{
				{"bad-1", `wire: unknown operation: "frobnicate"`},
				{"bad-2", `wire: bad resource: namespace "Default"`},
			} {
				r := cc.next(t, "the error reply to "+want.id, notKeepalive)
				if r.Operation != wire.OpError || r.Header.ParentID != want.id || r.Source != wire.SourceEdgeHub {
					t.Fatalf("reply = %s parent %q source %q, want an error to %q from edgehub", r.Operation, r.Header.ParentID, r.Source, want.id)
				}
				if txt, _ := r.ContentString(); !strings.Contains(txt, want.text) {
					t.Errorf("error reply to %s says %q, want it to contain %q", want.id, txt, want.text)
				}
			}
			cc.send(t, msg("good", 1))
			e.rec.waitFor(t, "the valid message", func() bool { return len(e.rec.msgs) == 1 })
			e.rec.mu.Lock()
			id := e.rec.msgs[0].Header.ID
			e.rec.mu.Unlock()
			if id != "good" {
				t.Errorf("handler got %q, want only the valid message", id)
			}
			if e.c.Connects() != 1 {
				t.Errorf("Connects = %d, want 1: bad frames must not end the session", e.c.Connects())
			}
		})
	}
}

func TestReconnectsAfterServerDrops(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := startEdge(t, kind)
			cc := e.cloud.accept(t)
			cc.next(t, "the first keepalive", isKeepalive)
			e.rec.waitFor(t, "Connected", func() bool { return len(e.rec.events) == 1 })
			if err := cc.c.CloseWithReason("cloudhub shutting down"); err != nil {
				t.Fatal(err)
			}
			e.rec.waitFor(t, "Disconnected", func() bool { return len(e.rec.events) == 2 })
			if err := e.c.SendNow(context.Background(), msg("while-down", 1)); !errors.Is(err, ErrNotConnected) {
				t.Errorf("SendNow while disconnected = %v, want ErrNotConnected", err)
			}
			// The client now waits for its back-off on the fake clock.
			var cc2 *cloudConn
			deadline := time.After(5 * time.Second)
			for cc2 == nil {
				e.clk.Step(time.Second) // ReconnectMax: any back-off has passed
				select {
				case cc2 = <-e.cloud.accepted:
				case <-time.After(5 * time.Millisecond):
				case <-deadline:
					t.Fatal("the edge did not reconnect")
				}
			}
			if s, _ := cc2.next(t, "the first frame of the new session", func(wire.Message) bool { return true }).ContentString(); s != "ping" {
				t.Errorf("first frame after reconnecting is %q, want a ping", s)
			}
			e.rec.waitFor(t, "Connected again", func() bool { return len(e.rec.events) == 3 })
			if got := e.c.Connects(); got != 2 {
				t.Errorf("Connects = %d, want 2", got)
			}
			e.rec.mu.Lock()
			events := append([]string(nil), e.rec.events...)
			e.rec.mu.Unlock()
			if diff := cmp.Diff([]string{"connected", "disconnected", "connected"}, events); diff != "" {
				t.Errorf("handler events (-want +got):\n%s", diff)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.c.SendNow(ctx, msg("after", 2)); err != nil {
				t.Fatalf("SendNow on the new session: %v", err)
			}
			if m := cc2.next(t, "the message sent on the new session", notKeepalive); m.Header.ID != "after" {
				t.Errorf("new session got %q, want %q", m.Header.ID, "after")
			}
		})
	}
}

func TestWaitConnectedHonoursContext(t *testing.T) {
	c, err := New(Config{Transport: transport.KindWebSocket, Server: "127.0.0.1:1", NodeName: "n"},
		Deps{TLS: func() *tls.Config { return &tls.Config{} }, Handler: newRecorder(), Clock: clocktesting.NewFakeClock(epoch)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitConnected(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitConnected with a cancelled context = %v, want context.Canceled", err)
	}
	if c.IsConnected() {
		t.Error("IsConnected before Run")
	}
}

func TestDeferWait(t *testing.T) {
	cases := []struct {
		tokens, reserve, perSecond float64
		want                       time.Duration
	}{
		{tokens: 60, reserve: 30, perSecond: 30, want: 0},
		{tokens: 31, reserve: 30, perSecond: 30, want: 0},
		{tokens: 30, reserve: 30, perSecond: 30, want: time.Second / 30},
		{tokens: 0, reserve: 30, perSecond: 30, want: 31 * time.Second / 30},
		{tokens: -2, reserve: 1, perSecond: 4, want: time.Second},
		{tokens: 0, reserve: 1, perSecond: 0, want: time.Second},
	}
	for _, c := range cases {
		if got := deferWait(c.tokens, c.reserve, c.perSecond); got != c.want {
			t.Errorf("deferWait(%v tokens, reserve %v, %v/s) = %v, want %v", c.tokens, c.reserve, c.perSecond, got, c.want)
		}
	}
}
