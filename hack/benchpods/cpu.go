package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
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
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, ticks, err := testenv.ProcCPU(pid); err == nil { // else it exited meanwhile
			s.byName[comm] += ticks
		}
	}
	s.busy = machineBusyTicks()
	return s
}

// machineBusyTicks is the time all CPUs spent not idle, from /proc/stat.
func machineBusyTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	var busy int64
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return busy
}

// waitQuiet waits until the machine has been nearly idle (under 15 % of
// its CPUs) for a second, or for at most limit.
func waitQuiet(ctx context.Context, limit time.Duration) {
	cpus := float64(runtime.NumCPU())
	deadline := time.Now().Add(limit)
	prev, quiet := machineBusyTicks(), 0
	for quiet < 2 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		busy := machineBusyTicks()
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
