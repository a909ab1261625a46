package streams

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
)

// BenchmarkStreams measures streams end to end, through the real
// kube-apiserver's egress selector, CloudStream, a tunnel, EdgeStream, the
// kubelet API server and containerd's streaming server, with client-go the
// way kubectl uses it (WebSocket to the apiserver). Run it with a fixed
// count, e.g. -benchtime=200x; see docs/bench/streams.md.
func BenchmarkStreams(b *testing.B) {
	w := newWorld(b)
	w.startEdge("bench-a", w.nodeIP(250))
	ns := w.namespace("bench")
	w.runPod(ns, "bench", "bench-a",
		podContainer{name: "main", command: sh("echo ready; sleep 3600")},
		podContainer{name: "bulk", command: []string{"nc", "-ll", "-p", "8081", "-e", "head", "-c", strconv.Itoa(bulkBytes), "/dev/zero"}},
		podContainer{name: "small", command: []string{"nc", "-ll", "-p", "8082", "-e", "echo", "hi"}},
	)
	client := w.cp.Client
	cfg := rest.CopyConfig(w.cp.RESTConfig)
	cfg.QPS, cfg.Burst = 1000, 1000
	waitFor(b, 60*time.Second, "the pod's log", func() (bool, error) {
		out, err := client.CoreV1().Pods(ns).GetLogs("bench", &corev1.PodLogOptions{Container: "main"}).DoRaw(context.Background())
		return string(out) == "ready\n", err
	})

	execURL := func(cmd []string, stdin bool) string {
		return client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("bench").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "main", Command: cmd, Stdin: stdin, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL().String()
	}

	b.Run("exec-oneshot", func(b *testing.B) {
		// A whole `kubectl exec POD -- echo hi` minus the process start.
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			ex, err := remotecommand.NewWebSocketExecutor(cfg, "GET", execURL([]string{"echo", "hi"}, false))
			if err != nil {
				b.Fatal(err)
			}
			var out strings.Builder
			if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "hi\n" {
				b.Fatalf("exec: %q, %v", out.String(), err)
			}
			d = append(d, time.Since(start))
		}
		reportPercentiles(b, d)
	})

	b.Run("exec-roundtrip", func(b *testing.B) {
		// One line to `cat` and back inside an open exec session.
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		ex, err := remotecommand.NewWebSocketExecutor(cfg, "GET", execURL([]string{"cat"}, true))
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: inR, Stdout: outW})
			outW.Close()
		}()
		br := bufio.NewReader(outR)
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := io.WriteString(inW, "0123456789\n"); err != nil {
				b.Fatal(err)
			}
			if line, err := br.ReadString('\n'); err != nil || line != "0123456789\n" {
				b.Fatalf("read %q, %v", line, err)
			}
			d = append(d, time.Since(start))
		}
		inW.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		reportPercentiles(b, d)
	})

	b.Run("logs-follow-first-line", func(b *testing.B) {
		var d []time.Duration
		tail := int64(1)
		for b.Loop() {
			start := time.Now()
			rc, err := client.CoreV1().Pods(ns).GetLogs("bench", &corev1.PodLogOptions{Container: "main", Follow: true, TailLines: &tail}).Stream(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			line, err := bufio.NewReader(rc).ReadString('\n')
			d = append(d, time.Since(start))
			rc.Close()
			if err != nil || line != "ready\n" {
				b.Fatalf("first line %q, %v", line, err)
			}
		}
		reportPercentiles(b, d)
	})

	// forward starts `kubectl port-forward POD 0:port` in-process and
	// returns the local port and a stop function.
	forward := func(b *testing.B, port int) (int, func()) {
		u := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("bench").SubResource("portforward").URL()
		dialer, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
		if err != nil {
			b.Fatal(err)
		}
		stop, ready := make(chan struct{}), make(chan struct{})
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		fwDone := make(chan error, 1)
		go func() { fwDone <- fw.ForwardPorts() }()
		<-ready
		ports, err := fw.GetPorts()
		if err != nil {
			b.Fatal(err)
		}
		return int(ports[0].Local), func() {
			close(stop)
			<-fwDone
		}
	}

	b.Run("port-forward-connection", func(b *testing.B) {
		// A new connection through a running port-forward, until the
		// pod's answer and its close arrived.
		local, stop := forward(b, 8082)
		defer stop()
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
			if err != nil {
				b.Fatal(err)
			}
			got, err := io.ReadAll(c)
			c.Close()
			d = append(d, time.Since(start))
			if err != nil || string(got) != "hi\n" {
				b.Fatalf("read %q, %v", got, err)
			}
		}
		reportPercentiles(b, d)
	})

	b.Run("port-forward-throughput", func(b *testing.B) {
		local, stop := forward(b, 8081)
		var total int64
		var elapsed time.Duration
		for b.Loop() {
			start := time.Now()
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
			if err != nil {
				b.Fatal(err)
			}
			// Until the last byte: containerd then waits up to a second
			// before it closes the stream (see docs/bench/streams.md).
			n, err := io.CopyN(io.Discard, c, bulkBytes)
			elapsed += time.Since(start)
			if err != nil || n != bulkBytes {
				b.Fatalf("read %d bytes, %v", n, err)
			}
			if rest, _ := io.Copy(io.Discard, c); rest != 0 {
				b.Fatalf("%d bytes more than sent", rest)
			}
			c.Close()
			total += n
		}
		stop()
		b.ReportMetric(float64(total)/elapsed.Seconds()/1e6, "MB/s")
	})

	b.Run("tunnel-open", func(b *testing.B) {
		// What a new apiserver→kubelet connection costs here: CONNECT to
		// CloudStream, the stream request to the edge over CloudHub, the
		// edge's dial-back with TLS, then the apiserver's TLS handshake with
		// the kubelet server and one /healthz.
		cert, err := tls.LoadX509KeyPair(shared.files.CertFile, shared.files.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			c := openKubeletConnT(b, cert, "bench-a:10350")
			d = append(d, time.Since(start))
			c.Close()
		}
		reportPercentiles(b, d)
	})

	b.Run("memory-per-tunnel", func(b *testing.B) {
		// Idle kubelet connections as the apiserver holds them: CONNECT,
		// TLS to the edge's kubelet server, one request, kept alive. The
		// in-process heap holds CloudStream, EdgeStream, the kubelet server
		// and this client's own TLS state.
		const n = 200
		cert, err := tls.LoadX509KeyPair(shared.files.CertFile, shared.files.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			// The apiserver keeps its own kubelet connections alive meanwhile.
			active := w.cloud.Stream.Stats().Active
			before := heapInuse()
			goroutines := runtime.NumGoroutine()
			conns := make([]net.Conn, 0, n)
			for range n {
				conns = append(conns, openKubeletConn(b, cert, "bench-a:10350"))
			}
			waitFor(b, 60*time.Second, "every tunnel to be spliced", func() (bool, error) {
				return w.cloud.Stream.Stats().Active >= active+n, nil
			})
			after := heapInuse()
			g := runtime.NumGoroutine() - goroutines
			if p := os.Getenv("STREAMS_HEAP_PROFILE"); p != "" {
				writeHeapProfile(b, p)
			}
			for _, c := range conns {
				c.Close()
			}
			b.ReportMetric(float64(after-before)/n/1024, "KiB/tunnel")
			b.ReportMetric(float64(g)/n, "goroutines/tunnel")
			waitFor(b, 60*time.Second, "the tunnels to close", func() (bool, error) {
				return w.cloud.Stream.Stats().Active <= active, nil
			})
		}
	})

	b.Run("memory-per-exec-session", func(b *testing.B) {
		// Open `kubectl exec -i POD -- cat` sessions: this process's heap
		// per session (client-go executors, CloudStream, EdgeStream, the
		// kubelet server). The apiserver's RSS moves by megabytes with its
		// GC, more than 50 sessions add, so it is not reported.
		const n = 50
		for b.Loop() {
			heapBefore := heapInuse()
			type session struct {
				in   *io.PipeWriter
				done chan error
			}
			var ss []session
			activeBefore := w.cloud.Stream.Stats().Active
			for range n {
				inR, inW := io.Pipe()
				outR, outW := io.Pipe()
				ex, err := remotecommand.NewWebSocketExecutor(cfg, "GET", execURL([]string{"cat"}, true))
				if err != nil {
					b.Fatal(err)
				}
				s := session{in: inW, done: make(chan error, 1)}
				go func() {
					s.done <- ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: inR, Stdout: outW})
					outW.Close()
				}()
				// One round trip: the session is fully open.
				if _, err := io.WriteString(inW, "x\n"); err != nil {
					b.Fatal(err)
				}
				if line, err := bufio.NewReader(outR).ReadString('\n'); err != nil || line != "x\n" {
					b.Fatalf("session: %q, %v", line, err)
				}
				go func() { _, _ = io.Copy(io.Discard, outR) }()
				ss = append(ss, s)
			}
			heapAfter := heapInuse()
			b.ReportMetric(float64(heapAfter-heapBefore)/n/1024, "inprocess-KiB/session")
			b.ReportMetric(float64(w.cloud.Stream.Stats().Active-activeBefore)/n, "tunnels/session")
			for _, s := range ss {
				s.in.Close()
				if err := <-s.done; err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// bulkBytes is what the pod sends per port-forwarded connection.
const bulkBytes = 64 << 20

func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	pick := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pick(0.50), "p50-ms")
	b.ReportMetric(pick(0.99), "p99-ms")
}

// writeHeapProfile writes the live heap to path (for go tool pprof).
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// openKubeletConn opens one kubelet connection through CloudStream as the
// apiserver does and makes one request on it.
func openKubeletConn(b *testing.B, cert tls.Certificate, target string) net.Conn {
	return openKubeletConnT(b, cert, target)
}

func openKubeletConnT(b testing.TB, cert tls.Certificate, target string) net.Conn {
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", shared.proxyPort), &tls.Config{RootCAs: shared.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		b.Fatalf("CONNECT: %v %v", res, err)
	}
	inner := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}) //nolint:gosec // as the apiserver
	fmt.Fprintf(inner, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", target)
	res, err = http.ReadResponse(bufio.NewReader(inner), nil)
	if err != nil || res.StatusCode != 200 {
		b.Fatalf("healthz: %v %v", res, err)
	}
	body, _ := io.ReadAll(res.Body)
	if string(body) != "ok" {
		b.Fatalf("healthz: %q", body)
	}
	return inner
}
