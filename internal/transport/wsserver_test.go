package transport

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"
)

func waiterOf(t *testing.T, c Conn) *serverWebSocket {
	t.Helper()
	s, ok := c.(*serverWebSocket)
	if !ok {
		t.Fatalf("server end is %T, want *serverWebSocket", c)
	}
	if s.raw == nil {
		t.Fatal("the server end has no socket to wait on")
	}
	return s
}

// socketHasBytes peeks at the server's socket without reading.
func socketHasBytes(t *testing.T, s *serverWebSocket) bool {
	t.Helper()
	has := false
	err := s.raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		has = err == nil && n > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	return has
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A frame that reached the socket before WaitFrame began must end the wait:
// the poller's readiness is reset on entry, so this is what the peek is for.
func TestWaitFrameSeesBytesAlreadyInTheSocket(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	c := wsPair(t, p, 0, 0)
	s := waiterOf(t, c.server)
	if err := c.client.WriteFrame([]byte("early")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the frame to reach the server's socket", func() bool { return socketHasBytes(t, s) })
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFrame(); err != nil {
		t.Fatalf("WaitFrame with a frame in the socket = %v, want nil", err)
	}
	if f, err := s.ReadFrame(); err != nil || string(f) != "early" {
		t.Fatalf("ReadFrame = %q, %v; want %q", f, err, "early")
	}
}

// A wait that times out leaves the session usable: TLS treats the
// deadlines it sees as temporary.
func TestWaitFrameTimeoutKeepsTheConnection(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	c := wsPair(t, p, 0, 0)
	s := waiterOf(t, c.server)
	if s.FrameBuffered() {
		t.Fatal("FrameBuffered on an idle connection = true")
	}
	if err := s.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFrame(); !isTimeout(err) {
		t.Fatalf("WaitFrame past its deadline = %v, want a timeout", err)
	}
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"one", "two", "three"} {
		if err := c.client.WriteFrame([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitFrame(); err != nil {
		t.Fatalf("WaitFrame after the timeout = %v", err)
	}
	for i, want := range []string{"one", "two", "three"} {
		if i > 0 {
			// The later frames are, or soon will be, already there.
			eventually(t, "frame "+want+" to arrive", s.FrameBuffered)
		}
		if f, err := s.ReadFrame(); err != nil || string(f) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", f, err, want)
		}
	}
	if err := s.WriteFrame([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if f, err := c.client.ReadFrame(); err != nil || string(f) != "reply" {
		t.Fatalf("client ReadFrame = %q, %v", f, err)
	}
}

// When the peer goes away, WaitFrame returns and ReadFrame says so.
func TestWaitFrameEndsWhenThePeerCloses(t *testing.T) {
	p := newTestPKI(t, "edge-1")
	c := wsPair(t, p, 0, 0)
	s := waiterOf(t, c.server)
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.client.CloseWithReason("bye"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFrame(); err != nil {
		t.Fatalf("WaitFrame = %v", err)
	}
	_, err := s.ReadFrame()
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame after the peer closed = %v, want the peer's close", err)
	}
}
