package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatusKiB reads a kB field (VmRSS, RssFile, ...) of /proc/PID/status;
// pid 0 is this process. Benchmarks use it to report memory.
func ProcStatusKiB(pid int, field string) (int64, error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s %q: %w", path, field, strings.TrimSpace(v), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// ProcCPU reads /proc/PID/stat: the command name and the CPU time, in clock
// ticks (1/100 s on Linux), of the process and of its children that exited
// and were reaped (utime, stime, cutime, cstime).
func ProcCPU(pid int) (comm string, ticks int64, err error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	line := string(b)
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("%s: no (command) in %q", path, line)
	}
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return "", 0, fmt.Errorf("%s: %d fields after the command, want at least 15", path, len(f))
	}
	for _, i := range []int{11, 12, 13, 14} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return "", 0, fmt.Errorf("%s: field %d: %w", path, i+3, err)
		}
		ticks += n
	}
	return line[open+1 : end], ticks, nil
}
