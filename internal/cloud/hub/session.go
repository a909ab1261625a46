package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// ErrSessionClosed is returned by Send on a closed session.
var ErrSessionClosed = errors.New("hub: session closed")

// Session is one connected edge node.
type Session struct {
	Node        string
	ProjectID   string
	ConnectedAt time.Time

	hub  *Hub
	conn transport.Conn
	done chan struct{} // closed after SessionEnded returned

	writeMu sync.Mutex // serialises writes on conn
	closed  atomic.Bool

	// Counters, for metrics and tests.
	SentMessages     atomic.Int64
	ReceivedMessages atomic.Int64
	SentBytes        atomic.Int64
	ReceivedBytes    atomic.Int64
}

// Transport names the session's transport ("websocket" or "quic").
func (s *Session) Transport() string { return s.conn.Kind() }

// Done is closed once the session has ended and the handler was told.
func (s *Session) Done() <-chan struct{} { return s.done }

// Send writes m to the edge. It is safe for concurrent use; a write that
// cannot finish within the write timeout closes the session.
func (s *Session) Send(m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return s.SendFrame(b)
}

// SendFrame writes an encoded frame.
func (s *Session) SendFrame(b []byte) error {
	if s.closed.Load() {
		return ErrSessionClosed
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	if err := s.conn.WriteFrame(b); err != nil {
		s.closeLocked("write failed: " + err.Error())
		return fmt.Errorf("hub: send to %s: %w", s.Node, err)
	}
	s.SentMessages.Add(1)
	s.SentBytes.Add(int64(len(b)))
	return nil
}

// Close ends the session, telling the edge why when reason is not empty.
func (s *Session) Close(reason string) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.closeLocked(reason)
}

func (s *Session) closeLocked(reason string) {
	if s.closed.Swap(true) {
		return
	}
	_ = s.conn.CloseWithReason(reason)
}

// readLoop reads frames until the connection fails, the peer stays silent
// past the keepalive timeout, or ctx ends.
//
// An idle session spends its life blocked in here. Where the Conn can wait
// for a frame without reading it, the session's goroutine only waits, and
// each batch of frames is read and handled on a goroutine of its own that
// ends with it: reading through TLS and decoding JSON need 8–16 KiB of
// stack, which would otherwise stay with every idle session (the runtime
// shrinks a parked goroutine's stack only by half per GC cycle, and only
// while less than a quarter of it is in use).
func (s *Session) readLoop(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close("cloudhub shutting down") })
	defer stop()
	waiter, _ := s.conn.(transport.FrameWaiter)
	bad := 0
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.hub.cfg.KeepaliveTimeout))
		var err error
		if waiter != nil {
			if err = waiter.WaitFrame(); err != nil {
				return s.readFailed(err)
			}
			bad, err = s.serveArrived(ctx, waiter, bad)
		} else {
			bad, err = s.serveNext(ctx, bad)
		}
		if err != nil {
			return err
		}
	}
}

// serveArrived reads and handles, on a short-lived goroutine, the frames
// that have arrived; the caller waits for it, so frames are still handled
// one at a time and in order.
//
//go:noinline
func (s *Session) serveArrived(ctx context.Context, waiter transport.FrameWaiter, bad int) (int, error) {
	type outcome struct {
		bad int
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		b, err := bad, error(nil)
		for err == nil {
			if b, err = s.serveNext(ctx, b); err == nil && !waiter.FrameBuffered() {
				break
			}
		}
		done <- outcome{b, err}
	}()
	o := <-done
	return o.bad, o.err
}

// serveNext reads one frame and handles it.
//
//go:noinline
func (s *Session) serveNext(ctx context.Context, bad int) (int, error) {
	frame, err := s.conn.ReadFrame()
	if err != nil {
		return bad, s.readFailed(err)
	}
	return s.handleFrame(ctx, frame, bad)
}

// readFailed says why the read loop ends.
//
//go:noinline
func (s *Session) readFailed(err error) error {
	h := s.hub
	if errors.Is(err, wire.ErrFrameTooLarge) {
		s.Close(fmt.Sprintf("frame larger than %d bytes", h.cfg.MaxFrameBytes))
		h.log.Warn("closing session: oversize frame", "node", s.Node, "err", err)
	}
	if ne, ok := errors.AsType[timeoutError](err); ok && ne.Timeout() {
		return fmt.Errorf("no message for %s (keepalive timeout)", h.cfg.KeepaliveTimeout)
	}
	return err
}

// handleFrame decodes and dispatches one frame; bad counts the bad frames
// in a row before it. A non-nil error ends the session.
//
//go:noinline
func (s *Session) handleFrame(ctx context.Context, frame []byte, bad int) (int, error) {
	h := s.hub
	s.ReceivedMessages.Add(1)
	s.ReceivedBytes.Add(int64(len(frame)))
	m, err := wire.Decode(frame, h.cfg.MaxFrameBytes)
	if err != nil {
		bad++
		h.log.Warn("bad message from edge", "node", s.Node, "err", err)
		_ = s.Send(wire.NewError(h.deps.Clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
		if bad >= h.cfg.MaxBadFrames {
			s.Close(fmt.Sprintf("%d consecutive bad messages", bad))
			return bad, fmt.Errorf("%d consecutive bad messages, last: %w", bad, err)
		}
		return bad, nil
	}
	switch m.Operation {
	case wire.OpKeepalive:
		h.deps.Handler.Keepalive(s)
		if txt, _ := m.ContentString(); txt == "ping" {
			if pong, err := wire.New(h.deps.Clock.Now(), wire.SourceCloudHub, wire.GroupHub, wire.OpKeepalive, wire.Resource{}, "pong"); err == nil {
				_ = s.Send(pong)
			}
		}
	case wire.OpResponse:
		h.deps.Handler.Acked(s, m.Header.ParentID)
	default:
		h.deps.Handler.HandleMessage(ctx, s, m)
	}
	return 0, nil
}

type timeoutError interface {
	error
	Timeout() bool
}
