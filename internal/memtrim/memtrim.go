package memtrim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrUnsupported is returned where the kernel has no MADV_PAGEOUT (before
// Linux 5.4) or the platform is not Linux.
var ErrUnsupported = errors.New("memtrim: MADV_PAGEOUT not supported here")

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Path       string
}

// Size is the mapping's length in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// ParseMaps reads the /proc/PID/maps format.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("memtrim: maps line %d: want at least 5 fields, got %d", line, len(f))
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("memtrim: maps line %d: address range %q has no '-'", line, f[0])
		}
		start, err := strconv.ParseUint(lo, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("memtrim: maps line %d: start address: %w", line, err)
		}
		end, err := strconv.ParseUint(hi, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("memtrim: maps line %d: end address: %w", line, err)
		}
		if end < start {
			return nil, fmt.Errorf("memtrim: maps line %d: end %#x before start %#x", line, end, start)
		}
		m := Mapping{Start: start, End: end, Perms: f[1]}
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("memtrim: reading maps: %w", err)
	}
	return out, nil
}

// ReadOnlyMappingsOf selects the mappings of file exe that cannot be
// written: text and read-only data. Writable data is left alone: its
// written pages are private copies that paging out would only move to swap.
func ReadOnlyMappingsOf(maps []Mapping, exe string) []Mapping {
	var out []Mapping
	for _, m := range maps {
		path := strings.TrimSuffix(m.Path, " (deleted)")
		if path != exe || len(m.Perms) < 2 || m.Perms[1] == 'w' || m.Perms[0] != 'r' {
			continue
		}
		out = append(out, m)
	}
	return out
}
