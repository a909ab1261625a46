package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupFS is where the cgroup v1 hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// teardownContainerd undoes StartContainerd for the instance recorded in st,
// in an order that leaves nothing behind: sandboxes through CRI first (so that
// CNI releases addresses and veths), then the daemon, stray shims, pod
// cgroups, mounts, the bridge and CNI's cached results. It keeps going past
// errors and returns them all.
func teardownContainerd(dir string, st containerdState, log *slog.Logger) error {
	var errs []error
	running := st.PID > 0 && pidRunning(st.PID) && pidIsOurs(st.PID, containerdName, dir)
	if running {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := removeAllSandboxes(ctx, st.Socket); err != nil {
			// Not fatal: what CRI could not remove is killed below.
			log.Warn("containerd teardown: removing sandboxes through CRI", "err", err)
		}
		cancel()
		if err := killPID(st.PID, stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop containerd: %w", err))
		}
	}
	if st.Socket != "" {
		for _, pid := range shimPIDs(st.Socket) {
			if err := killPID(pid, 2*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop shim: %w", err))
			}
		}
	}
	if st.CgroupRoot != "" && st.CgroupRoot != "/" {
		killCgroupProcs(st.CgroupRoot)
		if err := removeCgroupTree(st.CgroupRoot, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	unmountUnder(dir)
	if st.Bridge != "" {
		if err := deleteLink(st.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if st.Network != "" {
		matches, _ := filepath.Glob(filepath.Join(cniResultsDir, st.Network+"-*"))
		for _, m := range matches {
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove CNI result: %w", err))
			}
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(filepath.Join(dir, containerdStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("containerd state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeAllSandboxes stops and removes every pod sandbox (and with it its
// containers) through CRI.
func removeAllSandboxes(ctx context.Context, sock string) error {
	conn, err := dialCRI(sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range resp.GetItems() {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox %s: %w", sb.Id, err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox %s: %w", sb.Id, err))
		}
	}
	return errors.Join(errs...)
}

// shimPIDs returns the containerd shims serving the containerd at sock: their
// command line names it with -address.
func shimPIDs(sock string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if isShimOf(data, sock) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isShimOf reports whether a NUL-separated command line is a containerd shim
// started with "-address sock".
func isShimOf(cmdline []byte, sock string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 3 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
		return false
	}
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "-address" && args[i+1] == sock {
			return true
		}
	}
	return false
}

// cgroupDirs returns the directories of cgroup path root in every mounted v1
// hierarchy (and the unified one, if mounted), deepest first.
func cgroupDirs(root string) []string {
	hier, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, h := range hier {
		if !h.IsDir() { // skip the cpu,cpuacct style symlinks: same hierarchy
			continue
		}
		base := filepath.Join(cgroupFS, h.Name(), filepath.Clean("/"+root))
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// killCgroupProcs sends SIGKILL to every process in the cgroups under root.
func killCgroupProcs(root string) {
	for _, d := range cgroupDirs(root) {
		data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// removeCgroupTree removes root and everything below it in every hierarchy,
// retrying while killed processes are still leaving.
func removeCgroupTree(root string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var busy []string
		for _, d := range cgroupDirs(root) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				busy = append(busy, d)
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroups: still busy after %s: %s", timeout, strings.Join(busy, ", "))
		}
		killCgroupProcs(root)
		time.Sleep(100 * time.Millisecond)
	}
}

// unmountUnder lazily unmounts every mount point below dir, deepest first
// (rootfs overlays, netns and shm bind mounts of a killed containerd).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// claimBridge creates a bridge kebr<N> with 10.244.N.1/24 for the first N
// (from a random start) whose range overlaps nothing on the host. Creating
// the link is the claim: the kernel refuses a second link of the same name,
// so concurrent test processes never share a bridge or a range.
func claimBridge() (int, string, netip.Prefix, error) {
	used := hostPrefixes()
	start := rand.IntN(254)
	for i := range 254 {
		n := (start+i)%254 + 1
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(n), 0}), 24)
		if overlapsAny(subnet, used) {
			continue
		}
		name := "kebr" + strconv.Itoa(n)
		out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "File exists") {
				continue
			}
			return 0, "", netip.Prefix{}, fmt.Errorf("create bridge %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
		gw := netip.PrefixFrom(subnet.Addr().Next(), 24)
		for _, args := range [][]string{{"addr", "add", gw.String(), "dev", name}, {"link", "set", name, "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				_ = deleteLink(name)
				return 0, "", netip.Prefix{}, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
		}
		return n, name, subnet, nil
	}
	return 0, "", netip.Prefix{}, errors.New("claim pod network: every 10.244.N.0/24 is in use (leftover kebr* bridges? `ip link show type bridge`)")
}

// hostPrefixes returns the IPv4 networks on the host's interfaces and in its
// routing table.
func hostPrefixes() []netip.Prefix {
	var out []netip.Prefix
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
					out = append(out, p.Masked())
				}
			}
		}
	}
	if data, err := os.ReadFile("/proc/net/route"); err == nil {
		out = append(out, parseProcRoutes(string(data))...)
	}
	return out
}

// parseProcRoutes parses /proc/net/route (little-endian hex destination and
// mask); the default route is skipped because it overlaps everything.
func parseProcRoutes(data string) []netip.Prefix {
	var out []netip.Prefix
	for i, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		a := netip.AddrFrom4([4]byte{byte(dst), byte(dst >> 8), byte(dst >> 16), byte(dst >> 24)})
		m := uint32(mask)
		bits := 0
		for m != 0 {
			bits += int(m & 1)
			m >>= 1
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if p.Overlaps(u) {
			return true
		}
	}
	return false
}

// deleteLink removes a network link; a missing one is not an error.
func deleteLink(name string) error {
	out, err := exec.Command("ip", "link", "del", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") {
		return fmt.Errorf("delete link %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
