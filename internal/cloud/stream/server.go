package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Errors of Open, wrapped in sentences that name the node.
var (
	// ErrNodeNotConnected: the node has no CloudHub session.
	ErrNodeNotConnected = errors.New("stream: node not connected")
	// ErrClaimTimeout: the edge did not open the tunnel in time.
	ErrClaimTimeout = errors.New("stream: claim timeout")
	// ErrTooManyPending: too many streams of the node wait for their tunnel.
	ErrTooManyPending = errors.New("stream: too many pending streams")
	// ErrTunnelFailed: the tunnel connection broke before it was handed over.
	ErrTunnelFailed = errors.New("stream: tunnel failed")
	// ErrEdgeRefused: the edge answered the stream request with an error.
	ErrEdgeRefused = errors.New("stream: refused by the edge")
)

// Errors of a tunnel claim; the edge gets their text in the reply.
var (
	ErrUnknownStream = errors.New("stream: unknown or expired stream id")
	ErrWrongNode     = errors.New("stream: stream belongs to another node")
)

// Config says where CloudStream listens and how long it waits.
type Config struct {
	// TunnelAddr is where edges dial back (KubeEdge tunnelPort, :10004).
	TunnelAddr string
	// ProxyAddr is where the apiserver sends CONNECT (KubeEdge streamPort, :10003).
	ProxyAddr string
	// ClaimTimeout bounds the wait for an edge to open a requested tunnel.
	ClaimTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake plus hello or CONNECT request.
	HandshakeTimeout time.Duration
	// Passthrough dials targets that are not edge kubelets directly.
	Passthrough bool
	// DialTimeout bounds a passthrough dial.
	DialTimeout time.Duration
	// MaxPendingPerNode bounds the streams of one node waiting for their tunnel.
	MaxPendingPerNode int
	// SpliceGrace is how long a spliced pair may stay half-open.
	SpliceGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxPendingPerNode <= 0 {
		c.MaxPendingPerNode = 256
	}
	if c.SpliceGrace <= 0 {
		c.SpliceGrace = time.Minute
	}
	return c
}

// Deps are CloudStream's collaborators.
type Deps struct {
	// TunnelTLS and ProxyTLS serve the cloudcore certificate and require
	// client certificates verified against the KubeEdge CA.
	TunnelTLS *tls.Config
	ProxyTLS  *tls.Config
	// Router maps CONNECT targets to edge nodes (a NodeIndex).
	Router Router
	// Send delivers a message to a node over its CloudHub session; an error
	// (wrapping ErrNodeNotConnected when there is no session) means the
	// node cannot be asked.
	Send func(node string, m wire.Message) error
	// NodeFromCert names the node of a verified tunnel client certificate;
	// default pki.NodeNameFromCert.
	NodeFromCert func(*x509.Certificate) (string, error)
	// AuthorizeProxyClient accepts or refuses a verified proxy client
	// certificate; default pki.AuthorizeStreamClient.
	AuthorizeProxyClient func(*x509.Certificate) error
	// SignServing issues an edge's kubelet serving certificate for csr with
	// the given SANs (pki.CA.SignKubeletServingCSR); nil refuses such
	// requests. The SANs come from the Router when it is an Addresser.
	SignServing func(csr *x509.CertificateRequest, node string, dnsNames []string, ips []net.IP) ([]byte, error)
	// Dial opens passthrough connections; default a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Clock  clock.Clock
	Logger *slog.Logger
}

// Stats are counters for metrics and tests.
type Stats struct {
	Streams       int64 // tunnels spliced so far
	Active        int64 // spliced pairs (tunnel and passthrough) open now
	Passthrough   int64 // passthrough connections so far
	ProxyRefused  int64 // CONNECT requests refused
	TunnelRefused int64 // tunnel connections refused
	Pending       int   // streams waiting for their tunnel now
	ServingCerts  int64 // kubelet serving certificates issued
}

// Server is CloudStream.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu       sync.Mutex
	pending  map[string]*pending // guarded by mu; by stream id
	perNode  map[string]int      // guarded by mu; pending streams per node
	conns    map[net.Conn]struct{}
	closing  bool     // guarded by mu; set when Run stops accepting
	tunAddr  net.Addr // guarded by mu
	prxAddr  net.Addr // guarded by mu
	ready    chan struct{}
	handlers sync.WaitGroup // connection goroutines

	streams, active, passthrough, proxyRefused, tunnelRefused, servingCerts atomic.Int64
}

// pending is a stream waiting for its tunnel connection.
type pending struct {
	node  string
	msgID string       // of the stream request, which an edge's error reply names
	ch    chan claimed // buffered 1; written once by whoever removed it from the map
}

type claimed struct {
	conn net.Conn
	err  error
}

// New validates cfg and deps.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.TunnelAddr == "" || cfg.ProxyAddr == "" {
		return nil, errors.New("stream: TunnelAddr and ProxyAddr are required")
	}
	if deps.TunnelTLS == nil || deps.ProxyTLS == nil || deps.Router == nil || deps.Send == nil {
		return nil, errors.New("stream: TunnelTLS, ProxyTLS, Router and Send are required")
	}
	for name, c := range map[string]*tls.Config{"TunnelTLS": deps.TunnelTLS, "ProxyTLS": deps.ProxyTLS} {
		if c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil {
			return nil, fmt.Errorf("stream: %s must require and verify client certificates against the KubeEdge CA", name)
		}
	}
	if deps.NodeFromCert == nil {
		deps.NodeFromCert = pki.NodeNameFromCert
	}
	if deps.AuthorizeProxyClient == nil {
		deps.AuthorizeProxyClient = pki.AuthorizeStreamClient
	}
	if deps.Dial == nil {
		deps.Dial = (&net.Dialer{}).DialContext
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Server{cfg: cfg.withDefaults(), deps: deps, log: deps.Logger.With("component", "cloudstream"),
		pending: map[string]*pending{}, perNode: map[string]int{}, conns: map[net.Conn]struct{}{},
		ready: make(chan struct{})}, nil
}

// Ready is closed once both listeners are bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound tunnel and proxy addresses; valid after Ready.
func (s *Server) Addrs() (tunnelAddr, proxyAddr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tunAddr, s.prxAddr
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	return Stats{Streams: s.streams.Load(), Active: s.active.Load(), Passthrough: s.passthrough.Load(),
		ProxyRefused: s.proxyRefused.Load(), TunnelRefused: s.tunnelRefused.Load(), Pending: n,
		ServingCerts: s.servingCerts.Load()}
}

// Run listens until ctx is done, then closes every connection it holds and
// waits for its goroutines.
func (s *Server) Run(ctx context.Context) error {
	tl, err := net.Listen("tcp", s.cfg.TunnelAddr)
	if err != nil {
		return fmt.Errorf("stream: tunnel listen: %w", err)
	}
	pl, err := net.Listen("tcp", s.cfg.ProxyAddr)
	if err != nil {
		_ = tl.Close()
		return fmt.Errorf("stream: proxy listen: %w", err)
	}
	s.mu.Lock()
	s.tunAddr, s.prxAddr = tl.Addr(), pl.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("cloudstream listening", "tunnel", tl.Addr(), "proxy", pl.Addr(), "passthrough", s.cfg.Passthrough)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.accept(gctx, tl, s.serveTunnel) })
	g.Go(func() error { return s.accept(gctx, pl, s.serveProxy) })
	g.Go(func() error {
		<-gctx.Done()
		_ = tl.Close()
		_ = pl.Close()
		return nil
	})
	err = g.Wait()
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		_ = c.Close()
	}
	for id, p := range s.pending {
		delete(s.pending, id)
		p.ch <- claimed{err: errors.New("cloudstream shutting down")}
	}
	s.mu.Unlock()
	s.handlers.Wait()
	return err
}

func (s *Server) accept(ctx context.Context, ln net.Listener, serve func(context.Context, net.Conn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("stream: accept on %s: %w", ln.Addr(), err)
		}
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			serve(ctx, c)
		}()
	}
}

// track registers c so that Run closes it on shutdown; false once closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// release closes c and forgets it.
func (s *Server) release(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serveTunnel takes one connection an edge dialled back: TLS with its node
// certificate, then a hello naming a pending stream of that node.
func (s *Server) serveTunnel(ctx context.Context, raw net.Conn) {
	handed := false
	defer func() {
		if !handed {
			s.release(raw)
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(raw, s.deps.TunnelTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		s.tunnelRefused.Add(1)
		s.log.Debug("tunnel handshake failed", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	refuse := func(err error, attrs ...any) {
		s.tunnelRefused.Add(1)
		s.log.Warn("tunnel refused", append([]any{"remote", raw.RemoteAddr(), "err", err}, attrs...)...)
		_ = tunnel.WriteReply(tc, err)
	}
	node, err := s.deps.NodeFromCert(tc.ConnectionState().PeerCertificates[0])
	if err != nil {
		refuse(fmt.Errorf("client certificate: %w", err))
		return
	}
	h, err := tunnel.ReadHello(tc)
	if err != nil {
		refuse(err, "node", node)
		return
	}
	if h.CSR != nil {
		der, err := s.signServing(node, h.CSR)
		if err != nil {
			refuse(err, "node", node)
			return
		}
		if err := tunnel.WriteCertReply(tc, der, nil); err == nil {
			s.servingCerts.Add(1)
			s.log.Info("kubelet serving certificate issued", "node", node)
		}
		return
	}
	id := h.StreamID
	p, err := s.claim(id, node)
	if err != nil {
		refuse(err, "node", node, "stream", id)
		return
	}
	if err := tunnel.WriteReply(tc, nil); err != nil {
		p.ch <- claimed{err: fmt.Errorf("tunnel connection failed: %v (%w)", err, ErrTunnelFailed)}
		return
	}
	_ = raw.SetDeadline(time.Time{})
	handed = true // the proxy side owns raw from here; it is still tracked
	p.ch <- claimed{conn: &trackedConn{Conn: tc, raw: raw}}
}

// signServing issues node's kubelet serving certificate for the request,
// naming the addresses the node reports that route to it alone.
func (s *Server) signServing(node string, csrDER []byte) ([]byte, error) {
	if s.deps.SignServing == nil {
		return nil, errors.New("this cloudcore does not issue kubelet serving certificates")
	}
	ad, ok := s.deps.Router.(Addresser)
	if !ok {
		return nil, errors.New("this cloudcore does not know node addresses")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	dns, ips, err := ad.NodeAddresses(node)
	if err != nil {
		return nil, err
	}
	return s.deps.SignServing(csr, node, dns, ips)
}

// trackedConn is a TLS connection whose raw connection is in Server.conns.
type trackedConn struct {
	net.Conn
	raw net.Conn
}

// claim hands pending stream id to node. A wrong node's attempt leaves the
// stream waiting for the right one.
func (s *Server) claim(id, node string) (*pending, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[id]
	if p == nil {
		return nil, fmt.Errorf("%w %s", ErrUnknownStream, id)
	}
	if p.node != node {
		return nil, fmt.Errorf("%w: stream %s is not for node %q", ErrWrongNode, id, node)
	}
	s.removeLocked(id, p)
	return p, nil
}

func (s *Server) removeLocked(id string, p *pending) {
	delete(s.pending, id)
	if s.perNode[p.node]--; s.perNode[p.node] <= 0 {
		delete(s.perNode, p.node)
	}
}

// Open asks node to open a tunnel and returns the tunnel connection once the
// edge has dialled back, or an error wrapping ErrNodeNotConnected,
// ErrClaimTimeout, ErrTooManyPending or ErrTunnelFailed. The caller owns and
// must close the connection.
func (s *Server) Open(ctx context.Context, node string) (net.Conn, error) {
	id := wire.NewStreamID()
	msg, err := wire.NewStreamRequest(s.deps.Clock.Now(), wire.StreamRequest{ID: id, Service: wire.StreamServiceKubelet})
	if err != nil {
		return nil, err
	}
	p := &pending{node: node, msgID: msg.Header.ID, ch: make(chan claimed, 1)}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errors.New("stream: cloudstream shutting down")
	}
	if s.perNode[node] >= s.cfg.MaxPendingPerNode {
		s.mu.Unlock()
		return nil, fmt.Errorf("edge node %q has %d streams waiting for their tunnel; try again later (%w)", node, s.cfg.MaxPendingPerNode, ErrTooManyPending)
	}
	s.pending[id] = p
	s.perNode[node]++
	s.mu.Unlock()

	if err := s.deps.Send(node, msg); err != nil {
		s.abandon(id, p)
		if errors.Is(err, ErrNodeNotConnected) {
			return nil, fmt.Errorf("edge node %q is not connected to cloudcore (%w)", node, ErrNodeNotConnected)
		}
		return nil, fmt.Errorf("edge node %q: cannot send the stream request: %v (%w)", node, err, ErrNodeNotConnected)
	}
	timer := s.deps.Clock.NewTimer(s.cfg.ClaimTimeout)
	defer timer.Stop()
	var why error
	select {
	case c := <-p.ch:
		return c.result(node)
	case <-timer.C():
		why = fmt.Errorf("edge node %q did not open the stream tunnel within %s (%w)", node, s.cfg.ClaimTimeout, ErrClaimTimeout)
	case <-ctx.Done():
		why = ctx.Err()
	}
	if !s.abandon(id, p) {
		// Claimed meanwhile: the result is (about to be) in the channel.
		return (<-p.ch).result(node)
	}
	return nil, why
}

func (c claimed) result(node string) (net.Conn, error) {
	if c.err != nil {
		return nil, fmt.Errorf("edge node %q: %w", node, c.err)
	}
	return c.conn, nil
}

// EdgeRefused fails at once the pending stream whose request (message
// parentID) node answered with an error, instead of letting it time out. It
// reports whether parentID was such a request.
func (s *Server) EdgeRefused(node, parentID, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, p := range s.pending {
		if p.msgID != parentID || p.node != node {
			continue
		}
		s.removeLocked(id, p)
		p.ch <- claimed{err: fmt.Errorf("the edge refused the stream: %s (%w)", reason, ErrEdgeRefused)}
		return true
	}
	return false
}

// abandon removes a pending stream unless it was claimed; it reports whether
// it removed it.
func (s *Server) abandon(id string, p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] != p {
		return false
	}
	s.removeLocked(id, p)
	return true
}

// serveProxy takes one connection to the proxy port: TLS with a stream
// client certificate, then CONNECT host:port.
func (s *Server) serveProxy(ctx context.Context, raw net.Conn) {
	spliced := false
	defer func() {
		if !spliced {
			s.release(raw)
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(raw, s.deps.ProxyTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		s.proxyRefused.Add(1)
		s.log.Debug("proxy handshake failed", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	cert := tc.ConnectionState().PeerCertificates[0]
	target, early, err := tunnel.ReadConnect(tc)
	if err != nil {
		s.refuseProxy(tc, http.StatusBadRequest, err.Error(), "client", cert.Subject.CommonName)
		return
	}
	if err := s.deps.AuthorizeProxyClient(cert); err != nil {
		s.refuseProxy(tc, http.StatusForbidden, err.Error(), "target", target)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	route, err := s.deps.Router.Lookup(target)
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case errors.Is(err, ErrNotSynced):
			code = http.StatusServiceUnavailable
		case errors.Is(err, ErrNotKubeletPort):
			code = http.StatusForbidden
		}
		s.refuseProxy(tc, code, err.Error(), "target", target)
		return
	}
	var up net.Conn
	if route.Node != "" {
		up, err = s.Open(ctx, route.Node)
		if err != nil {
			code := http.StatusBadGateway
			switch {
			case errors.Is(err, ErrNodeNotConnected), errors.Is(err, ErrTooManyPending):
				code = http.StatusServiceUnavailable
			case errors.Is(err, ErrClaimTimeout):
				code = http.StatusGatewayTimeout
			}
			s.refuseProxy(tc, code, err.Error(), "target", target, "node", route.Node)
			return
		}
		s.streams.Add(1)
	} else {
		if !s.cfg.Passthrough {
			s.refuseProxy(tc, http.StatusForbidden,
				fmt.Sprintf("%s is not the kubelet of an edge node and cloudstream passthrough is disabled", target), "target", target)
			return
		}
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		up, err = s.deps.Dial(dctx, "tcp", target.String())
		cancel()
		if err != nil {
			s.refuseProxy(tc, http.StatusBadGateway, fmt.Sprintf("cloudstream passthrough to %s: %v", target, err), "target", target)
			return
		}
		if !s.track(up) {
			_ = up.Close()
			return
		}
		s.passthrough.Add(1)
	}
	if err := tunnel.WriteConnectOK(tc); err != nil {
		s.releaseUp(up)
		return
	}
	if len(early) > 0 {
		if _, err := up.Write(early); err != nil {
			s.releaseUp(up)
			return
		}
	}
	s.log.Debug("stream open", "target", target, "node", route.Node, "client", cert.Subject.CommonName)
	// Splice on a fresh goroutine and let this one, whose stack the TLS
	// handshake grew, end: an idle stream then costs little.
	spliced = true
	s.active.Add(1)
	s.handlers.Add(1) // this goroutine is counted, so Run cannot be past Wait
	go func() {
		defer s.handlers.Done()
		tunnel.Splice(tc, up, s.cfg.SpliceGrace)
		s.releaseUp(up)
		s.release(raw)
		s.active.Add(-1)
	}()
}

func (s *Server) releaseUp(up net.Conn) {
	if t, ok := up.(*trackedConn); ok {
		_ = t.Close()
		s.release(t.raw)
		return
	}
	s.release(up)
}

func (s *Server) refuseProxy(tc *tls.Conn, code int, reason string, attrs ...any) {
	s.proxyRefused.Add(1)
	s.log.Warn("CONNECT refused", append([]any{"remote", tc.RemoteAddr(), "code", code, "err", reason}, attrs...)...)
	_ = tc.SetWriteDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	_ = tunnel.WriteConnectError(tc, code, reason)
}
