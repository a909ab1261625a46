package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	cloudapp "github.com/kubeedge-go/kubeedge/internal/cloud/app"
	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	edgeapp "github.com/kubeedge-go/kubeedge/internal/edge/app"
	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// testLogger writes to the test log at warn level (info with -v and KUBEEDGE_TEST_VERBOSE=1).
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

// ports are one cloudcore's listening ports.
type ports struct{ ws, quic, https int }

func freePorts(t testing.TB) ports {
	t.Helper()
	var ps []int
	for len(ps) < 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		// The QUIC port is UDP: make sure it is free too.
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			_ = u.Close()
			ps = append(ps, p)
		}
		_ = l.Close()
	}
	return ports{ws: ps[0], quic: ps[1], https: ps[2]}
}

// cloud is a running in-process cloudcore.
type cloud struct {
	*cloudapp.CloudCore
	t      testing.TB
	ports  ports
	cancel context.CancelFunc
	done   chan error
}

func cloudConfig(p ports, kubeconfig string) *cloudconfig.CloudCore {
	c := cloudconfig.Default()
	c.KubeAPIConfig.KubeConfig = kubeconfig
	h := &c.Modules.CloudHub
	h.WebSocket = cloudconfig.Listener{Enable: true, Address: "127.0.0.1", Port: p.ws}
	h.Quic = cloudconfig.Listener{Enable: true, Address: "127.0.0.1", Port: p.quic}
	h.HTTPS = cloudconfig.Listener{Enable: true, Address: "127.0.0.1", Port: p.https}
	c.Modules.EdgeController.RetryInitialSeconds = 2
	return c
}

func startCloud(t testing.TB, cp *testenv.ControlPlane, p ports, mutate ...func(*cloudconfig.CloudCore)) *cloud {
	t.Helper()
	c, err := launchCloud(t, cp, p, mutate...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// launchCloud starts cloudcore and waits until it is ready; safe to call
// from any goroutine.
func launchCloud(t testing.TB, cp *testenv.ControlPlane, p ports, mutate ...func(*cloudconfig.CloudCore)) (*cloud, error) {
	cfg := cloudConfig(p, cp.Kubeconfig)
	for _, m := range mutate {
		m(cfg)
	}
	cc, err := cloudapp.New(cfg, cloudapp.Deps{RESTConfig: cp.RESTConfig, Logger: testLogger(t, "cloudcore")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cloud{CloudCore: cc, t: t, ports: p, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- cc.Run(ctx) }()
	t.Cleanup(c.stop)
	select {
	case <-cc.Ready():
		return c, nil
	case err := <-c.done:
		c.cancel = nil
		return nil, fmt.Errorf("cloudcore stopped before it was ready: %w", err)
	case <-time.After(60 * time.Second):
		return nil, errors.New("cloudcore not ready within 60 s")
	}
}

// stop ends cloudcore and waits for it; idempotent.
func (c *cloud) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	if err := <-c.done; err != nil && !errors.Is(err, context.Canceled) {
		c.t.Errorf("cloudcore did not stop cleanly: %v", err)
	}
}

func token(t testing.TB, client kubernetes.Interface) string {
	t.Helper()
	var tok string
	waitFor(t, 30*time.Second, "the token secret", func() (bool, error) {
		s, err := client.CoreV1().Secrets("kubeedge").Get(context.Background(), "tokensecret", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		tok = string(s.Data["tokendata"])
		return tok != "", nil
	})
	return tok
}

// edge is a running in-process edgecore.
type edge struct {
	*edgeapp.EdgeCore
	t      testing.TB
	cfg    *edgeconfig.EdgeCore
	cancel context.CancelFunc
	done   chan error
}

func edgeConfig(t testing.TB, dir, name string, p ports, tok, transport string) *edgeconfig.EdgeCore {
	c := edgeconfig.Default(name)
	c.Database.DataSource = filepath.Join(dir, "edgecore.db")
	c.Database.EncryptionKeyFile = filepath.Join(dir, "keys", "store.key")
	c.Modules.MetaManager.MetaServer.Server = "127.0.0.1:0" // many edges in one process
	c.Modules.Edged.Enable = false                          // no container runtime; pods_test.go turns it on
	h := &c.Modules.EdgeHub
	h.TLSCAFile = filepath.Join(dir, "ca", "rootCA.crt")
	h.TLSCertFile = filepath.Join(dir, "certs", "server.crt")
	h.TLSPrivateKeyFile = filepath.Join(dir, "certs", "server.key")
	h.Token = tok
	h.HTTPServer = fmt.Sprintf("https://127.0.0.1:%d", p.https)
	h.WebSocket = edgeconfig.HubAddr{Enable: transport != "quic", Server: fmt.Sprintf("127.0.0.1:%d", p.ws)}
	h.Quic = edgeconfig.HubAddr{Enable: transport == "quic", Server: fmt.Sprintf("127.0.0.1:%d", p.quic)}
	h.Heartbeat = 2
	h.Reconnect = edgeconfig.Backoff{InitialMillis: 100, MaxMillis: 2000}
	c.Modules.Edged.NodeIP = "127.0.0.1"
	c.Modules.Edged.NodeStatusUpdateFrequency = 5
	// Several edges share this process: each gets its own broker port and
	// DMI socket (short path: unix sockets allow 107 bytes).
	c.Modules.EventBus.MqttServerInternal = "tcp://127.0.0.1:0"
	sock, err := os.MkdirTemp("", "kedmi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	c.Modules.DMI.Socket = filepath.Join(sock, "dmi.sock")
	return c
}

func startEdge(t testing.TB, cfg *edgeconfig.EdgeCore) *edge {
	t.Helper()
	ec, err := edgeapp.New(cfg, edgeapp.Deps{Logger: testLogger(t, "edgecore/"+cfg.NodeName())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &edge{EdgeCore: ec, t: t, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- ec.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

// store waits until the edge opened its store and returns it.
func (e *edge) store(t testing.TB) store.Store {
	t.Helper()
	select {
	case <-e.Ready():
		return e.Store
	case <-time.After(30 * time.Second):
		t.Fatalf("edgecore %s did not open its store within 30 s", e.cfg.NodeName())
		return nil
	}
}

func (e *edge) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.done; err != nil && !errors.Is(err, context.Canceled) {
		e.t.Errorf("edgecore did not stop cleanly: %v", err)
	}
}

// waitFor polls cond every 50 ms until it is true, fails, or the deadline passes.
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
