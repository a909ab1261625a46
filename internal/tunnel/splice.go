package tunnel

import (
	"io"
	"net"
	"sync"
	"time"
)

// closeWriter is implemented by *net.TCPConn, *tls.Conn and *net.UnixConn.
type closeWriter interface{ CloseWrite() error }

// spliceBuffer is the copy buffer per direction: the largest TLS record's
// plaintext, so that a record is copied in one write, and half of io.Copy's
// default, which matters for thousands of idle tunnels.
const spliceBuffer = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, spliceBuffer); return &b }}

// Splice copies a→b (in the calling goroutine) and b→a (in one more) until
// both directions ended, then closes both connections. When one direction
// ends, the other's destination gets a half-close (CloseWrite) so that the
// peer sees EOF, and the other direction may run for at most grace more
// before both are closed: a peer that never closes its side cannot pin the
// pair forever. It returns the bytes copied each way.
func Splice(a, b net.Conn, grace time.Duration) (aToB, bToA int64) {
	var once sync.Once
	var timer *time.Timer // set inside once
	halfDone := func() {
		once.Do(func() {
			timer = time.AfterFunc(grace, func() {
				_ = a.Close()
				_ = b.Close()
			})
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bToA = copyHalf(a, b)
		halfDone()
	}()
	aToB = copyHalf(b, a)
	halfDone()
	<-done
	timer.Stop()
	_ = a.Close()
	_ = b.Close()
	return aToB, bToA
}

// copyHalf copies src to dst until src ends, then half-closes dst.
func copyHalf(dst, src net.Conn) int64 {
	buf := bufPool.Get().(*[]byte)
	n, _ := io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *buf)
	bufPool.Put(buf)
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return n
}

// onlyReader and onlyWriter hide ReaderFrom/WriterTo so that CopyBuffer uses
// the given buffer (a *net.TCPConn would otherwise bring its own).
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }
