package kubeletserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const procStatFixture = "cpu  100 20 30 1000 50 5 6 7 40 0\ncpu0 1 2 3 4 5 6 7 8 9 0\nintr 1 2 3\nbtime 1772359200\nprocesses 5\n"
const meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nBuffers:          10 kB\nHugePages_Total:   0\n"

func TestHostCgroupV1(t *testing.T) {
	root := writeTree(t, map[string]string{
		"proc/stat":                       procStatFixture,
		"proc/meminfo":                    meminfo,
		"cg/cpuacct/cpuacct.usage":        "123456789\n",
		"cg/memory/memory.usage_in_bytes": "800000\n",
		"cg/memory/memory.stat":           "cache 1\nrss 2\ntotal_rss 300000\ntotal_inactive_file 100000\n",
	})
	h := HostPaths{ProcRoot: filepath.Join(root, "proc"), CgroupRoot: filepath.Join(root, "cg")}.withDefaults()
	cpu, err := h.nodeCPU()
	if err != nil || cpu != 123456789 {
		t.Fatalf("nodeCPU = %d, %v", cpu, err)
	}
	mem, err := h.nodeMem()
	if err != nil || mem != (nodeMemory{total: 1024000, workingSet: 700000, usage: 800000, rss: 300000}) {
		t.Fatalf("nodeMem = %+v, %v", mem, err)
	}
	boot, err := h.bootTime()
	if err != nil || !boot.Equal(time.Unix(1772359200, 0)) {
		t.Fatalf("bootTime = %s, %v", boot, err)
	}
}

func TestHostCgroupV2AndProcFallback(t *testing.T) {
	root := writeTree(t, map[string]string{
		"proc/stat":    procStatFixture,
		"proc/meminfo": meminfo,
		"cg/cpu.stat":  "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\n",
	})
	h := HostPaths{ProcRoot: filepath.Join(root, "proc"), CgroupRoot: filepath.Join(root, "cg")}.withDefaults()
	if cpu, err := h.nodeCPU(); err != nil || cpu != 5000000 {
		t.Fatalf("nodeCPU(v2) = %d, %v", cpu, err)
	}
	// v2 has no root memory.current: MemTotal - MemAvailable.
	if mem, err := h.nodeMem(); err != nil || mem.workingSet != 400*1024 || mem.total != 1000*1024 {
		t.Fatalf("nodeMem(v2) = %+v, %v", mem, err)
	}
	// No cgroup files at all: /proc/stat busy ticks (user+nice+system+irq+softirq+steal).
	h.CgroupRoot = filepath.Join(root, "none")
	if cpu, err := h.nodeCPU(); err != nil || cpu != (100+20+30+5+6+7)*10_000_000 {
		t.Fatalf("nodeCPU(/proc/stat) = %d, %v", cpu, err)
	}
}

func TestHostParsersRefuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"stat without cpu", func() error { _, err := parseProcStat([]byte("btime 1\n")); return err }()},
		{"stat bad field", func() error { _, err := parseProcStat([]byte("cpu 1 2 x 4 5\nbtime 1\n")); return err }()},
		{"meminfo without total", func() error { _, err := parseMeminfo([]byte("MemFree: 1 kB\n")); return err }()},
		{"meminfo bad", func() error { _, err := parseMeminfo([]byte("MemTotal: lots kB\n")); return err }()},
		{"meminfo overflow", func() error { _, err := parseMeminfo([]byte("MemTotal: 18446744073709551615 kB\n")); return err }()},
		{"kv", func() error { _, err := parseKeyValues([]byte("a 1 2\n")); return err }()},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), "cannot parse") {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
}

// FuzzHostParsers: the /proc and cgroup parsers never panic on any input.
func FuzzHostParsers(f *testing.F) {
	f.Add([]byte(procStatFixture))
	f.Add([]byte(meminfo))
	f.Add([]byte("total_rss 1\ntotal_inactive_file 2\n"))
	f.Add([]byte("cpu\nbtime\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseProcStat(b)
		if m, err := parseMeminfo(b); err == nil && m == nil {
			t.Fatal("nil map without error")
		}
		_, _ = parseKeyValues(b)
	})
}
