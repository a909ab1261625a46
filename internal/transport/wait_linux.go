package transport

import "syscall"

const canWaitReadable = true

// waitReadable returns once the socket has bytes (or an end or error) to
// read, or the read deadline passed. It peeks rather than trusting the
// poller alone, because the poller's readiness is reset on entry: bytes that
// arrived earlier would otherwise go unnoticed until more came.
func waitReadable(raw syscall.RawConn) error {
	return raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}
