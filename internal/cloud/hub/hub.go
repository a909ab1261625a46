package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Config says where CloudHub listens and how it treats sessions.
type Config struct {
	// WebSocketAddr and QUICAddr are host:port to listen on; empty disables.
	WebSocketAddr string
	QUICAddr      string
	// KeepaliveTimeout drops a session that sent nothing for this long.
	KeepaliveTimeout time.Duration
	WriteTimeout     time.Duration
	MaxFrameBytes    int
	// MaxBadFrames closes a session after this many consecutive undecodable frames.
	MaxBadFrames int
}

// Handler receives what sessions bring. Calls for one session are made from
// that session's reader goroutine, in order; SessionEnded for a node always
// precedes SessionStarted of the session that replaces it.
type Handler interface {
	SessionStarted(s *Session)
	SessionEnded(s *Session)
	// Keepalive is called for each keepalive the edge sends.
	Keepalive(s *Session)
	// Acked is called for each positive response to a message the cloud sent.
	Acked(s *Session, parentID string)
	// HandleMessage gets every other valid message from the edge.
	HandleMessage(ctx context.Context, s *Session, m wire.Message)
}

// Deps are CloudHub's collaborators.
type Deps struct {
	// TLS must present the server certificate and verify client certificates
	// against the cloud's CA.
	TLS     *tls.Config
	Handler Handler
	Clock   clock.PassiveClock
	Logger  *slog.Logger
	// NodeFromCert extracts the node name from a verified client certificate.
	NodeFromCert func(cert *x509.Certificate) (string, error)
}

// Hub is CloudHub.
type Hub struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session // guarded by mu; the live session of each node
	wsAddr   net.Addr            // guarded by mu; set once listening
	quicAddr net.Addr            // guarded by mu
	// closing is set once Run stops taking sessions; a WebSocket handler
	// that upgraded after that must not start one (guarded by mu).
	closing bool
	ready   chan struct{} // closed once all listeners are bound

	webSockets *transport.WebSocketAcceptor
}

// New validates cfg and builds a Hub.
func New(cfg Config, deps Deps) (*Hub, error) {
	if cfg.WebSocketAddr == "" && cfg.QUICAddr == "" {
		return nil, errors.New("hub: neither the WebSocket nor the QUIC listener is enabled")
	}
	if deps.TLS == nil || deps.Handler == nil || deps.Clock == nil || deps.NodeFromCert == nil {
		return nil, errors.New("hub: TLS, Handler, Clock and NodeFromCert are required")
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = wire.DefaultMaxFrameBytes
	}
	if cfg.MaxBadFrames <= 0 {
		cfg.MaxBadFrames = 10
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Hub{cfg: cfg, deps: deps, log: deps.Logger.With("component", "cloudhub"),
		sessions: map[string]*Session{}, ready: make(chan struct{}),
		webSockets: transport.NewWebSocketAcceptor(cfg.MaxFrameBytes)}, nil
}

// Ready is closed once every enabled listener is bound.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Addrs returns the bound WebSocket and QUIC addresses (nil when disabled); valid after Ready.
func (h *Hub) Addrs() (ws, quic net.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wsAddr, h.quicAddr
}

// Session returns the live session of node, if any.
func (h *Hub) Session(node string) *Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[node]
}

// SessionCount is the number of connected nodes.
func (h *Hub) SessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Run listens and serves until ctx is done, then closes every session.
func (h *Hub) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	var wsLn net.Listener
	var quicLn *quic.Listener
	var quicTr *quic.Transport
	var err error
	if h.cfg.WebSocketAddr != "" {
		wsLn, err = net.Listen("tcp", h.cfg.WebSocketAddr)
		if err != nil {
			return fmt.Errorf("hub: websocket listen: %w", err)
		}
		h.mu.Lock()
		h.wsAddr = wsLn.Addr()
		h.mu.Unlock()
	}
	if h.cfg.QUICAddr != "" {
		tc := h.deps.TLS.Clone()
		tc.NextProtos = []string{transport.ALPN}
		// We own the UDP socket so that it is closed when Run returns;
		// quic-go keeps one it opened itself while connections drain.
		quicTr, quicLn, err = listenQUIC(h.cfg.QUICAddr, tc)
		if err != nil {
			if wsLn != nil {
				_ = wsLn.Close()
			}
			return err
		}
		h.mu.Lock()
		h.quicAddr = quicLn.Addr()
		h.mu.Unlock()
	}
	close(h.ready)
	var conns sync.WaitGroup // session goroutines
	if wsLn != nil {
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serveWebSocket(ctx, &conns, w, r) }),
			TLSConfig:         h.deps.TLS,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		}
		g.Go(func() error {
			err := srv.ServeTLS(wsLn, "", "")
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("hub: websocket server: %w", err)
		})
		g.Go(func() error {
			<-ctx.Done()
			return srv.Close() // hijacked connections are ours: closed below
		})
	}
	if quicLn != nil {
		g.Go(func() error {
			for {
				qc, err := quicLn.Accept(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("hub: quic accept: %w", err)
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					h.serveQUIC(ctx, qc)
				}()
			}
		})
		g.Go(func() error {
			<-ctx.Done()
			return quicLn.Close()
		})
	}
	err = g.Wait()
	h.mu.Lock()
	// http.Server.Close does not wait for handlers: one may still be between
	// Upgrade and conns.Add. After closing is set none adds, so conns.Wait
	// cannot miss a session (and Add never races Wait).
	h.closing = true
	for _, s := range h.sessions {
		s.Close("cloudhub shutting down")
	}
	h.mu.Unlock()
	conns.Wait()
	if quicTr != nil {
		_ = quicTr.Close()
		_ = quicTr.Conn.Close()
	}
	return err
}

func listenQUIC(addr string, tc *tls.Config) (*quic.Transport, *quic.Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("hub: quic address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, nil, fmt.Errorf("hub: quic listen: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tc, transport.QUICConfig())
	if err != nil {
		_ = udp.Close()
		return nil, nil, fmt.Errorf("hub: quic listen: %w", err)
	}
	return tr, ln, nil
}

func (h *Hub) serveWebSocket(ctx context.Context, conns *sync.WaitGroup, w http.ResponseWriter, r *http.Request) {
	// KubeEdge's path: /{projectID}/{nodeName}/events
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[2] != "events" {
		http.Error(w, fmt.Sprintf("unknown path %q: want /{projectID}/{nodeName}/events", r.URL.Path), http.StatusNotFound)
		return
	}
	node := parts[1]
	if hn := r.Header.Get(transport.HeaderNodeID); hn != "" && hn != node {
		h.refuse(w, r.RemoteAddr, node, fmt.Sprintf("header node_id %q differs from the node %q in the path", hn, node))
		return
	}
	if r.TLS == nil {
		h.refuse(w, r.RemoteAddr, node, "no TLS connection state")
		return
	}
	if err := h.checkIdentity(node, r.TLS.PeerCertificates); err != nil {
		h.refuse(w, r.RemoteAddr, node, err.Error())
		return
	}
	c, err := h.webSockets.Accept(w, r)
	if err != nil {
		h.log.Info("websocket upgrade failed", "node", node, "remote", r.RemoteAddr, "err", err)
		return
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = c.CloseWithReason("cloudhub shutting down")
		return
	}
	conns.Add(1)
	h.mu.Unlock()
	// The session gets its own goroutine and the handler returns: otherwise
	// net/http's per-connection state (buffers, and a stack grown by the TLS
	// handshake) stays reachable for the whole life of the session.
	go func() {
		defer conns.Done()
		h.serveSession(ctx, node, parts[0], c)
	}()
}

func (h *Hub) serveQUIC(ctx context.Context, qc *quic.Conn) {
	conn, hello, err := transport.AcceptQUICSession(ctx, qc, h.cfg.MaxFrameBytes)
	if err != nil {
		h.log.Info("quic session refused", "remote", qc.RemoteAddr(), "err", err)
		_ = qc.CloseWithError(2, err.Error())
		return
	}
	if err := h.checkIdentity(hello.NodeID, conn.PeerCertificates()); err != nil {
		h.log.Warn("session refused", "node", hello.NodeID, "remote", qc.RemoteAddr(), "err", err)
		_ = conn.CloseWithReason(err.Error())
		return
	}
	h.serveSession(ctx, hello.NodeID, hello.ProjectID, conn)
}

func (h *Hub) refuse(w http.ResponseWriter, remote, node, why string) {
	h.log.Warn("session refused", "node", node, "remote", remote, "err", why)
	http.Error(w, why, http.StatusForbidden)
}

// checkIdentity enforces that the session's node is the certificate's node.
func (h *Hub) checkIdentity(node string, certs []*x509.Certificate) error {
	if err := wire.ValidateNodeName(node); err != nil {
		return err
	}
	if len(certs) == 0 {
		return errors.New("no client certificate")
	}
	certNode, err := h.deps.NodeFromCert(certs[0])
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if certNode != node {
		return fmt.Errorf("client certificate is for node %q, but the session claims node %q", certNode, node)
	}
	return nil
}

func (h *Hub) serveSession(ctx context.Context, node, project string, conn transport.Conn) {
	s := h.startSession(ctx, node, project, conn)
	if s == nil {
		return
	}
	h.endSession(s, s.readLoop(ctx))
}

// startSession registers the session, replacing an older one of the same
// node; nil means this connection lost and was closed. It returns before
// the read loop starts so that its frame is not under the loop's for the
// whole session (see readLoop).
//
//go:noinline
func (h *Hub) startSession(ctx context.Context, node, project string, conn transport.Conn) *Session {
	s := &Session{Node: node, ProjectID: project, conn: conn, hub: h, done: make(chan struct{}),
		ConnectedAt: h.deps.Clock.Now()}
	h.mu.Lock()
	old := h.sessions[node]
	h.mu.Unlock()
	if old != nil {
		h.log.Info("replacing session", "node", node, "old", old.conn.RemoteAddr(), "new", conn.RemoteAddr())
		old.Close("replaced by a new connection of the same node")
		select {
		case <-old.done:
		case <-ctx.Done():
			_ = conn.CloseWithReason("cloudhub shutting down")
			return nil
		}
	}
	h.mu.Lock()
	if cur := h.sessions[node]; cur != nil && cur != old {
		// A third connection won the race; this one yields.
		h.mu.Unlock()
		_ = conn.CloseWithReason("superseded by a newer connection of the same node")
		return nil
	}
	h.sessions[node] = s
	h.mu.Unlock()
	h.log.Info("session started", "node", node, "transport", conn.Kind(), "remote", conn.RemoteAddr())
	h.deps.Handler.SessionStarted(s)
	return s
}

//go:noinline
func (h *Hub) endSession(s *Session, err error) {
	s.Close("")
	h.mu.Lock()
	if h.sessions[s.Node] == s {
		delete(h.sessions, s.Node)
	}
	h.mu.Unlock()
	h.deps.Handler.SessionEnded(s)
	close(s.done)
	h.log.Info("session ended", "node", s.Node, "transport", s.conn.Kind(), "reason", err)
}
