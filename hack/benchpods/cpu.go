package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuSnapshot is the CPU time, in ticks, of every process by command name
// (children that exited and were reaped count for their parent, so runc
// counts for its shim and the CNI plugins for containerd), and the
// machine's busy time.
type cpuSnapshot struct {
	byName map[string]int64
	busy   int64
}

func takeCPUSnapshot() cpuSnapshot {
	s := cpuSnapshot{byName: map[string]int64{}}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		line := string(b)
		open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(line[end+1:])
		if len(f) < 15 {
			continue
		}
		var ticks int64
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		s.byName[line[open+1:end]] += ticks
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		for i, v := range f[1:] {
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			s.busy += n
		}
	}
	return s
}

// waitQuiet waits until the machine has been nearly idle (under 15 % of
// its CPUs) for a second, or for at most limit.
func waitQuiet(ctx context.Context, limit time.Duration) {
	cpus := float64(runtime.NumCPU())
	deadline := time.Now().Add(limit)
	prev, quiet := takeCPUSnapshot().busy, 0
	for quiet < 2 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		busy := takeCPUSnapshot().busy
		if float64(busy-prev)/clockTicks/0.5/cpus < 0.15 {
			quiet++
		} else {
			quiet = 0
		}
		prev = busy
	}
}

// printCPU prints the CPU seconds each command used between a and b, the
// largest first, and the machine's total.
func printCPU(label string, a, b cpuSnapshot) {
	type use struct {
		name  string
		ticks int64
	}
	var uses []use
	for name, t := range b.byName {
		if d := t - a.byName[name]; d > 0 {
			uses = append(uses, use{name, d})
		}
	}
	slices.SortFunc(uses, func(x, y use) int { return int(y.ticks - x.ticks) })
	var parts []string
	for _, u := range uses[:min(len(uses), 8)] {
		parts = append(parts, fmt.Sprintf("%s %.2f", u.name, float64(u.ticks)/clockTicks))
	}
	fmt.Printf("CPU seconds during %s: machine %.2f; %s\n", label, float64(b.busy-a.busy)/clockTicks, strings.Join(parts, ", "))
}
