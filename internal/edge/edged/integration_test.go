package edged

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// realHarness runs edged against a private containerd (real clock, real
// CRI), with the local busybox and pause images.
type realHarness struct {
	*harness
	ctd    *testenv.Containerd
	client *cri.Client
}

func newRealHarness(t *testing.T, mutate func(*Config)) *realHarness {
	t.Helper()
	ctd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	client, err := cri.Dial(ctd.Endpoint, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	dir, err := os.MkdirTemp("", "ked")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := newHarness(t, func(c *Config) {
		c.RemoteRuntimeEndpoint = ctd.Endpoint
		c.CgroupRoot = ctd.CgroupRoot
		c.CgroupFS = "/sys/fs/cgroup"
		c.RootDirectory = filepath.Join(dir, "root")
		c.PodLogsDirectory = filepath.Join(dir, "logs")
		c.BackOffInitial, c.BackOffMax = time.Second, 4*time.Second
		if mutate != nil {
			mutate(c)
		}
	})
	h.runtime, h.noKick = client, true
	h.logger = slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &realHarness{harness: h, ctd: ctd, client: client}
}

type tLog struct{ t *testing.T }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// exec runs cmd in the pod's container through CRI and returns stdout.
func (h *realHarness) exec(pod *corev1.Pod, container string, cmd ...string) (string, int32) {
	h.t.Helper()
	id, err := h.e.ContainerID(context.Background(), pod.Namespace, pod.Name, container, false)
	if err != nil {
		h.t.Fatalf("container id: %v", err)
	}
	out, stderr, code, err := h.client.ExecSync(context.Background(), id, cmd, 30*time.Second)
	if err != nil {
		h.t.Fatalf("exec %v: %v", cmd, err)
	}
	if code != 0 {
		h.t.Logf("exec %v: exit %d, stderr %q", cmd, code, stderr)
	}
	return string(out), code
}

func busybox(name string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: cmd}
}

// TestRealPodNetworkAndHostNetwork runs a pod on the pod network (its IP is
// on the test's bridge and answers HTTP from the host) and a host-network
// pod, and removes both.
func TestRealPodNetworkAndHostNetwork(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	pod := testPod("net", busybox("web", "httpd", "-f", "-p", "8080", "-h", "/tmp"))
	// sleep and httpd as PID 1 ignore SIGTERM: keep the SIGKILL close.
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	h.putPod(pod)
	hn := testPod("hostnet", busybox("main", "sleep", "3600"))
	hn.Spec.HostNetwork = true
	hn.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	h.putPod(hn)

	st := h.waitStatus(pod, "pod-network pod running", running("web"))
	ip, err := netip.ParseAddr(st.PodIP)
	if err != nil || !h.ctd.Subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not on the test bridge %s", st.PodIP, h.ctd.Subnet)
	}
	if !strings.HasPrefix(findStatus(st.ContainerStatuses, "web").ContainerID, "containerd://") {
		t.Errorf("container id %q", findStatus(st.ContainerStatuses, "web").ContainerID)
	}
	hst := h.waitStatus(hn, "host-network pod running", running("main"))
	if hst.PodIP != "127.0.0.1" {
		t.Errorf("host-network pod IP %q, want the node IP", hst.PodIP)
	}
	out, _ := h.exec(hn, "main", "hostname")
	host, _ := os.Hostname()
	if strings.TrimSpace(out) != host {
		t.Errorf("host-network pod hostname %q, want the node's %q", strings.TrimSpace(out), host)
	}
	out, _ = h.exec(pod, "web", "hostname")
	if strings.TrimSpace(out) != "net" {
		t.Errorf("pod hostname %q, want net", strings.TrimSpace(out))
	}

	h.deletePod(pod)
	h.deletePod(hn)
	h.eventually("pods terminated", func() bool {
		return h.rep.terminations(pod.UID) == 1 && h.rep.terminations(hn.UID) == 1
	})
	sbs, err := h.client.ListPodSandbox(context.Background(), nil)
	if err != nil || len(sbs) != 0 {
		t.Errorf("sandboxes after deletion: %d, %v", len(sbs), err)
	}
	cs, err := h.client.ListContainers(context.Background(), nil)
	if err != nil || len(cs) != 0 {
		t.Errorf("containers after deletion: %d, %v", len(cs), err)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID))); !os.IsNotExist(err) {
		t.Errorf("pod directory remains (%v)", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", h.cfg.CgroupRoot, "kubepods/besteffort/pod"+string(pod.UID))); !os.IsNotExist(err) {
		t.Errorf("pod cgroup remains (%v)", err)
	}
}
