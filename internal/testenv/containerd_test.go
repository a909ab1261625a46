package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerdRunsPodAndCleansUp runs a pod-network sandbox with a busybox
// container on the private containerd, checks its IP is on the test's bridge
// and that exec works, then checks Stop leaves no shim, cgroup, mount or
// bridge behind.
func TestContainerdRunsPodAndCleansUp(t *testing.T) {
	c := ContainerdForTest(t, ContainerdOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, err := dialCRI(c.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	parent := c.CgroupRoot + "/kubepods/podtest-uid"
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "default", Uid: "test-uid"},
		Hostname:     "p",
		LogDirectory: filepath.Join(c.Dir, "logs"),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent},
	}
	sb, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, logTail(c.Log, 20))
	}
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(st.GetStatus().GetNetwork().GetIp())
	if err != nil || !c.Subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not in the test subnet %s (%v)", st.GetStatus().GetNetwork().GetIp(), c.Subnet, err)
	}
	cr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sb.PodSandboxId,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: BusyboxImage},
			Command:  []string{"httpd", "-f", "-p", "8080", "-h", "/tmp"},
			LogPath:  "c/0.log",
			Linux:    &runtimeapi.LinuxContainerConfig{},
		},
		SandboxConfig: sbCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	ex, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"sh", "-c", "id -u; ls -ld /tmp"}, Timeout: 10})
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if got := string(ex.Stdout); ex.ExitCode != 0 || !strings.HasPrefix(got, "0\ndrwxrwxrwt") {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", ex.ExitCode, got, ex.Stderr)
	}
	if _, err := os.Stat(filepath.Join(cgroupFS, "memory", parent)); err != nil {
		t.Fatalf("pod cgroup: %v", err)
	}
	// Reach the pod from the host through the bridge (the only traffic the
	// test sends, and only to its own subnet): any HTTP answer will do.
	if err := pollHTTP(ctx, "http://"+netip.AddrPortFrom(ip, 8080).String()+"/"); err != nil {
		t.Fatalf("pod on the bridge is unreachable: %v", err)
	}

	shims := shimPIDs(c.Socket)
	if len(shims) == 0 {
		t.Fatal("no shim found for the running sandbox")
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range shims {
		if pidRunning(pid) {
			t.Errorf("shim %d still runs after Stop", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(cgroupFS, "memory", c.CgroupRoot)); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still exists after Stop (%v)", c.CgroupRoot, err)
	}
	if out, _ := exec.Command("ip", "link", "show", c.Bridge).CombinedOutput(); !bytes.Contains(out, []byte("does not exist")) {
		t.Errorf("bridge %s still exists after Stop: %s", c.Bridge, out)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mi, []byte(c.Dir+"/")) {
		t.Errorf("mounts under %s remain after Stop", c.Dir)
	}
	matches, _ := filepath.Glob(filepath.Join(cniResultsDir, c.Network+"-*"))
	if len(matches) > 0 {
		t.Errorf("CNI results remain: %v", matches)
	}
	// A second Stop (the t.Cleanup) must be harmless.
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestContainerdDetached starts a detached instance the way `make up` does and
// stops it from its directory alone.
func TestContainerdDetached(t *testing.T) {
	err := ContainerdPreconditions()
	Require(t, err == nil, errString(err))
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := StartContainerd(t.Context(), ContainerdOptions{Dir: dir, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop() // only matters if an assertion below fails
	running, err := RunningContainerd(t.Context(), dir)
	if err != nil || running == nil {
		t.Fatalf("RunningContainerd = %v, %v; want the instance", running, err)
	}
	if running.Socket != c.Socket || running.Bridge != c.Bridge || running.Subnet != c.Subnet {
		t.Errorf("RunningContainerd = %+v; want %+v", running, c)
	}
	if _, err := StartContainerd(t.Context(), ContainerdOptions{Dir: dir}); err == nil {
		t.Fatal("second StartContainerd on a running dir succeeded")
	}
	pid := c.PID()
	if err := StopContainerdDetached(dir, nil); err != nil {
		t.Fatal(err)
	}
	if pidRunning(pid) {
		t.Errorf("containerd %d still runs", pid)
	}
	if running, _ := RunningContainerd(t.Context(), dir); running != nil {
		t.Errorf("RunningContainerd after stop = %+v", running)
	}
	if err := StopContainerdDetached(dir, nil); err != nil {
		t.Errorf("second StopContainerdDetached: %v", err)
	}
}

func pollHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if perr := pause(ctx, 100*time.Millisecond); perr != nil {
			return err
		}
	}
}

func TestIsShimOf(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want bool
	}{
		{"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00-id\x00abc\x00-address\x00/tmp/ke1/containerd.sock\x00", true},
		{"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00-id\x00abc\x00-address\x00/run/containerd/containerd.sock\x00", false},
		{"/usr/bin/containerd\x00-address\x00/tmp/ke1/containerd.sock\x00", false},
		{"", false},
	} {
		if got := isShimOf([]byte(tc.cmd), "/tmp/ke1/containerd.sock"); got != tc.want {
			t.Errorf("isShimOf(%q) = %v, want %v", tc.cmd, got, tc.want)
		}
	}
}

func TestParseProcRoutes(t *testing.T) {
	data := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"kebr3\t0003F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"garbage\n"
	got := parseProcRoutes(data)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.244.3.0/24")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("parseProcRoutes (-want +got):\n%s", diff)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
	if got := unescapeMountPath(`/plain`); got != `/plain` {
		t.Errorf("got %q", got)
	}
}

func TestCNIConfig(t *testing.T) {
	data, err := cniConfig("ke-pods-3", "kebr3", netip.MustParsePrefix("10.244.3.0/24"), "/tmp/ke1/cni-ipam")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPMasq bool   `json:"ipMasq"`
			IPAM   struct {
				Ranges  [][]map[string]string `json:"ranges"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != "ke-pods-3" || len(conf.Plugins) != 1 || conf.Plugins[0].Bridge != "kebr3" || conf.Plugins[0].IPMasq ||
		conf.Plugins[0].IPAM.Ranges[0][0]["subnet"] != "10.244.3.0/24" || conf.Plugins[0].IPAM.Ranges[0][0]["gateway"] != "10.244.3.1" {
		t.Errorf("unexpected CNI config:\n%s", data)
	}
}

func TestLayerTarIsDeterministic(t *testing.T) {
	entries := []layerEntry{
		{path: "usr/bin/sh", link: "/bin/busybox"},
		{path: "bin/busybox", mode: 0o755, data: []byte("x")},
		{path: "tmp", dir: true, mode: 0o1777},
	}
	a, err := layerTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	b, err := layerTar([]layerEntry{entries[2], entries[0], entries[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("layer tar depends on entry order")
	}
}
