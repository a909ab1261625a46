package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// ErrBusy is returned by HandleMessage when MaxConcurrent streams are being
// opened already.
var ErrBusy = errors.New("stream: too many streams being opened")

// Config says where the cloud's tunnel port is and how hard to try.
type Config struct {
	// Server is the cloud's tunnel address, host:port (KubeEdge
	// edgeStream.server, port 10004).
	Server string
	// MaxConcurrent bounds the tunnels being opened at once; requests
	// beyond it are refused until some are done.
	MaxConcurrent int
	// HandshakeTimeout bounds dial, TLS handshake, hello and reply.
	HandshakeTimeout time.Duration
	// NodeName names the node in its serving certificate request; with it,
	// Run keeps a kubelet serving certificate from the cloud (ServingCert).
	NodeName string
}

// Deps are EdgeStream's collaborators.
type Deps struct {
	// TLS returns the client configuration (node certificate, KubeEdge CA,
	// server name); it is called per tunnel so rotated certificates apply.
	TLS func() *tls.Config
	// Serve takes ownership of an accepted tunnel connection (the kubelet
	// server's ServeConn); on error the connection is closed.
	Serve func(net.Conn) error
	// Dial opens the TCP connection; default a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Clock  clock.Clock
	Logger *slog.Logger
}

// Stats are counters for metrics and tests.
type Stats struct {
	Opened, Failed, Refused int64
}

// Client is EdgeStream.
type Client struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	reqs chan wire.StreamRequest

	opened, failed, refused atomic.Int64
	serving                 atomic.Pointer[tls.Certificate]
}

// New validates cfg and deps.
func New(cfg Config, deps Deps) (*Client, error) {
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("stream: server %q is not host:port: %w", cfg.Server, err)
	}
	if deps.TLS == nil || deps.Serve == nil {
		return nil, errors.New("stream: TLS and Serve are required")
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 128
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
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
	return &Client{cfg: cfg, deps: deps, log: deps.Logger.With("component", "edgestream"),
		reqs: make(chan wire.StreamRequest, cfg.MaxConcurrent)}, nil
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Opened: c.opened.Load(), Failed: c.failed.Load(), Refused: c.refused.Load()}
}

// HandleMessage queues the stream a message asks for. It never blocks (it
// runs on EdgeHub's reader); a bad message or a full queue is an error for
// the caller to report.
func (c *Client) HandleMessage(m wire.Message) error {
	req, err := wire.ParseStreamRequest(m)
	if err != nil {
		return err
	}
	select {
	case c.reqs <- req:
		return nil
	default:
		c.refused.Add(1)
		return fmt.Errorf("%w (%d)", ErrBusy, c.cfg.MaxConcurrent)
	}
}

// Run opens the requested tunnels until ctx is done, at most MaxConcurrent
// at a time, and waits for the ones in progress.
func (c *Client) Run(ctx context.Context) error {
	sem := make(chan struct{}, c.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	if c.cfg.NodeName != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.keepServingCert(ctx)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-c.reqs:
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := c.open(ctx, req.ID); err != nil {
					c.failed.Add(1)
					if ctx.Err() == nil {
						c.log.Warn("cannot open stream tunnel", "stream", req.ID, "server", c.cfg.Server, "err", err)
					}
					return
				}
				c.opened.Add(1)
			}()
		}
	}
}

// dialTunnel opens a TLS connection to the tunnel port, with deadline set.
func (c *Client) dialTunnel(ctx context.Context) (net.Conn, *tls.Conn, error) {
	raw, err := c.deps.Dial(ctx, "tcp", c.cfg.Server)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)
	tc := tls.Client(raw, c.deps.TLS())
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return raw, tc, nil
}

// open dials the tunnel for stream id and hands it to Serve.
func (c *Client) open(ctx context.Context, id string) error {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	raw, tc, err := c.dialTunnel(dctx)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = raw.Close()
		}
	}()
	if err := tunnel.WriteHello(tc, id); err != nil {
		return err
	}
	if err := tunnel.ReadReply(tc); err != nil {
		return err
	}
	_ = raw.SetDeadline(time.Time{})
	ok = true
	if err := c.deps.Serve(tc); err != nil {
		_ = tc.Close()
		return fmt.Errorf("hand over to the kubelet server: %w", err)
	}
	c.log.Debug("stream tunnel open", "stream", id)
	return nil
}

// ServingCert is the kubelet serving certificate obtained from the cloud
// (serverAuth, the node's addresses as SANs), or nil before the first one.
func (c *Client) ServingCert() *tls.Certificate { return c.serving.Load() }

// keepServingCert obtains a serving certificate and renews it after two
// thirds of its life, retrying with back-off (the node may not have
// reported its addresses yet, or the cloud may be unreachable).
func (c *Client) keepServingCert(ctx context.Context) {
	delay := time.Second
	failures := 0
	for {
		wait := delay
		cert, err := c.requestServingCert(ctx)
		switch {
		case err == nil:
			c.serving.Store(cert)
			delay, failures = time.Second, 0
			wait = max(cert.Leaf.NotAfter.Sub(c.deps.Clock.Now())*2/3, time.Minute)
			c.log.Info("kubelet serving certificate obtained", "dns", cert.Leaf.DNSNames, "ips", cert.Leaf.IPAddresses, "notAfter", cert.Leaf.NotAfter)
		case ctx.Err() != nil:
			return
		default:
			failures++
			lvl := slog.LevelDebug
			if failures == 5 {
				lvl = slog.LevelWarn
			}
			c.log.Log(ctx, lvl, "no kubelet serving certificate yet; serving the node certificate", "err", err, "retry", delay)
			delay = min(2*delay, 2*time.Minute)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.deps.Clock.After(wait):
		}
	}
}

// requestServingCert asks the cloud, over a tunnel connection, to sign a
// fresh key.
func (c *Client) requestServingCert(ctx context.Context) (*tls.Certificate, error) {
	key, _, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewNodeCSR(key, c.cfg.NodeName)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	raw, tc, err := c.dialTunnel(dctx)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	if err := tunnel.WriteCertRequest(tc, csr); err != nil {
		return nil, err
	}
	der, err := tunnel.ReadCertReply(tc)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("serving certificate is not for the requested key")
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
