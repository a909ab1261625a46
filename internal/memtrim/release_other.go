//go:build !linux

package memtrim

// ReleaseExecutablePages is a no-op outside Linux.
func ReleaseExecutablePages() (uint64, error) { return 0, ErrUnsupported }
