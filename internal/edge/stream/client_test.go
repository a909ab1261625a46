package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// fakeCloud is a tunnel port that accepts ids in ok and refuses the rest,
// then writes "welcome" on accepted tunnels.
type fakeCloud struct {
	ln    net.Listener
	ca    *pki.CA
	ok    sync.Map // id -> true
	hello chan string
	wg    sync.WaitGroup
}

func newFakeCloud(t *testing.T) (*fakeCloud, *tls.Config) {
	ca := pkitest.NewCA(t)
	srv := pkitest.ServerCert(t, ca)
	node := pkitest.NodeCert(t, ca, "edge-a")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCloud{ln: ln, ca: ca, hello: make(chan string, 16)}
	fc.wg.Add(1)
	go func() {
		defer fc.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc.wg.Add(1)
			go func() {
				defer fc.wg.Done()
				defer c.Close()
				h, err := tunnel.ReadHello(c)
				if err != nil {
					return
				}
				if h.CSR != nil {
					csr, err := x509.ParseCertificateRequest(h.CSR)
					if err != nil {
						return
					}
					der, err := fc.ca.SignKubeletServingCSR(csr, "edge-a", []string{"edge-a"}, []net.IP{net.IPv4(10, 0, 0, 7)}, time.Now(), time.Hour)
					_ = tunnel.WriteCertReply(c, der, err)
					return
				}
				id := h.StreamID
				fc.hello <- id
				if _, ok := fc.ok.Load(id); !ok {
					_ = tunnel.WriteReply(c, errors.New("unknown or expired stream id"))
					return
				}
				_ = tunnel.WriteReply(c, nil)
				_, _ = c.Write([]byte("welcome"))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		fc.wg.Wait()
	})
	return fc, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{node}}
}

func request(t *testing.T, id string) wire.Message {
	t.Helper()
	m, err := wire.NewStreamRequest(time.Now(), wire.StreamRequest{ID: id, Service: wire.StreamServiceKubelet})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOpensTunnelAndHandsItOver(t *testing.T) {
	fc, tc := newFakeCloud(t)
	served := make(chan string, 1)
	c, err := New(Config{Server: fc.ln.Addr().String()}, Deps{
		TLS: func() *tls.Config { return tc },
		Serve: func(conn net.Conn) error {
			b, _ := io.ReadAll(conn)
			conn.Close()
			served <- string(b)
			return nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	good := wire.NewStreamID()
	fc.ok.Store(good, true)
	if err := c.HandleMessage(request(t, good)); err != nil {
		t.Fatal(err)
	}
	if got := <-fc.hello; got != good {
		t.Fatalf("hello %q, want %q", got, good)
	}
	if got := <-served; got != "welcome" {
		t.Fatalf("the kubelet server got %q, want the bytes after the reply", got)
	}
	// A refused stream never reaches Serve.
	bad := wire.NewStreamID()
	if err := c.HandleMessage(request(t, bad)); err != nil {
		t.Fatal(err)
	}
	<-fc.hello
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Failed != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := c.Stats(); st.Opened != 1 {
		t.Fatalf("stats %+v", st)
	}
	select {
	case s := <-served:
		t.Fatalf("a refused stream was served: %q", s)
	default:
	}
}

func TestServingCertificate(t *testing.T) {
	fc, tc := newFakeCloud(t)
	c, err := New(Config{Server: fc.ln.Addr().String(), NodeName: "edge-a"}, Deps{
		TLS: func() *tls.Config { return tc }, Serve: func(net.Conn) error { return nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if c.ServingCert() != nil {
		t.Fatal("a serving certificate before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(30 * time.Second)
	for c.ServingCert() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no serving certificate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	leaf := c.ServingCert().Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: fc.ca.Pool(), DNSName: "10.0.0.7"}); err != nil {
		t.Fatalf("serving certificate: %v", err)
	}
	if leaf.Subject.CommonName != "system:node:edge-a" {
		t.Fatalf("CN %q", leaf.Subject.CommonName)
	}
}

func TestHandleMessageRefuses(t *testing.T) {
	c, err := New(Config{Server: "127.0.0.1:1", MaxConcurrent: 1}, Deps{
		TLS: func() *tls.Config { return &tls.Config{} }, Serve: func(net.Conn) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	m := request(t, wire.NewStreamID())
	m.Content = []byte(`{"id":"x"}`)
	if err := c.HandleMessage(m); !errors.Is(err, wire.ErrBadStreamRequest) {
		t.Fatalf("bad request: %v", err)
	}
	// Run is not started: the queue of one fills.
	if err := c.HandleMessage(request(t, wire.NewStreamID())); err != nil {
		t.Fatal(err)
	}
	if err := c.HandleMessage(request(t, wire.NewStreamID())); !errors.Is(err, ErrBusy) {
		t.Fatalf("second request: %v, want ErrBusy", err)
	}
	if _, err := New(Config{Server: "no-port"}, Deps{TLS: func() *tls.Config { return nil }, Serve: func(net.Conn) error { return nil }}); err == nil || !strings.Contains(err.Error(), "not host:port") {
		t.Fatalf("New with a bad server: %v", err)
	}
}
