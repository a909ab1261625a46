package kubeletserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// HostPaths says where node statistics are read; tests point them at
// fixtures.
type HostPaths struct {
	ProcRoot   string // default /proc
	CgroupRoot string // default /sys/fs/cgroup
	// FsPath is a path on the node's root (or data) filesystem; default "/".
	FsPath string
}

func (h HostPaths) withDefaults() HostPaths {
	if h.ProcRoot == "" {
		h.ProcRoot = "/proc"
	}
	if h.CgroupRoot == "" {
		h.CgroupRoot = "/sys/fs/cgroup"
	}
	if h.FsPath == "" {
		h.FsPath = "/"
	}
	return h
}

// userHZ is the kernel's clock tick for /proc/stat on every Linux ABI Go
// supports.
const userHZ = 100

// nodeCPU returns the node's cumulative CPU time in nanoseconds: the root
// cgroup's (v1 cpuacct.usage, v2 cpu.stat usage_usec) as the kubelet
// reports it, else the busy time in /proc/stat.
func (h HostPaths) nodeCPU() (uint64, error) {
	if b, err := os.ReadFile(filepath.Join(h.CgroupRoot, "cpuacct", "cpuacct.usage")); err == nil {
		return parseUint(bytes.TrimSpace(b))
	}
	if b, err := os.ReadFile(filepath.Join(h.CgroupRoot, "cpu.stat")); err == nil {
		kv, err := parseKeyValues(b)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat: %w", err)
		}
		if us, ok := kv["usage_usec"]; ok {
			return us * 1000, nil
		}
	}
	b, err := os.ReadFile(filepath.Join(h.ProcRoot, "stat"))
	if err != nil {
		return 0, err
	}
	st, err := parseProcStat(b)
	if err != nil {
		return 0, err
	}
	return st.busyTicks * (1e9 / userHZ), nil
}

// nodeMemory is the node's memory in bytes, as the kubelet reports it.
type nodeMemory struct {
	total, workingSet, usage, rss uint64
}

// nodeMem reads the root memory cgroup (v1: usage minus inactive file
// pages, the kubelet's working set) and /proc/meminfo; without a v1 root
// cgroup (v2 has no root memory.current) the working set is
// MemTotal - MemAvailable.
func (h HostPaths) nodeMem() (nodeMemory, error) {
	b, err := os.ReadFile(filepath.Join(h.ProcRoot, "meminfo"))
	if err != nil {
		return nodeMemory{}, err
	}
	mi, err := parseMeminfo(b)
	if err != nil {
		return nodeMemory{}, err
	}
	m := nodeMemory{total: mi["MemTotal"]}
	if u, err := os.ReadFile(filepath.Join(h.CgroupRoot, "memory", "memory.usage_in_bytes")); err == nil {
		usage, err := parseUint(bytes.TrimSpace(u))
		if err != nil {
			return nodeMemory{}, fmt.Errorf("memory.usage_in_bytes: %w", err)
		}
		stat, err := os.ReadFile(filepath.Join(h.CgroupRoot, "memory", "memory.stat"))
		if err != nil {
			return nodeMemory{}, err
		}
		kv, err := parseKeyValues(stat)
		if err != nil {
			return nodeMemory{}, fmt.Errorf("memory.stat: %w", err)
		}
		m.usage, m.rss = usage, kv["total_rss"]
		m.workingSet = usage
		if inactive := kv["total_inactive_file"]; inactive < usage {
			m.workingSet = usage - inactive
		} else {
			m.workingSet = 0
		}
		return m, nil
	}
	avail, ok := mi["MemAvailable"]
	if !ok {
		avail = mi["MemFree"]
	}
	if avail < m.total {
		m.workingSet = m.total - avail
	}
	m.usage = m.total - mi["MemFree"]
	return m, nil
}

// bootTime is when the node booted (/proc/stat btime).
func (h HostPaths) bootTime() (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(h.ProcRoot, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	st, err := parseProcStat(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(int64(st.btime), 0), nil
}

// procStat is what /proc/stat tells about the node.
type procStat struct {
	busyTicks uint64 // user+nice+system+irq+softirq+steal of the "cpu" line
	btime     uint64
}

var errParse = errors.New("kubeletserver: cannot parse")

func parseProcStat(b []byte) (procStat, error) {
	var st procStat
	cpu, btime := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		switch string(f[0]) {
		case "cpu":
			if len(f) < 5 {
				return st, fmt.Errorf("%w /proc/stat: cpu line has %d fields", errParse, len(f))
			}
			// user nice system idle iowait irq softirq steal ...
			for i, v := range f[1:] {
				n, err := parseUint(v)
				if err != nil {
					return st, fmt.Errorf("%w /proc/stat cpu field %d: %v", errParse, i+1, err)
				}
				if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest (already in user)
					continue
				}
				st.busyTicks += n
			}
			cpu = true
		case "btime":
			if len(f) != 2 {
				return st, fmt.Errorf("%w /proc/stat: btime line", errParse)
			}
			n, err := parseUint(f[1])
			if err != nil {
				return st, fmt.Errorf("%w /proc/stat btime: %v", errParse, err)
			}
			st.btime, btime = n, true
		}
	}
	if !cpu || !btime {
		return st, fmt.Errorf("%w /proc/stat: no cpu or btime line", errParse)
	}
	return st, nil
}

// parseMeminfo returns /proc/meminfo's values in bytes.
func parseMeminfo(b []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := bytes.Cut(sc.Bytes(), []byte{':'})
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := parseUint(f[0])
		if err != nil {
			return nil, fmt.Errorf("%w /proc/meminfo %s: %v", errParse, key, err)
		}
		if len(f) > 1 && string(f[1]) == "kB" {
			if n > (1<<64-1)/1024 {
				return nil, fmt.Errorf("%w /proc/meminfo %s: value out of range", errParse, key)
			}
			n *= 1024
		}
		out[string(key)] = n
	}
	if _, ok := out["MemTotal"]; !ok {
		return nil, fmt.Errorf("%w /proc/meminfo: no MemTotal", errParse)
	}
	return out, nil
}

// parseKeyValues parses "key value" lines (memory.stat, cpu.stat).
func parseKeyValues(b []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: line %q is not \"key value\"", errParse, truncateBytes(sc.Bytes(), 60))
		}
		n, err := parseUint(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errParse, f[0], err)
		}
		out[string(f[0])] = n
	}
	return out, nil
}

func parseUint(b []byte) (uint64, error) {
	return strconv.ParseUint(string(b), 10, 64)
}
