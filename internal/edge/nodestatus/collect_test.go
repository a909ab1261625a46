package nodestatus

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func statfsBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * int64(st.Frsize)
}

func TestCollectFixture(t *testing.T) {
	dataDir := t.TempDir()
	cfg := Config{
		NodeName:       "edge-1",
		NodeIP:         "10.0.0.5",
		Labels:         map[string]string{"zone": "a", LabelHostname: "custom", LabelEdgeRole: "overridden"},
		MaxPods:        50,
		DataDir:        dataDir,
		KubeletVersion: "v1.35.4-kubeedge",
		KubeletPort:    10350,
		ProcRoot:       "testdata/root/proc",
		EtcRoot:        "testdata/root/etc",
	}
	got, err := Collect(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(2048000*1024, resource.BinarySI),
		corev1.ResourcePods:             resource.MustParse("50"),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(statfsBytes(t, dataDir), resource.BinarySI),
	}
	mt := metav1.NewTime(t0)
	cond := func(typ corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: mt, LastTransitionTime: mt}
	}
	want := &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: "edge-1", Labels: map[string]string{
			LabelHostname: "custom", LabelOS: runtime.GOOS, LabelArch: runtime.GOARCH,
			LabelEdgeRole: "", "zone": "a",
		}},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "10.0.0.5"},
				{Type: corev1.NodeHostName, Address: "edge-1"},
			},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:       "0123456789abcdef0123456789abcdef",
				KernelVersion:   "6.1.0-test-amd64",
				OSImage:         `Test Linux 1.0 ("quoted")`,
				KubeletVersion:  "v1.35.4-kubeedge",
				OperatingSystem: "linux",
				Architecture:    runtime.GOARCH,
			},
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "EdgeReady", "edgecore is posting ready status"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "EdgeHasSufficientMemory", "edgecore has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "EdgeHasNoDiskPressure", "edgecore has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "EdgeHasSufficientPID", "edgecore has sufficient PID available"),
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10350}},
		},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("Collect (-want +got):\n%s", diff)
	}
	if got.Status.Capacity.StorageEphemeral().Value() <= 0 {
		t.Errorf("ephemeral-storage %v, want > 0", got.Status.Capacity.StorageEphemeral())
	}
}

func TestCollectMissingOptionalFiles(t *testing.T) {
	root := t.TempDir()
	proc, etc := filepath.Join(root, "proc"), filepath.Join(root, "etc")
	for _, d := range []string{proc, etc} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal: 1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := Collect(Config{NodeName: "n", NodeIP: "192.0.2.1", MaxPods: 1, ProcRoot: proc, EtcRoot: etc}, t0)
	if err != nil {
		t.Fatal(err)
	}
	want, err := kernelRelease()
	if err != nil {
		t.Fatal(err)
	}
	info := n.Status.NodeInfo
	if info.MachineID != "" || info.OSImage != "" || info.KernelVersion != want {
		t.Errorf("NodeInfo %+v: want no machine ID, no OS image and uname's kernel %q", info, want)
	}
	if got := n.Status.Capacity.Memory().Value(); got != 1024 {
		t.Errorf("memory %d, want 1024", got)
	}
}

// TestCollectRealHost checks Collect against facts from independent sources.
func TestCollectRealHost(t *testing.T) {
	n, err := Collect(Config{NodeName: "real", MaxPods: 110, KubeletVersion: "v0"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if got, want := n.Status.Capacity.Memory().Value(), int64(si.Totalram)*int64(si.Unit); got != want {
		t.Errorf("memory %d, sysinfo says %d", got, want)
	}
	kv, err := kernelRelease()
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.NodeInfo.KernelVersion != kv {
		t.Errorf("kernel %q, uname says %q", n.Status.NodeInfo.KernelVersion, kv)
	}
	if id, err := os.ReadFile("/etc/machine-id"); err == nil && n.Status.NodeInfo.MachineID != strings.TrimSpace(string(id)) {
		t.Errorf("machine ID %q, /etc/machine-id has %q", n.Status.NodeInfo.MachineID, id)
	}
	if got, want := n.Status.Capacity.StorageEphemeral().Value(), statfsBytes(t, "/"); got != want {
		t.Errorf("ephemeral-storage %d, statfs / says %d", got, want)
	}
	ip, err := netip.ParseAddr(n.Status.Addresses[0].Address)
	if err != nil || !ip.Is4() || n.Status.Addresses[0].Type != corev1.NodeInternalIP {
		t.Errorf("first address %+v is not an InternalIP IPv4", n.Status.Addresses[0])
	}
	if n.Status.Capacity.Cpu().Value() != int64(runtime.NumCPU()) || n.Status.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v", n.Status.Capacity)
	}
}

func TestCollectErrors(t *testing.T) {
	good := Config{NodeName: "n", NodeIP: "192.0.2.1", MaxPods: 1, ProcRoot: "testdata/root/proc", EtcRoot: "testdata/root/etc"}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"empty name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"bad name", func(c *Config) { c.NodeName = "Edge_1" }, `node name "Edge_1"`},
		{"bad ip", func(c *Config) { c.NodeIP = "10.0.0" }, `NodeIP "10.0.0" is not an IP address`},
		{"no pods", func(c *Config) { c.MaxPods = 0 }, "MaxPods 0 must be positive"},
		{"bad label key", func(c *Config) { c.Labels = map[string]string{"a b": "x"} }, `label key "a b"`},
		{"bad label value", func(c *Config) { c.Labels = map[string]string{"k": "-x"} }, `label "k" value "-x"`},
		{"no meminfo", func(c *Config) { c.ProcRoot = t.TempDir() }, "nodestatus: memory: open"},
		{"no data dir", func(c *Config) { c.DataDir = "/does/not/exist" }, "statfs /does/not/exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.modify(&cfg)
			_, err := Collect(cfg, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Collect: error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestPickIPv4(t *testing.T) {
	a := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	lo := iface{name: "lo", up: true, loopback: true, addrs: a("127.0.0.1")}
	for _, tc := range []struct {
		name      string
		ifs       []iface
		preferred string
		want      string
	}{
		{"nothing", nil, "", "127.0.0.1"},
		{"loopback only", []iface{lo}, "", "127.0.0.1"},
		{"first up", []iface{lo, {name: "eth0", up: false, addrs: a("10.0.0.1")}, {name: "eth1", up: true, addrs: a("fe80::1", "169.254.0.1", "10.0.0.2")}}, "", "10.0.0.2"},
		{"preferred", []iface{lo, {name: "docker0", up: true, addrs: a("172.17.0.1")}, {name: "eth0", up: true, addrs: a("192.168.1.5")}}, "eth0", "192.168.1.5"},
		{"preferred without ipv4", []iface{{name: "docker0", up: true, addrs: a("172.17.0.1")}, {name: "eth0", up: true, addrs: a("2001:db8::1")}}, "eth0", "172.17.0.1"},
		{"mapped v4", []iface{{name: "eth0", up: true, addrs: a("::ffff:10.1.2.3")}}, "", "10.1.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickIPv4(tc.ifs, tc.preferred); got != tc.want {
				t.Errorf("pickIPv4 = %q, want %q", got, tc.want)
			}
		})
	}
}
