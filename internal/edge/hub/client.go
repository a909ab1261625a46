package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// ErrNotConnected is returned by Send while there is no session.
var ErrNotConnected = errors.New("hub: not connected to the cloud")

// Config says how to reach the cloud.
type Config struct {
	Transport        string // transport.KindWebSocket or transport.KindQUIC
	Server           string // host:port
	ProjectID        string
	NodeName         string
	Heartbeat        time.Duration
	MaxFrameBytes    int
	ReconnectInitial time.Duration
	ReconnectMax     time.Duration
	MessageQPS       float64
	MessageBurst     int
	// SendQueue is the number of outgoing frames buffered per session.
	SendQueue int
}

// Handler receives what the session brings. Connected runs in its own
// goroutine per session; HandleMessage is called from the reader, in order.
type Handler interface {
	Connected(ctx context.Context)
	Disconnected()
	HandleMessage(ctx context.Context, m wire.Message)
}

// Deps are EdgeHub's collaborators.
type Deps struct {
	// TLS returns the client configuration; it is called per dial so that
	// rotated certificates are used.
	TLS     func() *tls.Config
	Handler Handler
	Clock   clock.WithTicker
	Logger  *slog.Logger
	// Jitter returns a number in [0,1); nil means math/rand.
	Jitter func() float64
}

// Client is EdgeHub.
type Client struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	limiter *rate.Limiter

	mu  sync.Mutex
	cur *conn // guarded by mu; nil while disconnected

	connects  atomic.Int64
	connected chan struct{} // replaced per session; closed when a session starts (guarded by mu)
}

type conn struct {
	t    transport.Conn
	out  chan []byte
	done chan struct{}
}

// New validates cfg and builds a Client.
func New(cfg Config, deps Deps) (*Client, error) {
	if cfg.Server == "" || cfg.NodeName == "" {
		return nil, errors.New("hub: Server and NodeName are required")
	}
	if cfg.Transport != transport.KindWebSocket && cfg.Transport != transport.KindQUIC {
		return nil, fmt.Errorf("hub: unknown transport %q", cfg.Transport)
	}
	if deps.TLS == nil || deps.Handler == nil || deps.Clock == nil {
		return nil, errors.New("hub: TLS, Handler and Clock are required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = wire.DefaultMaxFrameBytes
	}
	if cfg.ReconnectInitial <= 0 {
		cfg.ReconnectInitial = 250 * time.Millisecond
	}
	if cfg.ReconnectMax < cfg.ReconnectInitial {
		// Never below the first delay, or backoff would exceed its own cap.
		cfg.ReconnectMax = max(30*time.Second, cfg.ReconnectInitial)
	}
	if cfg.MessageQPS <= 0 {
		cfg.MessageQPS = 30
	}
	if cfg.MessageBurst <= 0 {
		cfg.MessageBurst = 60
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 256
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Jitter == nil {
		deps.Jitter = rand.Float64
	}
	return &Client{cfg: cfg, deps: deps, log: deps.Logger.With("component", "edgehub"),
		limiter: rate.NewLimiter(rate.Limit(cfg.MessageQPS), cfg.MessageBurst), connected: make(chan struct{})}, nil
}

// Connects is the number of sessions established so far.
func (c *Client) Connects() int64 { return c.connects.Load() }

// IsConnected reports whether a session is up.
func (c *Client) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// WaitConnected blocks until a session is up or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	if c.cur != nil {
		c.mu.Unlock()
		return nil
	}
	ch := c.connected
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send uploads m, waiting for the uplink rate limiter.
func (c *Client) Send(ctx context.Context, m wire.Message) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("hub: rate limit: %w", err)
	}
	return c.SendNow(ctx, m)
}

// SendDeferrable uploads m like Send, but takes a token only when the rate
// limiter's bucket is full, that is when no other message has wanted one
// for a while. Events go this way: in a burst of pod starts (four events a
// pod) they would otherwise use up the tokens that the pods' statuses and
// token requests need and delay those by a second or more, for no gain. The
// limit itself stays what messageQPS says, as in KubeEdge.
func (c *Client) SendDeferrable(ctx context.Context, m wire.Message) error {
	reserve := max(float64(c.cfg.MessageBurst)-1, 0)
	for {
		wait := deferWait(c.limiter.Tokens(), reserve, float64(c.limiter.Limit()))
		if wait == 0 && c.limiter.Allow() {
			return c.SendNow(ctx, m)
		}
		wait = max(wait, time.Millisecond) // Allow lost a race: look again shortly
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("hub: rate limit: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// deferWait is how long a deferrable message waits before the bucket,
// refilling at perSecond, holds a token beyond the reserve.
func deferWait(tokens, reserve, perSecond float64) time.Duration {
	short := reserve + 1 - tokens
	if short <= 0 {
		return 0
	}
	if perSecond <= 0 {
		return time.Second
	}
	return time.Duration(short / perSecond * float64(time.Second))
}

// SendNow sends m without rate limiting (acks, keepalives).
func (c *Client) SendNow(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur == nil {
		return ErrNotConnected
	}
	select {
	case cur.out <- b:
		return nil
	case <-cur.done:
		return ErrNotConnected
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run keeps a session to the cloud until ctx is done.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		t, err := c.dial(ctx)
		if err == nil {
			attempt = 0
			started := c.deps.Clock.Now()
			err = c.serve(ctx, t)
			c.log.Warn("disconnected from cloud", "err", err, "after", c.deps.Clock.Since(started).Round(time.Millisecond))
		} else if ctx.Err() == nil {
			c.log.Warn("cannot connect to cloud", "server", c.cfg.Server, "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := c.backoff(attempt)
		attempt++
		select {
		case <-ctx.Done():
			return nil
		case <-c.deps.Clock.After(wait):
		}
	}
}

// backoff is "equal jitter": half the exponential delay, plus a random part
// of the other half, capped.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.ReconnectInitial
	for range attempt {
		d *= 2
		if d >= c.cfg.ReconnectMax {
			d = c.cfg.ReconnectMax
			break
		}
	}
	return d/2 + time.Duration(c.deps.Jitter()*float64(d/2))
}

func (c *Client) dial(ctx context.Context) (transport.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tc := c.deps.TLS()
	if c.cfg.Transport == transport.KindQUIC {
		return transport.DialQUIC(ctx, c.cfg.Server, transport.Hello{NodeID: c.cfg.NodeName, ProjectID: c.cfg.ProjectID}, tc, c.cfg.MaxFrameBytes)
	}
	return transport.DialWebSocket(ctx, c.cfg.Server, c.cfg.ProjectID, c.cfg.NodeName, tc, c.cfg.MaxFrameBytes)
}

// serve runs one session: a reader (this goroutine) and a writer that also
// sends keepalives. It returns when either fails or ctx ends.
func (c *Client) serve(ctx context.Context, t transport.Conn) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cn := &conn{t: t, out: make(chan []byte, c.cfg.SendQueue), done: make(chan struct{})}
	c.mu.Lock()
	c.cur = cn
	close(c.connected)
	c.mu.Unlock()
	c.connects.Add(1)
	c.log.Info("connected to cloud", "server", c.cfg.Server, "transport", t.Kind())

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cancel(c.writeLoop(ctx, cn))
	}()
	go func() {
		defer wg.Done()
		c.deps.Handler.Connected(ctx)
	}()
	stop := context.AfterFunc(ctx, func() { _ = t.CloseWithReason("") })
	err := c.readLoop(ctx, t)
	cancel(err)
	stop()
	_ = t.CloseWithReason("")
	c.mu.Lock()
	c.cur = nil
	c.connected = make(chan struct{})
	c.mu.Unlock()
	close(cn.done)
	wg.Wait()
	c.deps.Handler.Disconnected()
	return context.Cause(ctx)
}

func (c *Client) readLoop(ctx context.Context, t transport.Conn) error {
	// The cloud answers every keepalive, so silence for three periods means
	// the session is dead even if TCP has not noticed.
	timeout := 3 * c.cfg.Heartbeat
	for {
		_ = t.SetReadDeadline(time.Now().Add(timeout))
		frame, err := t.ReadFrame()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		m, err := wire.Decode(frame, c.cfg.MaxFrameBytes)
		if err != nil {
			c.log.Warn("bad message from cloud", "err", err)
			if m.Header.ID != "" {
				_ = c.SendNow(ctx, wire.NewError(c.deps.Clock.Now(), wire.SourceEdgeHub, m.Header.ID, err.Error()))
			}
			continue
		}
		switch m.Operation {
		case wire.OpKeepalive:
		case wire.OpError:
			txt, _ := m.ContentString()
			c.log.Warn("cloud reported an error", "parent", m.Header.ParentID, "error", txt)
			if m.Header.ParentID != "" {
				c.deps.Handler.HandleMessage(ctx, m) // it answers something the edge sent
			}
		default:
			c.deps.Handler.HandleMessage(ctx, m)
		}
	}
}

func (c *Client) writeLoop(ctx context.Context, cn *conn) error {
	tick := c.deps.Clock.NewTicker(c.cfg.Heartbeat)
	defer tick.Stop()
	keepalive := func() error {
		m, _ := wire.New(c.deps.Clock.Now(), wire.SourceEdgeHub, wire.GroupHub, wire.OpKeepalive, wire.Resource{}, "ping")
		b, err := wire.Encode(m)
		if err != nil {
			return err
		}
		return c.write(cn.t, b)
	}
	// A keepalive first: it renews the node's lease at once after a reconnect.
	if err := keepalive(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C():
			if err := keepalive(); err != nil {
				return err
			}
		case b := <-cn.out:
			if err := c.write(cn.t, b); err != nil {
				return err
			}
		}
	}
}

func (c *Client) write(t transport.Conn, b []byte) error {
	_ = t.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := t.WriteFrame(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
