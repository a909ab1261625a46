package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

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

// open dials the tunnel for stream id and hands it to Serve.
func (c *Client) open(ctx context.Context, id string) error {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	raw, err := c.deps.Dial(dctx, "tcp", c.cfg.Server)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = raw.Close()
		}
	}()
	deadline, _ := dctx.Deadline()
	_ = raw.SetDeadline(deadline)
	tc := tls.Client(raw, c.deps.TLS())
	if err := tc.HandshakeContext(dctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
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
