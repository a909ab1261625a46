package tunnel

import (
	"io"
	"net"
	"sync"
	"time"
)

// closeWriter is implemented by *net.TCPConn, *tls.Conn and *net.UnixConn.
type closeWriter interface{ CloseWrite() error }

// Splice copies a→b and b→a until both directions ended, then closes both
// connections. When one direction ends, the other's destination gets a
// half-close (CloseWrite) so the peer sees EOF, and the other direction may
// run for at most grace more before both are closed: a peer that never
// closes its side cannot pin the pair forever. It returns the bytes copied
// each way.
func Splice(a, b net.Conn, grace time.Duration) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn, n *int64) {
		defer wg.Done()
		*n, _ = io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(b, a, &aToB)
	go cp(a, b, &bToA)
	<-done
	t := time.NewTimer(grace)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	_ = a.Close()
	_ = b.Close()
	wg.Wait()
	return aToB, bToA
}
