//go:build linux

package memtrim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReleaseExecutablePages pages out the read-only mappings of the running
// executable and returns how many bytes of address space it covered.
func ReleaseExecutablePages() (uint64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	maps, err := ParseMaps(f)
	_ = f.Close()
	if err != nil {
		return 0, err
	}
	ro := ReadOnlyMappingsOf(maps, exe)
	if len(ro) == 0 {
		return 0, fmt.Errorf("memtrim: no read-only mapping of %s in /proc/self/maps", exe)
	}
	var covered uint64
	for _, m := range ro {
		// The range is not Go memory: the madvise syscall takes it as plain
		// numbers, so no unsafe.Pointer is made from an address.
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.Size()), unix.MADV_PAGEOUT)
		switch {
		case errno == unix.EINVAL:
			return covered, ErrUnsupported
		case errno != 0:
			return covered, fmt.Errorf("memtrim: madvise %#x-%#x: %w", m.Start, m.End, errno)
		}
		covered += m.Size()
	}
	return covered, nil
}
