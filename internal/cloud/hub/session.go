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
func (s *Session) readLoop(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close("cloudhub shutting down") })
	defer stop()
	h := s.hub
	bad := 0
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(h.cfg.KeepaliveTimeout))
		frame, err := s.conn.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				s.Close(fmt.Sprintf("frame larger than %d bytes", h.cfg.MaxFrameBytes))
				h.log.Warn("closing session: oversize frame", "node", s.Node, "err", err)
			}
			if ne, ok := errors.AsType[timeoutError](err); ok && ne.Timeout() {
				return fmt.Errorf("no message for %s (keepalive timeout)", h.cfg.KeepaliveTimeout)
			}
			return err
		}
		s.ReceivedMessages.Add(1)
		s.ReceivedBytes.Add(int64(len(frame)))
		m, err := wire.Decode(frame, h.cfg.MaxFrameBytes)
		if err != nil {
			bad++
			h.log.Warn("bad message from edge", "node", s.Node, "err", err)
			_ = s.Send(wire.NewError(h.deps.Clock.Now(), wire.SourceCloudHub, m.Header.ID, err.Error()))
			if bad >= h.cfg.MaxBadFrames {
				s.Close(fmt.Sprintf("%d consecutive bad messages", bad))
				return fmt.Errorf("%d consecutive bad messages, last: %w", bad, err)
			}
			continue
		}
		bad = 0
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
	}
}

type timeoutError interface {
	error
	Timeout() bool
}
