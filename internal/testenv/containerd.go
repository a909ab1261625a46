package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Local image names. They live under localhost/ so that nothing ever tries to
// reach a public registry; BuildImages builds them and Containerd.ImportImages
// loads them into containerd's k8s.io namespace.
const (
	PauseImage   = "localhost/kubeedge/pause:3.10"
	BusyboxImage = "localhost/kubeedge/busybox:1"
)

const (
	containerdName       = "containerd"
	containerdMarker     = ".testenv-containerd"
	containerdStateFile  = "containerd.json"
	containerdReadyLimit = 30 * time.Second
	// cniBinDir is where Debian's containernetworking-plugins installs.
	cniBinDir = "/usr/lib/cni"
	// cniResultsDir is where libcni caches results outside our state dir.
	cniResultsDir = "/var/lib/cni/results"
)

// ErrContainerdUnavailable is returned when this host cannot run a private
// containerd (not root, or a binary missing); the message says what to do.
var ErrContainerdUnavailable = errors.New("testenv: containerd unavailable")

// ContainerdOptions configures StartContainerd.
type ContainerdOptions struct {
	// Dir holds config, state, images, logs and the socket. It must be short
	// (unix sockets are limited to 108 bytes) and empty, absent, or hold a
	// stopped containerd, which is cleaned up and replaced.
	Dir string
	// CgroupRoot is the cgroup (cgroupfs path) under which the kubelet is
	// expected to put pod cgroups; Stop removes it with everything below.
	// Empty means a fresh "/ke<N>" per instance, so that concurrent
	// instances never touch each other's pods. "/" is refused.
	CgroupRoot string
	// Detach starts containerd in its own session so that it outlives the
	// caller (make up); StopContainerdDetached stops it later.
	Detach bool
	// Logger receives progress messages; nil means slog.Default().
	Logger *slog.Logger
}

// Containerd is a private containerd with its CRI plugin, a CNI bridge
// network of its own and no connection to the system's containerd.
type Containerd struct {
	// Dir is its absolute state directory.
	Dir string
	// Socket is the path of the gRPC socket; Endpoint is "unix://" + Socket,
	// the form CRI clients (and KubeEdge's remoteRuntimeEndpoint) take.
	Socket, Endpoint string
	// Bridge is the Linux bridge the pod network hangs on; Subnet its
	// IPv4 range, Gateway the bridge's own address. Pod IPs are reachable
	// from the host only through it.
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Network is the CNI network name.
	Network string
	// CgroupRoot is what to give the kubelet as its cgroupRoot.
	CgroupRoot string
	// Log is containerd's log file.
	Log string

	state containerdState
	proc  *process // nil when detached
	log   *slog.Logger
}

// containerdState is written to Dir/containerd.json so that a later process
// (make down, or the next start on a crashed dir) can clean up.
type containerdState struct {
	PID        int    `json:"pid"`
	Socket     string `json:"socket"`
	Bridge     string `json:"bridge"`
	Subnet     string `json:"subnet"`
	Network    string `json:"network"`
	CgroupRoot string `json:"cgroupRoot"`
}

// ContainerdPreconditions reports why this host cannot run StartContainerd,
// or nil.
func ContainerdPreconditions() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (cgroups, bridges, mounts)", ErrContainerdUnavailable)
	}
	var missing []string
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	for _, p := range []string{"/usr/sbin/runc", filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "loopback")} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s: run hack/install-deps.sh (containerd runc containernetworking-plugins)", ErrContainerdUnavailable, strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		return fmt.Errorf("%w: no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory (edged supports cgroupfs v1)", ErrContainerdUnavailable)
	}
	return nil
}

// StartContainerd starts a private containerd as configured by the verified
// recipe (restrict_oom_score_adj, overlayfs, runc v2, CNI bridge with
// host-local IPAM and no masquerading) and returns once its CRI reports the
// runtime and the network ready. The bridge is created here with a claimed
// 10.244.N.0/24 that overlaps nothing on the host.
func StartContainerd(ctx context.Context, opts ContainerdOptions) (*Containerd, error) {
	if opts.Dir == "" {
		return nil, errors.New("containerd options: Dir is empty")
	}
	if opts.CgroupRoot == "/" || (opts.CgroupRoot != "" && !strings.HasPrefix(opts.CgroupRoot, "/")) {
		return nil, fmt.Errorf("containerd options: CgroupRoot %q must be an absolute cgroup path other than /", opts.CgroupRoot)
	}
	if err := ContainerdPreconditions(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := prepareContainerdDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "containerd.sock")
	if len(sock) >= 108 {
		return nil, fmt.Errorf("containerd options: Dir %s is too long for a unix socket path (%d bytes)", dir, len(sock))
	}
	if err := os.WriteFile(filepath.Join(dir, containerdMarker), nil, 0o644); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	mountRuntimeState(dir, log)
	n, bridge, subnet, err := claimBridge()
	if err != nil {
		return nil, err
	}
	c := &Containerd{
		Dir: dir, Socket: sock, Endpoint: "unix://" + sock,
		Bridge: bridge, Subnet: subnet, Gateway: subnet.Addr().Next(),
		Network: "ke-pods-" + strconv.Itoa(n), CgroupRoot: opts.CgroupRoot,
		Log: filepath.Join(dir, "containerd.log"), log: log,
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/ke" + strconv.Itoa(n)
	}
	c.state = containerdState{Socket: sock, Bridge: bridge, Subnet: subnet.String(), Network: c.Network, CgroupRoot: c.CgroupRoot}
	// From here on, a failure must undo what exists.
	if err := c.writeState(); err != nil {
		_ = teardownContainerd(dir, c.state, log)
		return nil, err
	}
	if err := c.writeConfig(); err != nil {
		_ = teardownContainerd(dir, c.state, log)
		return nil, err
	}
	p, err := startProcess(containerdName, mustLookPath("containerd"), []string{"--config", filepath.Join(dir, "config.toml")}, c.Log, opts.Detach)
	if err != nil {
		_ = teardownContainerd(dir, c.state, log)
		return nil, err
	}
	c.state.PID = p.cmd.Process.Pid
	if !opts.Detach {
		c.proc = p
	}
	if err := c.writeState(); err != nil {
		_ = teardownContainerd(dir, c.state, log)
		return nil, err
	}
	start := time.Now()
	if err := c.waitReady(ctx, p); err != nil {
		_ = teardownContainerd(dir, c.state, log)
		return nil, err
	}
	log.Info("containerd ready", "socket", sock, "bridge", bridge, "subnet", subnet, "cgroupRoot", c.CgroupRoot, "pid", c.state.PID, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func mustLookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name // checked by ContainerdPreconditions; exec reports it
	}
	return p
}

// PID is containerd's process id.
func (c *Containerd) PID() int { return c.state.PID }

// Stop removes every pod sandbox through CRI (which stops containers and
// releases their CNI addresses), stops containerd and leftover shims by PID,
// removes the cgroups under CgroupRoot, unmounts what is left under Dir and
// deletes the bridge and CNI results. Dir itself stays (with the log) for
// the caller to remove.
func (c *Containerd) Stop() error {
	err := teardownContainerd(c.Dir, c.state, c.log)
	if c.proc != nil {
		<-c.proc.done
	}
	return err
}

// Restart stops containerd (only the daemon: containers, shims, the bridge
// and the state stay, as after a crash of containerd alone) and starts it
// again on the same state. With kill, containerd and every shim of this
// instance get SIGKILL, which with the later start resembles a reboot of the
// node: running containers die with their shims and their sandboxes are
// NotReady when containerd comes back.
func (c *Containerd) Restart(ctx context.Context, kill bool) error {
	if err := c.StopDaemon(kill); err != nil {
		return err
	}
	return c.StartDaemon(ctx)
}

// StopDaemon stops the containerd process only (see Restart). With kill the
// shims of this instance are killed too, and with them every container.
func (c *Containerd) StopDaemon(kill bool) error {
	grace := stopGrace
	if kill {
		grace = 0
	}
	if c.proc != nil {
		c.proc.stop(grace)
	} else if pidRunning(c.state.PID) && pidIsOurs(c.state.PID, containerdName, c.Dir) {
		if err := killPID(c.state.PID, grace); err != nil {
			return fmt.Errorf("stop containerd: %w", err)
		}
	}
	if kill {
		for _, pid := range shimPIDs(c.Socket) {
			_ = killPID(pid, 0)
		}
		// The containers' processes lose their shim but not necessarily
		// their lives: kill what is left in the pod cgroups.
		killCgroupProcs(c.CgroupRoot)
		unmountUnder(filepath.Join(c.Dir, "state"))
	}
	return nil
}

// StartDaemon starts containerd again after StopDaemon, on the same state.
func (c *Containerd) StartDaemon(ctx context.Context) error {
	if pidRunning(c.state.PID) && pidIsOurs(c.state.PID, containerdName, c.Dir) {
		return fmt.Errorf("start containerd: pid %d still runs", c.state.PID)
	}
	p, err := startProcess(containerdName, mustLookPath("containerd"), []string{"--config", filepath.Join(c.Dir, "config.toml")}, c.Log, c.proc == nil)
	if err != nil {
		return err
	}
	c.state.PID = p.cmd.Process.Pid
	if c.proc != nil {
		c.proc = p
	}
	if err := c.writeState(); err != nil {
		return err
	}
	return c.waitReady(ctx, p)
}

// StopContainerdDetached stops a containerd started with Detach by an earlier
// process and cleans up everything it recorded (see Containerd.Stop). A dir
// without a containerd is not an error. Logs stay in dir.
func StopContainerdDetached(dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	dir, err := canonicalDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := readContainerdState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return teardownContainerd(dir, st, log)
}

// RunningContainerd returns the detached containerd recorded in dir if it
// still runs and answers CRI, or nil.
func RunningContainerd(ctx context.Context, dir string) (*Containerd, error) {
	dir, err := canonicalDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := readContainerdState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !pidRunning(st.PID) || !pidIsOurs(st.PID, containerdName, dir) {
		return nil, nil
	}
	c, err := containerdFromState(dir, st)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ready, _ := criReady(cctx, st.Socket); !ready {
		return nil, nil
	}
	return c, nil
}

func containerdFromState(dir string, st containerdState) (*Containerd, error) {
	subnet, err := netip.ParsePrefix(st.Subnet)
	if err != nil {
		return nil, fmt.Errorf("containerd state in %s: subnet: %w", dir, err)
	}
	return &Containerd{
		Dir: dir, Socket: st.Socket, Endpoint: "unix://" + st.Socket, Bridge: st.Bridge,
		Subnet: subnet, Gateway: subnet.Addr().Next(), Network: st.Network, CgroupRoot: st.CgroupRoot,
		Log: filepath.Join(dir, "containerd.log"), state: st, log: slog.Default(),
	}, nil
}

// mountRuntimeState puts containerd's and runc's run-time state (task
// bundles, shim addresses, runc's state.json) on tmpfs, where a host keeps
// it (/run). On this disk each pod's dozen small files, created and synced,
// cost the kernel's ext4 writeback more CPU than edged spends on the pod.
// Like /run, the state survives a restart of containerd, not a reboot.
// Where the mount is refused the state stays on disk: slower, same result.
func mountRuntimeState(dir string, log *slog.Logger) {
	for _, name := range []string{"state", "runc"} {
		p := filepath.Join(dir, name)
		err := os.MkdirAll(p, 0o711)
		if err == nil {
			err = syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0711,size=512m")
		}
		if err != nil {
			log.Warn("containerd run-time state stays on disk", "dir", p, "err", err)
		}
	}
}

// prepareContainerdDir makes dir exist and be empty, cleaning up a stopped
// (or crashed) containerd's leftovers first; a running one is refused.
func prepareContainerdDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("containerd dir: %w", err)
	}
	dir, err := canonicalDir(dir)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("containerd dir: %w", err)
	}
	if len(entries) == 0 {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(dir, containerdMarker)); err != nil {
		return "", fmt.Errorf("%w: %s is not empty and holds no containerd files", ErrDirInUse, dir)
	}
	if st, err := readContainerdState(dir); err == nil {
		if pidRunning(st.PID) && pidIsOurs(st.PID, containerdName, dir) {
			return "", fmt.Errorf("%w: containerd (pid %d) runs in %s: stop it first", ErrDirInUse, st.PID, dir)
		}
		if err := teardownContainerd(dir, st, slog.Default()); err != nil {
			return "", fmt.Errorf("containerd dir: clean up leftovers: %w", err)
		}
	}
	unmountUnder(dir)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return "", fmt.Errorf("containerd dir: clear old files: %w", err)
		}
	}
	return dir, nil
}

func readContainerdState(dir string) (containerdState, error) {
	var st containerdState
	data, err := os.ReadFile(filepath.Join(dir, containerdStateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("containerd state %s: %w", filepath.Join(dir, containerdStateFile), err)
	}
	return st, nil
}

func (c *Containerd) writeState() error {
	data, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return fmt.Errorf("containerd state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.Dir, containerdStateFile), data, 0o644); err != nil {
		return fmt.Errorf("containerd state: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeConfig writes config.toml and the CNI network config.
func (c *Containerd) writeConfig() error {
	cfg := strings.ReplaceAll(containerdConfig, "${STATE}", c.Dir)
	cfg = strings.ReplaceAll(cfg, "${PAUSE}", PauseImage)
	if err := os.WriteFile(filepath.Join(c.Dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	netd := filepath.Join(c.Dir, "cni", "net.d")
	if err := os.MkdirAll(netd, 0o755); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	conf, err := cniConfig(c.Network, c.Bridge, c.Subnet, filepath.Join(c.Dir, "cni-ipam"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(netd, "10-"+c.Network+".conflist"), conf, 0o644); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	return nil
}

// cniConfig renders the bridge network: host-local IPAM with its data under
// our state dir, no masquerading (no iptables rules), hairpin for pods
// reaching themselves through a service-like path.
func cniConfig(network, bridge string, subnet netip.Prefix, ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       network,
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      bridge,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": subnet.Addr().Next().String()}}},
				"dataDir": ipamDir,
			},
		}},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cni config: %w", err)
	}
	return data, nil
}

// waitReady polls CRI Status until the runtime and network conditions are
// true, failing early if containerd exits.
func (c *Containerd) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, containerdReadyLimit)
	defer cancel()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("containerd exited during start-up (%v); log %s:\n%s", p.err, c.Log, logTail(c.Log, 20))
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		ready, err := criReady(cctx, c.Socket)
		ccancel()
		if ready {
			return nil
		}
		last = err
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("containerd not ready after %s (last: %v); log %s:\n%s", containerdReadyLimit, last, c.Log, logTail(c.Log, 20))
		}
	}
}

// dialCRI connects to a CRI socket; the connection is lazy.
func dialCRI(sock string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", sock, err)
	}
	return conn, nil
}

// criReady reports whether CRI Status says RuntimeReady and NetworkReady.
func criReady(ctx context.Context, sock string) (bool, error) {
	if _, err := os.Stat(sock); err != nil {
		return false, err
	}
	conn, err := dialCRI(sock)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return false, err
	}
	want := map[string]bool{runtimeapi.RuntimeReady: false, runtimeapi.NetworkReady: false}
	for _, cond := range resp.GetStatus().GetConditions() {
		if _, ok := want[cond.Type]; ok {
			want[cond.Type] = cond.Status
		}
	}
	for typ, ok := range want {
		if !ok {
			return false, fmt.Errorf("CRI condition %s is false", typ)
		}
	}
	return true, nil
}

// containerdConfig is the recipe's config.toml (shared/recipes/containerd),
// with the pause image of BuildImages as the sandbox image.
const containerdConfig = `# containerd 1.6: a private instance written by internal/testenv.
version = 2
root  = "${STATE}/root"
state = "${STATE}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${STATE}/containerd.sock"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  # This VM lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj (the
  # sandbox wants -998) and fails with a misleading "can't get final child's
  # PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod netns bind mounts under our state dir instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "${STATE}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir  = "` + cniBinDir + `"
    conf_dir = "${STATE}/cni/net.d"
    max_conf_num = 1
`
