//go:build !linux

package transport

import "syscall"

// Elsewhere sessions read directly (and keep deeper stacks while idle).
const canWaitReadable = false

func waitReadable(syscall.RawConn) error { return nil }
