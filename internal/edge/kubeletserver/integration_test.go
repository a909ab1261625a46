package kubeletserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver/kstest"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// TestAgainstContainerd serves the kubelet API over a real containerd: logs
// (tail, follow, previous), exec and port-forward through containerd's
// streaming server with client-go's SPDY clients (as the apiserver talks to
// kubelets), and stats.
func TestAgainstContainerd(t *testing.T) {
	ctd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	rt, err := cri.Dial(ctd.Endpoint, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	pod := kstest.RunPod(t, ctx, rt, ctd, kstest.PodSpec{Namespace: "default", Name: "web", UID: "uid-web", Containers: []kstest.ContainerSpec{
		{Name: "main", Command: []string{"sh", "-c", "echo hello-1; echo err-1 >&2; i=0; while true; i=$((i+1)); do echo tick-$i; sleep 0.2; done"}},
		{Name: "srv", Command: []string{"nc", "-ll", "-p", "8080", "-e", "echo", "hi from the pod"}},
	}})

	ca := pkitest.NewCA(t)
	nodeCert := pkitest.NodeCert(t, ca, "edge-1")
	srv, err := kubeletserver.New(kubeletserver.Config{NodeName: "edge-1"}, kubeletserver.Deps{
		Runtime: rt, Certificate: func() *tls.Certificate { return &nodeCert }, ClientCAs: ca.Pool,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOnLoopback(t, srv)
	der, keyDER, err := ca.IssueStreamClientCert("kube-apiserver-kubelet-client", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true,
		CertData: pki.EncodeCertPEM(der), KeyData: pki.EncodeKeyPEM(keyDER)}}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	base := "https://" + addr

	// Logs.
	waitBody(t, hc, base+"/containerLogs/default/web/main", "tick-2\n")
	if body := mustGet(t, hc, base+"/containerLogs/default/web/main?stream=Stderr"); body != "err-1\n" {
		t.Fatalf("stderr only: %q", body)
	}
	if body := mustGet(t, hc, base+"/containerLogs/default/web/main?tailLines=1"); !strings.HasPrefix(body, "tick-") || strings.Count(body, "\n") != 1 {
		t.Fatalf("tail 1: %q", body)
	}
	// Follow: lines keep coming.
	res, err := hc.Get(base + "/containerLogs/default/web/main?follow=true&tailLines=1")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	var followed []string
	for len(followed) < 4 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("follow: %v after %q", err, followed)
		}
		followed = append(followed, line)
	}
	res.Body.Close()
	// Restart: the previous instance's logs stay readable.
	pod.Restart(t, ctx, "main", []string{"sh", "-c", "echo second-life; sleep 3600"})
	waitBody(t, hc, base+"/containerLogs/default/web/main", "second-life\n")
	// stdout and stderr reach the log through two pipes: their order may vary.
	if body := mustGet(t, hc, base+"/containerLogs/default/web/main?previous=true"); !strings.Contains(body, "hello-1\n") || !strings.Contains(body, "err-1\n") || !strings.Contains(body, "tick-1\n") {
		t.Fatalf("previous: %q", body)
	}

	// Exec through containerd's streaming server, with client-go's SPDY executor.
	run := func(cmd []string, stdin string, tty bool) (string, error) {
		q := url.Values{"command": cmd, "output": {"1"}, "error": {"1"}}
		if stdin != "" {
			q.Set("input", "1")
		}
		if tty {
			q.Set("tty", "1")
		}
		u, _ := url.Parse(base + "/exec/default/web/main?" + q.Encode())
		ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			return "", err
		}
		var out, errOut bytes.Buffer // written concurrently: one each
		opts := remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut, Tty: tty}
		if tty {
			opts.Stderr = nil
		}
		if stdin != "" {
			opts.Stdin = strings.NewReader(stdin)
		}
		err = ex.StreamWithContext(ctx, opts)
		return out.String() + errOut.String(), err
	}
	if out, err := run([]string{"sh", "-c", "echo out; sleep 0.1; echo err >&2"}, "", false); err != nil || out != "out\nerr\n" {
		t.Fatalf("exec: %q, %v", out, err)
	}
	_, err = run([]string{"sh", "-c", "exit 7"}, "", false)
	var ce utilexec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 7 {
		t.Fatalf("exec exit 7: %v", err)
	}
	if out, err := run([]string{"cat"}, "from stdin\n", false); err != nil || out != "from stdin\n" {
		t.Fatalf("exec with stdin: %q, %v", out, err)
	}
	if out, err := run([]string{"tty"}, "", true); err != nil || !strings.HasPrefix(out, "/dev/pts/") {
		t.Fatalf("exec with a tty: %q, %v", out, err)
	}

	// Port-forward to the pod's port 8080 (in its own network namespace).
	u, _ := url.Parse(base + "/portForward/default/web")
	rtr, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rtr}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fwDone := make(chan error, 1)
	go func() { fwDone <- fw.ForwardPorts() }()
	<-ready
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("ports %v, %v", ports, err)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != "hi from the pod\n" {
			t.Fatalf("port-forward connection %d read %q, %v", i, got, err)
		}
	}
	close(stop)
	if err := <-fwDone; err != nil {
		t.Fatalf("ForwardPorts: %v", err)
	}

	// Stats from containerd.
	var sum statsapi.Summary
	if err := json.Unmarshal([]byte(mustGet(t, hc, base+"/stats/summary")), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Pods) != 1 || sum.Pods[0].PodRef.UID != "uid-web" || len(sum.Pods[0].Containers) != 2 || sum.Node.Memory == nil || *sum.Node.Memory.WorkingSetBytes == 0 {
		t.Fatalf("summary: %+v", sum)
	}
	metrics := mustGet(t, hc, base+"/metrics/resource")
	if !strings.Contains(metrics, `container_memory_working_set_bytes{container="srv",namespace="default",pod="web"} `) || !strings.Contains(metrics, "resource_scrape_error 0") {
		t.Fatalf("metrics:\n%s", metrics)
	}
}

// serveOnLoopback accepts TCP connections on 127.0.0.1 and hands them to
// srv, the way tunnels arrive.
func serveOnLoopback(t *testing.T, srv *kubeletserver.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := srv.ServeConn(c); err != nil {
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
	})
	return ln.Addr().String()
}

func mustGet(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", u, res.Status, b)
	}
	return string(b)
}

func waitBody(t *testing.T, c *http.Client, u, substr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if strings.Contains(mustGet(t, c, u), substr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never contained %q", u, substr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
