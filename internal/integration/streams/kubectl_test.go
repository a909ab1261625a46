package streams

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func sh(script string) []string { return []string{"sh", "-c", script} }

// TestKubectlThroughCloudStream drives the real kubectl against a real
// kube-apiserver whose egress selector points at CloudStream, with two edge
// nodes whose pods run in a real containerd.
//
// The nodes' InternalIPs are unused addresses of the test containerd's own
// bridge, not 127.0.0.x: the apiserver's node proxy (kubectl get --raw
// /api/v1/nodes/N/proxy/...) refuses node addresses that are not global
// unicast. No packet goes to them: the apiserver's connections go to
// CloudStream, which routes by these addresses.
func TestKubectlThroughCloudStream(t *testing.T) {
	w := newWorld(t)
	edgeA := w.startEdge("stream-a", w.nodeIP(250))
	edgeB := w.startEdge("stream-b", w.nodeIP(251))
	ns := w.namespace("streams")
	podA := w.runPod(ns, "web-a", "stream-a",
		podContainer{name: "main", command: sh("echo hello-1; echo err-1 >&2; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done")},
		podContainer{name: "srv", command: []string{"nc", "-ll", "-p", "8080", "-e", "echo", "hi from the pod"}},
		podContainer{name: "att", command: sh("while read l; do echo got:$l; done"), stdin: true},
	)
	w.runPod(ns, "web-b", "stream-b", podContainer{name: "main", command: sh("echo i am b; sleep 3600")})

	// Everything below runs with the apiserver verifying kubelet serving
	// certificates against the KubeEdge CA.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", w.cp.PIDs()["kube-apiserver"]))
	if err != nil || !strings.Contains(string(cmdline), "--kubelet-certificate-authority="+shared.files.CAFile) {
		t.Fatalf("kube-apiserver runs without --kubelet-certificate-authority: %q, %v", cmdline, err)
	}

	t.Run("logs", func(t *testing.T) {
		waitFor(t, 60*time.Second, "web-a to log two ticks", func() (bool, error) {
			r := w.kubectl("", "logs", "-n", ns, "web-a", "-c", "main")
			return strings.Contains(r.stdout, "tick-2\n"), fmt.Errorf("%s", r.stderr)
		})
		// The apiserver keeps kubelet connections alive, so a request opens
		// a tunnel only when none is idle; but never one to the other node.
		openedB := edgeB.Stream.Stats().Opened
		out := w.mustKubectl("", "logs", "-n", ns, "web-a", "-c", "main")
		// stdout and stderr reach the log through two pipes: their order may vary.
		if lines := strings.Split(out, "\n"); len(lines) < 4 || !slices.Contains(lines[:3], "hello-1") || !slices.Contains(lines[:3], "err-1") || !slices.Contains(lines[:3], "tick-1") {
			t.Fatalf("logs: %q", out)
		}
		if a, b := edgeA.Stream.Stats().Opened, edgeB.Stream.Stats().Opened; a == 0 || b != openedB {
			t.Fatalf("streams for a pod on stream-a: stream-a opened %d tunnels, stream-b %d more", a, b-openedB)
		}
		if out := w.mustKubectl("", "logs", "-n", ns, "web-a", "-c", "main", "--tail=1"); !regexp.MustCompile(`^tick-\d+\n$`).MatchString(out) {
			t.Fatalf("logs --tail=1: %q", out)
		}
		if out := w.mustKubectl("", "logs", "-n", ns, "web-a", "-c", "main", "--tail=1", "--timestamps"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tick-\d+\n$`).MatchString(out) {
			t.Fatalf("logs --timestamps: %q", out)
		}
		if got := w.mustKubectl("", "logs", "-n", ns, "web-a", "-c", "main", "--limit-bytes=3"); got != out[:3] {
			t.Fatalf("logs --limit-bytes=3: %q, want %q", got, out[:3])
		}
		if out := w.mustKubectl("", "logs", "-n", ns, "web-b"); out != "i am b\n" {
			t.Fatalf("logs of web-b: %q", out)
		}
		if edgeB.Stream.Stats().Opened == 0 {
			t.Fatalf("the stream for web-b did not go to stream-b")
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		f := w.kubectlBackground("logs", "-f", "--tail=1", "-n", ns, "web-a", "-c", "main")
		var prev int
		for i := range 4 {
			line := f.next(t, 60*time.Second)
			var n int
			if _, err := fmt.Sscanf(line, "tick-%d", &n); err != nil || (i > 0 && n != prev+1) {
				t.Fatalf("followed line %d: %q after tick-%d", i, line, prev)
			}
			prev = n
		}
		f.stop()
	})

	t.Run("exec", func(t *testing.T) {
		r := w.kubectl("", "exec", "-n", ns, "web-a", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err\n") || !strings.Contains(r.stderr, "command terminated with exit code 3") {
			t.Fatalf("exec exit 3: %+v", r)
		}
		if out := w.mustKubectl("from stdin\n", "exec", "-i", "-n", ns, "web-a", "-c", "main", "--", "cat"); out != "from stdin\n" {
			t.Fatalf("exec -i cat: %q", out)
		}
		// -t needs a terminal: run kubectl under script(1)'s pty.
		cmd := exec.Command("script", "-qec", strings.Join([]string{kubectlPath(t), "--kubeconfig", w.cp.Kubeconfig,
			"exec", "-it", "-n", ns, "web-a", "-c", "main", "--", "sh", "-c", "'tty; test -t 0 && echo stdin is a terminal'"}, " "), "/dev/null")
		// script's stdin stays open until kubectl is done: at its end script
		// would write to the pty, and the terminal's echo of that (a "^@")
		// could land between the two lines.
		stdin, keepOpen, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = stdin
		out, err := cmd.CombinedOutput()
		_ = keepOpen.Close()
		_ = stdin.Close()
		if err != nil || !regexp.MustCompile(`/dev/pts/\d+\r?\nstdin is a terminal`).Match(out) {
			t.Fatalf("exec -it: %q, %v", out, err)
		}
		if out := w.mustKubectl("", "exec", "-n", ns, "web-b", "--", "hostname"); out != "web-b\n" {
			t.Fatalf("exec in web-b: %q", out)
		}
	})

	t.Run("attach", func(t *testing.T) {
		a := w.kubectlBackground("attach", "-i", "-n", ns, "web-a", "-c", "att")
		deadline := time.Now().Add(60 * time.Second)
		for {
			// The attach may not be wired yet when the first line goes in.
			if _, err := io.WriteString(a.stdin, "hello\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case l := <-a.lines:
				if l != "got:hello" {
					t.Fatalf("attach read %q", l)
				}
				a.stop()
				return
			case <-time.After(time.Second):
			}
			if time.Now().After(deadline) {
				t.Fatalf("attach: nothing echoed; stderr: %s", a.err.String())
			}
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		pf := w.kubectlBackground("port-forward", "-n", ns, "pod/web-a", "--address", "127.0.0.1", "0:8080")
		line := pf.next(t, 60*time.Second)
		var local int
		if _, err := fmt.Sscanf(line, "Forwarding from 127.0.0.1:%d -> 8080", &local); err != nil {
			t.Fatalf("port-forward said %q", line)
		}
		for i := range 3 {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
			got, err := io.ReadAll(c)
			c.Close()
			if string(got) != "hi from the pod\n" {
				t.Fatalf("forwarded connection %d read %q, %v; kubectl: %s", i, got, err, pf.err.String())
			}
		}
		pf.stop()
	})

	t.Run("stats and metrics", func(t *testing.T) {
		for _, node := range []string{"stream-a", "stream-b"} {
			var sum statsapi.Summary
			raw := w.mustKubectl("", "get", "--raw", "/api/v1/nodes/"+node+"/proxy/stats/summary")
			if err := json.Unmarshal([]byte(raw), &sum); err != nil {
				t.Fatalf("summary of %s: %v\n%s", node, err, raw)
			}
			if sum.Node.NodeName != node || sum.Node.CPU == nil || sum.Node.Memory == nil || len(sum.Pods) < 2 {
				t.Fatalf("summary of %s: node %q, %d pods", node, sum.Node.NodeName, len(sum.Pods))
			}
		}
		m := w.mustKubectl("", "get", "--raw", "/api/v1/nodes/stream-a/proxy/metrics/resource")
		for _, want := range []string{`container_cpu_usage_seconds_total{container="srv",namespace="streams",pod="web-a"} `,
			"node_memory_working_set_bytes ", "resource_scrape_error 0"} {
			if !strings.Contains(m, want) {
				t.Fatalf("metrics/resource lacks %q:\n%s", want, m)
			}
		}
		if out := w.mustKubectl("", "get", "--raw", "/api/v1/nodes/stream-b/proxy/healthz"); out != "ok" {
			t.Fatalf("healthz: %q", out)
		}
	})

	t.Run("metrics-server through HTTPS_PROXY", func(t *testing.T) {
		// metrics-server's kubelet client is Go's net/http; with
		// HTTPS_PROXY=https://cloudcore:10003 it sends CONNECT to CloudStream
		// with its --kubelet-client-certificate on both TLS legs.
		files, err := stream.WriteClientFiles(shared.ca, stream.ClientFilesOptions{Dir: t.TempDir(), CommonName: "metrics-server"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		proxy, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", shared.proxyPort))
		// As metrics-server --kubelet-certificate-authority=<KubeEdge CA>: Go
		// verifies CloudStream's certificate on the proxy leg and the edge's
		// kubelet serving certificate (issued by CloudStream) on the inner one.
		tr := &http.Transport{Proxy: http.ProxyURL(proxy), ForceAttemptHTTP2: false,
			TLSClientConfig: &tls.Config{RootCAs: shared.ca.Pool(), Certificates: []tls.Certificate{cert}}}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get("https://stream-a:10350/metrics/resource")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), `container_memory_working_set_bytes{container="main",namespace="streams",pod="web-a"}`) {
			t.Fatalf("scrape through the proxy: %s\n%s", res.Status, body)
		}
	})

	t.Run("previous after a restart", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		podA.Restart(t, ctx, "main", sh("echo second-life; sleep 3600"))
		waitFor(t, 60*time.Second, "the restarted container's log", func() (bool, error) {
			return w.kubectl("", "logs", "-n", ns, "web-a", "-c", "main").stdout == "second-life\n", nil
		})
		if out := w.mustKubectl("", "logs", "--previous", "-n", ns, "web-a", "-c", "main"); !strings.Contains(out, "hello-1\n") || !strings.Contains(out, "\ntick-3\n") || strings.Contains(out, "second-life") {
			t.Fatalf("logs --previous: %q", out)
		}
		r := w.kubectl("", "logs", "--previous", "-n", ns, "web-b")
		if r.code == 0 || !strings.Contains(r.stderr, `previous terminated container "main" in pod streams/web-b not found`) {
			t.Fatalf("logs --previous without a restart: %+v", r)
		}
	})

	t.Run("concurrent streams do not cross", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 4 {
			for _, p := range []struct{ pod, node string }{{"web-a", "stream-a"}, {"web-b", "stream-b"}} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					r := w.kubectl("", "exec", "-n", ns, p.pod, "-c", "main", "--", "sh", "-c", fmt.Sprintf("echo $(hostname)-%d", i))
					if want := fmt.Sprintf("%s-%d\n", p.pod, i); r.stdout != want {
						errs <- fmt.Errorf("exec %d in %s: %q (want %q), %s", i, p.pod, r.stdout, want, r.stderr)
					}
				}()
				go func() {
					defer wg.Done()
					r := w.kubectl("", "get", "--raw", "/api/v1/nodes/"+p.node+"/proxy/stats/summary")
					var sum statsapi.Summary
					if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.Node.NodeName != p.node {
						errs <- fmt.Errorf("summary of %s: node %q, %v, %s", p.node, sum.Node.NodeName, err, r.stderr)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("edge not connected", func(t *testing.T) {
		ctx := context.Background()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stream-c", Labels: map[string]string{nodes.LabelEdgeRole: ""}}}
		if _, err := w.cp.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The node lifecycle controller updates new nodes too: retry on conflict.
		waitFor(t, 30*time.Second, "stream-c's status", func() (bool, error) {
			n, err := w.cp.Client.CoreV1().Nodes().Get(ctx, "stream-c", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: w.nodeIP(252)}, {Type: corev1.NodeHostName, Address: "stream-c"}}
			n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10350
			_, err = w.cp.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err == nil, err
		})
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-c", Namespace: ns},
			Spec: corev1.PodSpec{NodeName: "stream-c", Containers: []corev1.Container{{Name: "main", Image: "localhost/kubeedge/busybox:1"}}}}
		if _, err := w.cp.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := `edge node "stream-c" is not connected to cloudcore`
		waitFor(t, 60*time.Second, "the clear error", func() (bool, error) {
			r := w.kubectl("", "logs", "-n", ns, "web-c")
			return r.code != 0 && strings.Contains(r.stderr, want), fmt.Errorf("%+v", r)
		})
		r := w.kubectl("", "exec", "-n", ns, "web-c", "--", "true")
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exec on a disconnected edge: %+v", r)
		}
	})

	t.Run("garbage on the ports", func(t *testing.T) {
		before := w.cloud.Stream.Stats()
		for _, port := range []int{shared.proxyPort, shared.tunnelPort} {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte("CONNECT 127.0.0.2:10350 HTTP/1.1\r\n\r\n\x00\xff garbage"))
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.ReadAll(c)
			c.Close()
		}
		// Edge A's own certificate with a made-up stream id.
		cert := edgeA.Certs.Current()
		tc, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", shared.tunnelPort), &tls.Config{RootCAs: shared.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{*cert}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tunnel.WriteHello(tc, wire.NewStreamID()); err != nil {
			t.Fatal(err)
		}
		if err := tunnel.ReadReply(tc); err == nil || !strings.Contains(err.Error(), "unknown or expired stream id") {
			t.Fatalf("made-up stream id: %v", err)
		}
		tc.Close()
		after := w.cloud.Stream.Stats()
		if after.ProxyRefused <= before.ProxyRefused || after.TunnelRefused < before.TunnelRefused+2 {
			t.Fatalf("refusals not counted: before %+v after %+v", before, after)
		}
		if out := w.mustKubectl("", "logs", "-n", ns, "web-b"); out != "i am b\n" {
			t.Fatalf("logs after garbage: %q", out)
		}
	})
}
