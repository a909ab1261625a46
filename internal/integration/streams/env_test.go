package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	cloudapp "github.com/kubeedge-go/kubeedge/internal/cloud/app"
	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	edgeapp "github.com/kubeedge-go/kubeedge/internal/edge/app"
	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver/kstest"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

func testLogger(t testing.TB, name string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("KUBEEDGE_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("proc", name)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hubPorts are cloudcore's CloudHub ports (websocket, quic, https).
type hubPorts struct{ ws, quic, https int }

func freeHubPorts(t testing.TB) hubPorts {
	t.Helper()
	var ps []int
	for len(ps) < 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			_ = u.Close()
			ps = append(ps, p)
		}
		_ = l.Close()
	}
	return hubPorts{ps[0], ps[1], ps[2]}
}

// world is a cloudcore with CloudStream and edgecores with EdgeStream on one
// containerd, against the shared control plane.
type world struct {
	t     testing.TB
	cp    *testenv.ControlPlane
	ctd   *testenv.Containerd
	rt    *cri.Client
	ports hubPorts
	cloud *cloudapp.CloudCore
	edges map[string]*edgeapp.EdgeCore
}

func newWorld(t testing.TB) *world {
	cp := controlPlane(t)
	ctd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	rt, err := cri.Dial(ctd.Endpoint, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	w := &world{t: t, cp: cp, ctd: ctd, rt: rt, ports: freeHubPorts(t), edges: map[string]*edgeapp.EdgeCore{}}
	w.startCloud()
	return w
}

func (w *world) startCloud() {
	t := w.t
	c := cloudconfig.Default()
	c.KubeAPIConfig.KubeConfig = w.cp.Kubeconfig
	h := &c.Modules.CloudHub
	h.WebSocket = cloudconfig.Listener{Enable: true, Address: "127.0.0.1", Port: w.ports.ws}
	h.Quic = cloudconfig.Listener{Enable: false, Address: "127.0.0.1", Port: w.ports.quic}
	h.HTTPS = cloudconfig.Listener{Enable: true, Address: "127.0.0.1", Port: w.ports.https}
	c.Modules.CloudStream.Enable = true
	c.Modules.CloudStream.Address = "127.0.0.1"
	c.Modules.CloudStream.StreamPort = shared.proxyPort
	c.Modules.CloudStream.TunnelPort = shared.tunnelPort
	cc, err := cloudapp.New(c, cloudapp.Deps{RESTConfig: w.cp.RESTConfig, Logger: testLogger(t, "cloudcore")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("cloudcore: %v", err)
		}
	})
	select {
	case <-cc.Ready():
	case err := <-done:
		t.Fatalf("cloudcore stopped before it was ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("cloudcore not ready within 90 s")
	}
	w.cloud = cc
}

func (w *world) token() string {
	var tok string
	waitFor(w.t, 60*time.Second, "the token secret", func() (bool, error) {
		s, err := w.cp.Client.CoreV1().Secrets("kubeedge").Get(context.Background(), "tokensecret", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		tok = string(s.Data["tokendata"])
		return tok != "", nil
	})
	return tok
}

// nodeIP is address .host of the test containerd's bridge subnet, where no
// pod gets an address (host-local allocates from the bottom).
func (w *world) nodeIP(host byte) string {
	a := w.ctd.Subnet.Addr().As4()
	a[3] = host
	return netip.AddrFrom4(a).String()
}

// startEdge runs edgecore for node with node IP ip and EdgeStream on.
func (w *world) startEdge(node, ip string) *edgeapp.EdgeCore {
	t := w.t
	dir := t.TempDir()
	c := edgeconfig.Default(node)
	c.Database.DataSource = filepath.Join(dir, "edgecore.db")
	c.Database.EncryptionKeyFile = filepath.Join(dir, "keys", "store.key")
	// The test creates its containers through CRI itself: edged would take
	// them for orphans. Devices and the MetaServer are not under test and
	// several edges share this process.
	c.Modules.Edged.Enable = false
	c.Modules.EventBus.Enable = false
	c.Modules.DeviceTwin.Enable = false
	c.Modules.DMI.Enable = false
	c.Modules.MetaManager.MetaServer.Enable = false
	h := &c.Modules.EdgeHub
	h.TLSCAFile = filepath.Join(dir, "ca", "rootCA.crt")
	h.TLSCertFile = filepath.Join(dir, "certs", "server.crt")
	h.TLSPrivateKeyFile = filepath.Join(dir, "certs", "server.key")
	h.Token = w.token()
	h.HTTPServer = fmt.Sprintf("https://127.0.0.1:%d", w.ports.https)
	h.WebSocket = edgeconfig.HubAddr{Enable: true, Server: fmt.Sprintf("127.0.0.1:%d", w.ports.ws)}
	h.Heartbeat = 2
	h.Reconnect = edgeconfig.Backoff{InitialMillis: 100, MaxMillis: 2000}
	c.Modules.Edged.NodeIP = ip
	c.Modules.Edged.NodeStatusUpdateFrequency = 5
	c.Modules.Edged.RemoteRuntimeEndpoint = w.ctd.Endpoint
	c.Modules.EdgeStream.Enable = true
	c.Modules.EdgeStream.Server = fmt.Sprintf("127.0.0.1:%d", shared.tunnelPort)
	ec, err := edgeapp.New(c, edgeapp.Deps{Logger: testLogger(t, "edgecore/"+node)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("edgecore %s: %v", node, err)
		}
	})
	w.edges[node] = ec
	// Ready for streams once the Node shows the kubelet port.
	waitFor(t, 90*time.Second, "node "+node+" with its kubelet port", func() (bool, error) {
		n, err := w.cp.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return n.Status.DaemonEndpoints.KubeletEndpoint.Port == 10350, nil
	})
	waitFor(t, 60*time.Second, "cloudstream to index "+node, func() (bool, error) {
		return w.cloud.StreamNodes.HasSynced(), nil
	})
	// The apiserver verifies kubelet serving certificates
	// (--kubelet-certificate-authority): wait for the edge's.
	waitFor(t, 60*time.Second, node+"'s kubelet serving certificate", func() (bool, error) {
		c := ec.Stream.ServingCert()
		return c != nil && slices.ContainsFunc(c.Leaf.IPAddresses, func(a net.IP) bool { return a.String() == ip }), nil
	})
	return ec
}

// podContainer is a container of a test pod: its API spec and CRI command.
type podContainer struct {
	name    string
	command []string
	stdin   bool
}

// runPod creates the Pod in the API bound to node, runs it through CRI with
// the kubelet's labels (as edged would), and reports it Running.
func (w *world) runPod(ns, name, node string, containers ...podContainer) *kstest.Pod {
	t := w.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{NodeName: node}}
	var specs []kstest.ContainerSpec
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c.name, Image: testenv.BusyboxImage, Command: c.command, Stdin: c.stdin})
		specs = append(specs, kstest.ContainerSpec{Name: c.name, Command: c.command, Stdin: c.stdin})
	}
	created, err := w.cp.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := kstest.RunPod(t, ctx, w.rt, w.ctd, kstest.PodSpec{Namespace: ns, Name: name, UID: string(created.UID), Containers: specs})
	// edged's job: report the pod running. cloudcore updates the pod's
	// tolerations right after binding, so read it again on a conflict.
	now := metav1.Now()
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := w.cp.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		for _, c := range containers {
			cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.name, Ready: true, Image: testenv.BusyboxImage, ContainerID: "containerd://" + pod.ContainerID(c.name),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
		}
		_, err = w.cp.Client.CoreV1().Pods(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (w *world) namespace(name string) string {
	if _, err := w.cp.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	waitFor(w.t, 60*time.Second, "the default service account in "+name, func() (bool, error) {
		_, err := w.cp.Client.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

// kubectlPath is the real kubectl of the control plane build.
func kubectlPath(t testing.TB) string {
	dir, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kubectl: %v", err)
	}
	return p
}

// kubectlResult is one finished kubectl run.
type kubectlResult struct {
	stdout, stderr string
	code           int
}

// kubectl runs kubectl with the admin kubeconfig and stdin, and waits.
func (w *world) kubectl(stdin string, args ...string) kubectlResult {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlPath(w.t), append([]string{"--kubeconfig", w.cp.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := kubectlResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		w.t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (w *world) mustKubectl(stdin string, args ...string) string {
	w.t.Helper()
	r := w.kubectl(stdin, args...)
	if r.code != 0 {
		w.t.Fatalf("kubectl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// background is a kubectl that keeps running (logs -f, port-forward,
// attach); lines of its stdout arrive on lines.
type background struct {
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
	done  chan struct{}
	err   lockedBuffer
}

// lockedBuffer is kubectl's stderr, written by exec's copier.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (w *world) kubectlBackground(args ...string) *background {
	w.t.Helper()
	cmd := exec.Command(kubectlPath(w.t), append([]string{"--kubeconfig", w.cp.Kubeconfig}, args...)...)
	b := &background{cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	cmd.Stderr = &b.err
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		defer close(b.lines)
		buf := make([]byte, 0, 4096)
		chunk := make([]byte, 4096)
		for {
			n, err := stdout.Read(chunk)
			buf = append(buf, chunk[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				b.lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	w.t.Cleanup(b.stop)
	return b
}

// next returns the next stdout line, failing after d.
func (b *background) next(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-b.lines:
		if !ok {
			t.Fatalf("kubectl ended; stderr: %s", b.err.String())
		}
		return l
	case <-time.After(d):
		t.Fatalf("no line from kubectl within %s; stderr: %s", d, b.err.String())
		return ""
	}
}

// stop kills kubectl by PID and waits for it.
func (b *background) stop() {
	if b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.done
	_ = b.cmd.Wait()
}

// waitFor polls cond every 50 ms until it is true, fails, or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if err != nil {
			last = err
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", d, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
