package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Kinds of transport, as named in configuration.
const (
	KindWebSocket = "websocket"
	KindQUIC      = "quic"
)

// ALPN is the application protocol negotiated on QUIC connections.
const ALPN = "kubeedge-go-hub"

// Header names KubeEdge's edge sets on the WebSocket upgrade request.
const (
	HeaderNodeID    = "node_id"
	HeaderProjectID = "project_id"
)

// Conn is one cloud–edge connection carrying wire frames.
type Conn interface {
	// ReadFrame blocks for the next frame; it fails with wire.ErrFrameTooLarge
	// (wrapped) when the peer sends more than the limit.
	ReadFrame() ([]byte, error)
	WriteFrame(frame []byte) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// CloseWithReason tells the peer why, where the transport can, and closes.
	CloseWithReason(reason string) error
	PeerCertificates() []*x509.Certificate
	RemoteAddr() string
	Kind() string
}

// Hello is the first frame of a QUIC session, standing in for the WebSocket
// URL and headers.
type Hello struct {
	NodeID    string `json:"node_id"`
	ProjectID string `json:"project_id"`
}

// ---- WebSocket ----

type wsConn struct {
	c *websocket.Conn
}

// NewWebSocketConn wraps an established WebSocket whose read limit is maxFrame bytes.
func NewWebSocketConn(c *websocket.Conn, maxFrame int) Conn {
	c.SetReadLimit(int64(maxFrame))
	return &wsConn{c: c}
}

func (w *wsConn) ReadFrame() ([]byte, error) {
	typ, b, err := w.c.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			return nil, fmt.Errorf("%w: %v", wire.ErrFrameTooLarge, err)
		}
		return nil, err
	}
	if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
		return nil, fmt.Errorf("transport: unexpected websocket message type %d", typ)
	}
	return b, nil
}

func (w *wsConn) WriteFrame(frame []byte) error {
	return w.c.WriteMessage(websocket.TextMessage, frame)
}

func (w *wsConn) SetReadDeadline(t time.Time) error  { return w.c.SetReadDeadline(t) }
func (w *wsConn) SetWriteDeadline(t time.Time) error { return w.c.SetWriteDeadline(t) }

// closeCode picks the close code for reason and cuts reason to what a
// close frame carries: 1000 for a plain close, 1001 when a side shuts down,
// 1008 for refusals.
func closeCode(reason string) (int, string) {
	if len(reason) > 120 { // a close frame's payload is at most 125 bytes
		reason = reason[:120]
	}
	switch {
	case reason == "":
		return websocket.CloseNormalClosure, reason
	case strings.HasSuffix(reason, "shutting down"):
		return websocket.CloseGoingAway, reason
	}
	return websocket.ClosePolicyViolation, reason
}

func (w *wsConn) CloseWithReason(reason string) error {
	code, reason := closeCode(reason)
	msg := websocket.FormatCloseMessage(code, reason)
	_ = w.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return w.c.Close()
}

func (w *wsConn) PeerCertificates() []*x509.Certificate {
	if tc, ok := w.c.NetConn().(*tls.Conn); ok {
		return tc.ConnectionState().PeerCertificates
	}
	return nil
}

func (w *wsConn) RemoteAddr() string { return w.c.RemoteAddr().String() }
func (w *wsConn) Kind() string       { return KindWebSocket }

// Upgrader returns the WebSocket upgrader the cloud uses. Buffers come from
// pools so that idle sessions hold none.
func Upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// A small reader of our own instead of net/http's 4 KiB one: frames
		// are read into their own slices anyway.
		ReadBufferSize:  1024,
		WriteBufferPool: &writePool,
		CheckOrigin:     func(*http.Request) bool { return true }, // edges are not browsers; identity is the client certificate
	}
}

var writePool = poolAdapter{}

// DialWebSocket opens wss://addr/{projectID}/{nodeName}/events with KubeEdge's headers.
func DialWebSocket(ctx context.Context, addr, projectID, nodeName string, tlsConf *tls.Config, maxFrame int) (Conn, error) {
	d := websocket.Dialer{
		TLSClientConfig:  tlsConf,
		HandshakeTimeout: 10 * time.Second,
		// A small reader of our own instead of net/http's 4 KiB one: frames
		// are read into their own slices anyway.
		ReadBufferSize:  1024,
		WriteBufferPool: &writePool,
		NetDialContext:  (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
	}
	h := http.Header{}
	h.Set(HeaderNodeID, nodeName)
	h.Set(HeaderProjectID, projectID)
	url := fmt.Sprintf("wss://%s/%s/%s/events", addr, projectID, nodeName)
	c, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("transport: dial %s: %w (HTTP %d: %s)", url, err, resp.StatusCode, readReason(resp))
		}
		return nil, fmt.Errorf("transport: dial %s: %w", url, err)
	}
	return NewWebSocketConn(c, maxFrame), nil
}

// ---- QUIC ----

type quicConn struct {
	qc       *quic.Conn
	s        *quic.Stream
	maxFrame int
}

// NewQUICConn wraps a QUIC connection and its single session stream.
func NewQUICConn(qc *quic.Conn, s *quic.Stream, maxFrame int) Conn {
	return &quicConn{qc: qc, s: s, maxFrame: maxFrame}
}

func (q *quicConn) ReadFrame() ([]byte, error)         { return wire.ReadFrame(q.s, q.maxFrame) }
func (q *quicConn) WriteFrame(frame []byte) error      { return wire.WriteFrame(q.s, frame) }
func (q *quicConn) SetReadDeadline(t time.Time) error  { return q.s.SetReadDeadline(t) }
func (q *quicConn) SetWriteDeadline(t time.Time) error { return q.s.SetWriteDeadline(t) }
func (q *quicConn) CloseWithReason(reason string) error {
	return q.qc.CloseWithError(1, reason)
}
func (q *quicConn) PeerCertificates() []*x509.Certificate {
	return q.qc.ConnectionState().TLS.PeerCertificates
}
func (q *quicConn) RemoteAddr() string { return q.qc.RemoteAddr().String() }
func (q *quicConn) Kind() string       { return KindQUIC }

// QUICConfig is shared by both ends: QUIC's own idle timeout is a backstop;
// session liveness is the hub's keepalive.
func QUICConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:        60 * time.Second,
		KeepAlivePeriod:       20 * time.Second,
		MaxIncomingStreams:    1,
		MaxIncomingUniStreams: -1,
	}
}

// DialQUIC connects to addr, opens the session stream and sends the hello.
func DialQUIC(ctx context.Context, addr string, hello Hello, tlsConf *tls.Config, maxFrame int) (Conn, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	qc, err := quic.DialAddr(ctx, addr, tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("transport: quic dial %s: %w", addr, err)
	}
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, fmt.Errorf("transport: quic open stream: %w", err)
	}
	b, _ := json.Marshal(hello) // two strings always marshal
	if err := wire.WriteFrame(s, b); err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, fmt.Errorf("transport: quic hello: %w", err)
	}
	return NewQUICConn(qc, s, maxFrame), nil
}

// AcceptQUICSession waits for the session stream and its hello on an accepted connection.
func AcceptQUICSession(ctx context.Context, qc *quic.Conn, maxFrame int) (Conn, Hello, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := qc.AcceptStream(ctx)
	if err != nil {
		return nil, Hello{}, fmt.Errorf("transport: quic accept stream: %w", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := wire.ReadFrame(s, 4096)
	if err != nil {
		return nil, Hello{}, fmt.Errorf("transport: quic hello: %w", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	var h Hello
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, Hello{}, fmt.Errorf("transport: quic hello is not JSON {node_id, project_id}: %w", err)
	}
	return NewQUICConn(qc, s, maxFrame), h, nil
}
