package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocketAcceptor upgrades the cloud's WebSocket requests into session
// Conns. It is safe for concurrent use.
type WebSocketAcceptor struct {
	upgrader websocket.Upgrader
	maxFrame int
	// writeBuffers hold a frame header and the start of its payload, so
	// that most frames leave in one TLS record and one write.
	writeBuffers sync.Pool
	gorillaPool  poolAdapter
}

// serverWriteBuffer is one TLS record's worth of plaintext.
const serverWriteBuffer = 16 << 10

// NewWebSocketAcceptor accepts sessions whose frames are at most maxFrame
// bytes (0: wire.DefaultMaxFrameBytes).
func NewWebSocketAcceptor(maxFrame int) *WebSocketAcceptor {
	a := &WebSocketAcceptor{maxFrame: maxFrame}
	a.writeBuffers.New = func() any { b := make([]byte, 0, serverWriteBuffer); return &b }
	a.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024, // used only when the session stays on gorilla's reader, see Accept
		WriteBufferPool:  &a.gorillaPool,
		CheckOrigin:      func(*http.Request) bool { return true }, // edges are not browsers; identity is the client certificate
	}
	return a
}

// FrameWaiter is implemented by Conns that can wait for a frame without
// reading it, so that a session's own goroutine stays shallow while idle.
type FrameWaiter interface {
	// WaitFrame blocks until the next frame has begun to arrive, the read
	// deadline passes (a timeout error), or the connection fails (ReadFrame
	// then reports it).
	WaitFrame() error
	// FrameBuffered reports, without blocking, whether ReadFrame has
	// something to read already.
	FrameBuffered() bool
}

var _ FrameWaiter = (*serverWebSocket)(nil)

// Accept completes the upgrade handshake. On a TLS connection the session
// then reads and writes frames itself (serverWebSocket); otherwise, or if
// the client sent frames before the handshake finished (they sit in a
// buffer gorilla owns), it stays on gorilla/websocket.
func (a *WebSocketAcceptor) Accept(w http.ResponseWriter, r *http.Request) (Conn, error) {
	c, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	tc, ok := c.NetConn().(*tls.Conn)
	if !ok {
		return NewWebSocketConn(c, a.maxFrame), nil
	}
	s := &serverWebSocket{tc: tc, maxFrame: a.maxFrame, writeBuffers: &a.writeBuffers}
	if sc, ok := tc.NetConn().(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil && canWaitReadable {
			s.raw = raw
		}
	}
	return s, nil
}

// serverWebSocket is the cloud's end of a session's WebSocket, framed here
// on the TLS connection instead of by gorilla/websocket. The reason is the
// memory of an idle session: a goroutine blocked in a read sits some twenty
// frames deep in the WebSocket reader and crypto/tls, where the runtime
// cannot shrink its stack below 16 KiB. This Conn can instead wait for the
// next frame at the socket, a few frames deep (WaitFrame), and leave the
// deep reading to whoever reads it; with 10,000 sessions the stacks were
// the largest single part of cloudcore's memory.
//
// Nothing may sit in a buffer above the socket while it waits: this Conn
// reads the TLS connection unbuffered, and before waiting asks TLS for
// bytes it has already decrypted or received, with a read deadline in the
// past (TLS keeps such timeouts non-fatal, net/http relies on the same).
type serverWebSocket struct {
	tc           *tls.Conn
	raw          syscall.RawConn // the socket under TLS; nil: no waiting, read directly
	maxFrame     int
	writeBuffers *sync.Pool

	// Used only by the one reader (ReadFrame, WaitFrame, FrameBuffered and
	// SetReadDeadline): the first bytes of the next frame, or the error,
	// that FrameBuffered came across.
	readDeadline time.Time
	pending      [2]byte
	pendingLen   int
	pendingErr   error

	writeMu       sync.Mutex // serialises frames: the session's and the reader's pong and close replies
	writeDeadline time.Time  // guarded by writeMu
	closeSent     bool       // guarded by writeMu
}

var pastDeadline = time.Unix(1, 0)

func (s *serverWebSocket) ReadFrame() ([]byte, error) {
	msg, err := readClientMessage(s.tc, s.readFrameStart, s.maxFrame, s)
	if errors.Is(err, ErrWebSocketProtocol) {
		s.closeWith(websocket.CloseProtocolError, err.Error())
	}
	return msg, err
}

// readFrameStart hands out what FrameBuffered found before reading on.
func (s *serverWebSocket) readFrameStart(b []byte) (int, error) {
	if err := s.pendingErr; err != nil {
		s.pendingErr = nil
		return 0, err
	}
	if s.pendingLen > 0 {
		n := copy(b, s.pending[:s.pendingLen])
		s.pendingLen = 0
		return n, nil
	}
	return s.tc.Read(b)
}

// FrameBuffered reports whether the next frame (or the connection's end)
// has arrived already, without blocking: TLS is asked for bytes it holds
// with a read deadline in the past. The bytes it returns are kept for
// ReadFrame.
func (s *serverWebSocket) FrameBuffered() bool {
	if s.pendingLen > 0 || s.pendingErr != nil {
		return true
	}
	if err := s.tc.SetReadDeadline(pastDeadline); err != nil {
		s.pendingErr = err
		return true
	}
	n, err := s.tc.Read(s.pending[:])
	if derr := s.tc.SetReadDeadline(s.readDeadline); derr != nil && err == nil {
		err = derr
	}
	s.pendingLen = n
	if n == 0 && err != nil && !isTimeout(err) {
		s.pendingErr = err
	}
	return n > 0 || s.pendingErr != nil
}

// WaitFrame blocks until the next frame has begun to arrive, the read
// deadline passes, or the connection fails, parked at the socket a few
// frames deep.
func (s *serverWebSocket) WaitFrame() error {
	if s.FrameBuffered() || s.raw == nil {
		return nil
	}
	return waitReadable(s.raw)
}

func isTimeout(err error) bool {
	te, ok := errors.AsType[timeoutError](err)
	return ok && te.Timeout()
}

type timeoutError interface {
	error
	Timeout() bool
}

func (s *serverWebSocket) WriteFrame(frame []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closeSent {
		return websocket.ErrCloseSent
	}
	if err := s.tc.SetWriteDeadline(s.writeDeadline); err != nil {
		return err
	}
	return s.writeFrameLocked(opText, frame)
}

func (s *serverWebSocket) writeFrameLocked(opcode byte, payload []byte) error {
	bp := s.writeBuffers.Get().(*[]byte)
	defer s.writeBuffers.Put(bp)
	buf := appendServerFrameHeader((*bp)[:0], opcode, len(payload))
	head := min(len(payload), cap(buf)-len(buf))
	buf = append(buf, payload[:head]...)
	if _, err := s.tc.Write(buf); err != nil {
		return err
	}
	if rest := payload[head:]; len(rest) > 0 {
		if _, err := s.tc.Write(rest); err != nil {
			return err
		}
	}
	return nil
}

// writeControl answers a ping or a close from the reader's goroutine.
func (s *serverWebSocket) writeControl(opcode byte, payload []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closeSent {
		return nil
	}
	if opcode == opClose {
		s.closeSent = true
	}
	_ = s.tc.SetWriteDeadline(time.Now().Add(time.Second))
	return s.writeFrameLocked(opcode, payload)
}

func (s *serverWebSocket) SetReadDeadline(t time.Time) error {
	s.readDeadline = t
	return s.tc.SetReadDeadline(t)
}

func (s *serverWebSocket) SetWriteDeadline(t time.Time) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.writeDeadline = t
	return nil
}

func (s *serverWebSocket) CloseWithReason(reason string) error {
	code, reason := closeCode(reason)
	s.closeWith(code, reason)
	return s.tc.Close()
}

// closeWith sends a close frame unless one was sent already.
func (s *serverWebSocket) closeWith(code int, reason string) {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	_ = s.writeControl(opClose, websocket.FormatCloseMessage(code, reason))
}

func (s *serverWebSocket) PeerCertificates() []*x509.Certificate {
	return s.tc.ConnectionState().PeerCertificates
}

func (s *serverWebSocket) RemoteAddr() string { return s.tc.RemoteAddr().String() }
func (s *serverWebSocket) Kind() string       { return KindWebSocket }
