package kubeletserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
)

// fakeRuntime is an in-memory CRI with one streaming endpoint.
type fakeRuntime struct {
	mu         sync.Mutex
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	status     map[string]*runtimeapi.ContainerStatus
	stats      []*runtimeapi.ContainerStats
	streamURL  string
	execs      []*runtimeapi.ExecRequest
	forwards   []*runtimeapi.PortForwardRequest
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (f *fakeRuntime) ListPodSandbox(_ context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, s := range f.sandboxes {
		if matches(filter.GetLabelSelector(), s.Labels) && (filter.GetState() == nil || filter.GetState().State == s.State) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeRuntime) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if matches(filter.GetLabelSelector(), c.Labels) && (filter.GetState() == nil || filter.GetState().State == c.State) &&
			(filter.GetPodSandboxId() == "" || filter.GetPodSandboxId() == c.PodSandboxId) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.status[id]; st != nil {
		return st, nil
	}
	return nil, fmt.Errorf("no container %s: %w", id, cri.ErrNotFound)
}

func (f *fakeRuntime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, req)
	return f.streamURL + "/exec/token1", nil
}

func (f *fakeRuntime) Attach(_ context.Context, _ *runtimeapi.AttachRequest) (string, error) {
	return f.streamURL + "/attach/token2", nil
}

func (f *fakeRuntime) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwards = append(f.forwards, req)
	return f.streamURL + "/portforward/token3", nil
}

func (f *fakeRuntime) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats, nil
}

func (f *fakeRuntime) ImageFsInfo(context.Context) ([]*runtimeapi.FilesystemUsage, error) {
	return nil, nil
}

func podLabels(ns, pod, uid string) map[string]string {
	return map[string]string{LabelPodNamespace: ns, LabelPodName: pod, LabelPodUID: uid}
}

func containerLabels(ns, pod, uid, name string) map[string]string {
	l := podLabels(ns, pod, uid)
	l[LabelContainerName] = name
	return l
}

// addPod adds a ready sandbox with a container "main" in attempts
// 0..len(logs)-1, each logging logs[i]; the last one runs.
func (f *fakeRuntime) addPod(t *testing.T, ns, pod, uid string, logs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		f.status = map[string]*runtimeapi.ContainerStatus{}
	}
	sb := &runtimeapi.PodSandbox{Id: "sb-" + uid, State: runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: 1,
		Metadata: &runtimeapi.PodSandboxMetadata{Name: pod, Namespace: ns, Uid: uid}, Labels: podLabels(ns, pod, uid)}
	f.sandboxes = append(f.sandboxes, sb)
	dir := t.TempDir()
	for i, l := range logs {
		id := fmt.Sprintf("c-%s-%d", uid, i)
		state := runtimeapi.ContainerState_CONTAINER_EXITED
		if i == len(logs)-1 {
			state = runtimeapi.ContainerState_CONTAINER_RUNNING
		}
		path := filepath.Join(dir, fmt.Sprintf("%d.log", i))
		if err := os.WriteFile(path, []byte(l), 0o644); err != nil {
			t.Fatal(err)
		}
		f.containers = append(f.containers, &runtimeapi.Container{Id: id, PodSandboxId: sb.Id, State: state, CreatedAt: int64(10 + i),
			Metadata: &runtimeapi.ContainerMetadata{Name: "main", Attempt: uint32(i)}, Labels: containerLabels(ns, pod, uid, "main"),
			Image: &runtimeapi.ImageSpec{Image: "localhost/kubeedge/busybox:1"}})
		f.status[id] = &runtimeapi.ContainerStatus{Id: id, State: state, LogPath: path}
		f.stats = append(f.stats, &runtimeapi.ContainerStats{
			Attributes: &runtimeapi.ContainerAttributes{Id: id},
			Cpu:        &runtimeapi.CpuUsage{Timestamp: t0.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 1_500_000_000}},
			Memory:     &runtimeapi.MemoryUsage{Timestamp: t0.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: 4096}},
		})
	}
}

// testServer runs a Server whose connections come from an http.Client
// through ServeConn, like tunnels.
type testServer struct {
	srv    *Server
	ca     *pki.CA
	rt     *fakeRuntime
	cancel context.CancelFunc
	done   chan error
}

func newTestServer(t *testing.T, rt *fakeRuntime, anonymous bool) *testServer {
	t.Helper()
	ca := pkitest.NewCA(t)
	nodeCert := pkitest.NodeCert(t, ca, "edge-1")
	srv, err := New(Config{NodeName: "edge-1", AllowAnonymous: anonymous, Host: fixtureHost(t)}, Deps{
		Runtime:     rt,
		Certificate: func() *tls.Certificate { return &nodeCert },
		ClientCAs:   ca.Pool,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, ca: ca, rt: rt, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ts
}

func fixtureHost(t *testing.T) HostPaths {
	root := writeTree(t, map[string]string{
		"proc/stat": procStatFixture, "proc/meminfo": meminfo,
		"cg/cpuacct/cpuacct.usage": "2500000000\n", "cg/memory/memory.usage_in_bytes": "800000\n",
		"cg/memory/memory.stat": "total_rss 300000\ntotal_inactive_file 100000\n",
	})
	return HostPaths{ProcRoot: filepath.Join(root, "proc"), CgroupRoot: filepath.Join(root, "cg"), FsPath: root}
}

// dial hands one end of a loopback TCP pair to ServeConn and returns the
// other: what a tunnel looks like from both sides.
func (ts *testServer) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := ts.srv.ServeConn(s); err != nil {
		c.Close()
		s.Close()
		return nil, err
	}
	return c, nil
}

// client is an HTTPS client as the apiserver's kubelet client: the node's
// certificate is not verified (no --kubelet-certificate-authority), a client
// certificate is presented when given.
func (ts *testServer) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // as the apiserver without --kubelet-certificate-authority
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{DialContext: ts.dial, TLSClientConfig: tc, DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

func (ts *testServer) streamClient(t *testing.T) *http.Client {
	der, keyDER, err := ts.ca.IssueStreamClientCert("kube-apiserver-kubelet-client", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.ParseECPrivateKey(keyDER)
	return ts.client(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
}

func get(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	res, err := c.Get("https://edge-1:10350" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAuthentication(t *testing.T) {
	rt := &fakeRuntime{}
	ts := newTestServer(t, rt, false)
	if code, body := get(t, ts.client(nil), "/healthz"); code != 401 || !strings.Contains(body, "client certificate of the KubeEdge CA is required") {
		t.Fatalf("anonymous: %d %q", code, body)
	}
	node := pkitest.NodeCert(t, ts.ca, "edge-2")
	if code, body := get(t, ts.client(&node), "/healthz"); code != 403 || !strings.Contains(body, "is a node certificate") {
		t.Fatalf("node certificate: %d %q", code, body)
	}
	other := pkitest.NodeCert(t, pkitest.NewCA(t), "x")
	if _, err := ts.client(&other).Get("https://edge-1:10350/healthz"); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	if code, body := get(t, ts.streamClient(t), "/healthz"); code != 200 || body != "ok" {
		t.Fatalf("stream client: %d %q", code, body)
	}
	if code, body := get(t, ts.streamClient(t), "/configz"); code != 404 || !strings.Contains(body, `not served by the edge kubelet API of node "edge-1"`) {
		t.Fatalf("unknown path: %d %q", code, body)
	}
}

func TestLogsEndpoint(t *testing.T) {
	rt := &fakeRuntime{}
	rt.addPod(t, "default", "web", "uid-1", criLine(0, "stdout", "F", "first run"), criLine(1, "stdout", "F", "second run")+criLine(2, "stderr", "F", "oops"))
	ts := newTestServer(t, rt, true)
	c := ts.client(nil)
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/containerLogs/default/web/main", 200, "second run\noops\n"},
		{"/containerLogs/default/web/main?tailLines=1", 200, "oops\n"},
		{"/containerLogs/default/web/main?previous=true", 200, "first run\n"},
		{"/containerLogs/default/web/main?timestamps=true&limitBytes=40", 200, "2026-03-01T10:00:01.000000000Z second ru"},
		{"/containerLogs/default/web/main?stream=Stdout", 200, "second run\n"},
		{"/containerLogs/default/web/other", 400, `container "other" in pod default/web not found on node "edge-1"`},
		{"/containerLogs/default/nope/main", 400, `pod default/nope not found on node "edge-1"`},
		{"/containerLogs/default/web/main?tailLines=x", 400, `tailLines "x" is not a non-negative integer`},
	} {
		code, body := get(t, c, tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) || (code == 200 && body != tc.body) {
			t.Errorf("GET %s = %d %q; want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	rt2 := &fakeRuntime{}
	rt2.addPod(t, "default", "single", "uid-2", criLine(0, "stdout", "F", "only"))
	ts2 := newTestServer(t, rt2, true)
	if code, body := get(t, ts2.client(nil), "/containerLogs/default/single/main?previous=true"); code != 400 || !strings.Contains(body, `previous terminated container "main" in pod default/single not found`) {
		t.Errorf("previous without a restart: %d %q", code, body)
	}
}

// The upgrade proxy replays the request to the runtime's streaming URL and
// splices: here the "runtime" answers 101 and echoes upper-cased lines.
func TestExecAndPortForwardProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	seen := make(chan string, 4)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				seen <- req.Method + " " + req.URL.RequestURI() + " " + req.Header.Get("X-Stream-Protocol-Version") + " host=" + req.Host
				fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprint(c, strings.ToUpper(line))
				}
			}()
		}
	}()
	rt := &fakeRuntime{streamURL: "http://" + ln.Addr().String()}
	rt.addPod(t, "default", "web", "uid-1", criLine(0, "stdout", "F", "x"))
	ts := newTestServer(t, rt, true)

	upgrade := func(path string) (string, string) {
		t.Helper()
		c, err := ts.dial(context.Background(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
		fmt.Fprintf(tc, "POST %s HTTP/1.1\r\nHost: edge-1:10350\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\nhello early\n", path)
		br := bufio.NewReader(tc)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 101 {
			b, _ := io.ReadAll(res.Body)
			return res.Status, string(b)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return res.Status, line
	}
	status, echoed := upgrade("/exec/default/web/main?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1&error=1")
	if status != "101 Switching Protocols" || echoed != "HELLO EARLY\n" {
		t.Fatalf("exec upgrade: %q %q", status, echoed)
	}
	if got := <-seen; got != "POST /exec/token1 v4.channel.k8s.io host="+ln.Addr().String() {
		t.Fatalf("runtime saw %q", got)
	}
	rt.mu.Lock()
	ex := rt.execs[0]
	rt.mu.Unlock()
	if ex.ContainerId != "c-uid-1-0" || strings.Join(ex.Cmd, " ") != "sh -c echo hi" || !ex.Tty || !ex.Stdin || !ex.Stdout || ex.Stderr {
		t.Fatalf("CRI exec request %+v (tty drops stderr)", ex)
	}
	status, _ = upgrade("/portForward/default/web?port=8080")
	if status != "101 Switching Protocols" {
		t.Fatalf("port-forward upgrade: %q", status)
	}
	<-seen
	rt.mu.Lock()
	pf := rt.forwards[0]
	rt.mu.Unlock()
	if pf.PodSandboxId != "sb-uid-1" || len(pf.Port) != 1 || pf.Port[0] != 8080 {
		t.Fatalf("CRI port-forward request %+v", pf)
	}

	c := ts.client(nil)
	if code, body := get(t, c, "/exec/default/web/main?command=ls&output=1"); code != 400 || !strings.Contains(body, "needs an upgrade request") {
		t.Fatalf("exec without upgrade: %d %q", code, body)
	}
	if code, body := get(t, c, "/exec/default/web/main?output=1"); code != 400 || !strings.Contains(body, "missing command") {
		t.Fatalf("exec without command: %d %q", code, body)
	}
	if code, body := get(t, c, "/exec/default/web/main?command=ls"); code != 400 || !strings.Contains(body, "at least one of stdin") {
		t.Fatalf("exec without streams: %d %q", code, body)
	}
	if code, body := get(t, c, "/portForward/default/web?port=0"); code != 400 || !strings.Contains(body, `port "0"`) {
		t.Fatalf("bad port: %d %q", code, body)
	}
}

func TestStatsAndMetrics(t *testing.T) {
	rt := &fakeRuntime{}
	rt.addPod(t, "kube-system", "agent", "uid-9", criLine(0, "stdout", "F", "x"))
	ts := newTestServer(t, rt, true)
	c := ts.client(nil)

	code, body := get(t, c, "/stats/summary")
	if code != 200 {
		t.Fatalf("summary: %d %s", code, body)
	}
	var sum statsapi.Summary
	if err := json.Unmarshal([]byte(body), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Node.NodeName != "edge-1" || *sum.Node.CPU.UsageCoreNanoSeconds != 2500000000 || *sum.Node.Memory.WorkingSetBytes != 700000 {
		t.Fatalf("node stats %+v cpu %+v mem %+v", sum.Node, sum.Node.CPU, sum.Node.Memory)
	}
	if len(sum.Pods) != 1 || sum.Pods[0].PodRef != (statsapi.PodReference{Name: "agent", Namespace: "kube-system", UID: "uid-9"}) ||
		len(sum.Pods[0].Containers) != 1 || sum.Pods[0].Containers[0].Name != "main" || *sum.Pods[0].Containers[0].CPU.UsageCoreNanoSeconds != 1500000000 {
		t.Fatalf("pod stats %+v", sum.Pods)
	}

	code, body = get(t, c, "/metrics/resource")
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	ms := t0.UnixMilli()
	for _, want := range []string{
		"# TYPE container_cpu_usage_seconds_total counter\n",
		fmt.Sprintf("container_cpu_usage_seconds_total{container=\"main\",namespace=\"kube-system\",pod=\"agent\"} 1.5 %d\n", ms),
		fmt.Sprintf("container_memory_working_set_bytes{container=\"main\",namespace=\"kube-system\",pod=\"agent\"} 4096 %d\n", ms),
		fmt.Sprintf("container_start_time_seconds{container=\"main\",namespace=\"kube-system\",pod=\"agent\"} 1e-08 %d\n", ms),
		"# TYPE node_cpu_usage_seconds_total counter\n",
		"node_cpu_usage_seconds_total 2.5 ",
		"node_memory_working_set_bytes 700000 ",
		fmt.Sprintf("pod_cpu_usage_seconds_total{namespace=\"kube-system\",pod=\"agent\"} 1.5 %d\n", ms),
		"resource_scrape_error 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	checkMetricsServerParse(t, body)

	code, body = get(t, c, "/pods")
	if code != 200 || !strings.Contains(body, `"name":"agent","namespace":"kube-system","uid":"uid-9"`) || !strings.Contains(body, `"phase":"Running"`) {
		t.Fatalf("pods: %d %s", code, body)
	}
}

// checkMetricsServerParse applies metrics-server v0.7's acceptance rules to
// the text: every series line is "name{labels} value timestamp", container
// series carry container, pod and namespace labels, and the node and every
// container have non-zero CPU and memory (else metrics-server drops them).
func checkMetricsServerParse(t *testing.T, text string) {
	t.Helper()
	series := regexp.MustCompile(`^([a-z_]+)(\{[^}]*\})? ([-+0-9.e]+)( [0-9]+)?$`)
	label := regexp.MustCompile(`(container|pod|namespace)="([^"]*)"`)
	node := map[string]bool{}
	ctr := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := series.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a Prometheus series line: %q", line)
		}
		name, labels, value := m[1], m[2], m[3]
		if name != "resource_scrape_error" && m[4] == "" {
			t.Errorf("series without a timestamp: %q", line)
		}
		switch name {
		case "node_cpu_usage_seconds_total", "node_memory_working_set_bytes":
			node[name] = value != "0"
		case "container_cpu_usage_seconds_total", "container_memory_working_set_bytes":
			got := map[string]string{}
			for _, l := range label.FindAllStringSubmatch(labels, -1) {
				got[l[1]] = l[2]
			}
			if len(got) != 3 {
				t.Errorf("container series without container/pod/namespace: %q", line)
			}
			key := got["namespace"] + "/" + got["pod"] + "/" + got["container"]
			if ctr[key] == nil {
				ctr[key] = map[string]bool{}
			}
			ctr[key][name] = value != "0"
		}
	}
	if !node["node_cpu_usage_seconds_total"] || !node["node_memory_working_set_bytes"] {
		t.Errorf("node metrics incomplete: %v", node)
	}
	if len(ctr) == 0 {
		t.Errorf("no container metrics")
	}
	for k, v := range ctr {
		if !v["container_cpu_usage_seconds_total"] || !v["container_memory_working_set_bytes"] {
			t.Errorf("container %s metrics incomplete: %v", k, v)
		}
	}
}

func TestEscapeLabel(t *testing.T) {
	if got := escapeLabel("a\"b\\c\nd"); got != `a\"b\\c\nd` {
		t.Fatalf("escapeLabel = %q", got)
	}
}
