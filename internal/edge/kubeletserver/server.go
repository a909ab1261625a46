package kubeletserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// Runtime is the part of CRI this server uses; *cri.Client implements it.
type Runtime interface {
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ContainerStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error)
	Exec(ctx context.Context, req *runtimeapi.ExecRequest) (string, error)
	Attach(ctx context.Context, req *runtimeapi.AttachRequest) (string, error)
	PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (string, error)
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
	ImageFsInfo(ctx context.Context) ([]*runtimeapi.FilesystemUsage, error)
}

var _ Runtime = (*cri.Client)(nil)

// Config tunes the server.
type Config struct {
	// NodeName is the node this server speaks for (stats, errors).
	NodeName string
	// AllowAnonymous serves requests without a verified client certificate
	// that Authorize accepts. Off by default: only the kube-apiserver (its
	// --kubelet-client-certificate) and other stream clients may call.
	AllowAnonymous bool
	// LogPollInterval is how often a followed log is checked for new data.
	LogPollInterval time.Duration
	// StreamDialTimeout bounds the connection to the runtime's streaming
	// server.
	StreamDialTimeout time.Duration
	// Host says where node statistics come from; zero value: this host.
	Host HostPaths
}

// Deps are the server's collaborators.
type Deps struct {
	Runtime Runtime
	// Certificate returns the certificate to serve (the node certificate);
	// it is called per handshake so rotation applies.
	Certificate func() *tls.Certificate
	// ClientCAs returns the pool client certificates must chain to (the
	// KubeEdge CA).
	ClientCAs func() *x509.CertPool
	// Authorize accepts or refuses a verified client certificate; default
	// pki.AuthorizeStreamClient.
	Authorize func(*x509.Certificate) error
	// Pods, if set, lists the node's pods for /pods (edged's view);
	// otherwise they are derived from CRI sandboxes.
	Pods func(ctx context.Context) ([]byte, error)
	// ContainerID, if set, picks the container instance a request means
	// (edged knows it from the pod's status, as the kubelet does: for logs
	// of a pod in back-off, the last terminated instance). It returns ""
	// and no error when it has no opinion; an error is a clear "not found"
	// for the caller. Without it the newest CRI instance is used.
	ContainerID func(ctx context.Context, ns, pod, container string, previous bool) (string, error)
	Clock       clock.Clock
	// Dial reaches the runtime's streaming server; default a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Server is the edge's kubelet API server. It listens on nothing: Run
// serves the connections ServeConn hands it (tunnels from CloudStream).
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	ln   *connListener
	mux  *http.ServeMux

	mu       sync.Mutex
	hijacked map[net.Conn]struct{} // guarded by mu; upgraded streams, closed on shutdown
	closing  bool                  // guarded by mu
	lastCPU  cpuSample             // guarded by mu; for usageNanoCores
	handlers sync.WaitGroup        // request handlers and spliced streams

	handshakes sync.WaitGroup // ServeConn's TLS handshakes
}

// New validates cfg and deps.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("kubeletserver: NodeName is required")
	}
	if deps.Runtime == nil || deps.Certificate == nil {
		return nil, errors.New("kubeletserver: Runtime and Certificate are required")
	}
	if !cfg.AllowAnonymous && deps.ClientCAs == nil {
		return nil, errors.New("kubeletserver: ClientCAs is required unless AllowAnonymous")
	}
	if cfg.LogPollInterval <= 0 {
		cfg.LogPollInterval = 100 * time.Millisecond
	}
	if cfg.StreamDialTimeout <= 0 {
		cfg.StreamDialTimeout = 10 * time.Second
	}
	cfg.Host = cfg.Host.withDefaults()
	if deps.Authorize == nil {
		deps.Authorize = pki.AuthorizeStreamClient
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Dial == nil {
		deps.Dial = (&net.Dialer{}).DialContext
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("component", "kubeletserver"),
		ln: newConnListener(), hijacked: map[net.Conn]struct{}{}}
	s.mux = s.routes()
	return s, nil
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.serveLogs)
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		m.HandleFunc("GET "+p, s.serveExec)
		m.HandleFunc("POST "+p, s.serveExec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		m.HandleFunc("GET "+p, s.serveAttach)
		m.HandleFunc("POST "+p, s.serveAttach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		m.HandleFunc("GET "+p, s.servePortForward)
		m.HandleFunc("POST "+p, s.servePortForward)
	}
	m.HandleFunc("GET /stats/summary", s.serveSummary)
	m.HandleFunc("GET /metrics/resource", s.serveResourceMetrics)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	m.HandleFunc("GET /pods", s.servePods)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("%s %s is not served by the edge kubelet API of node %q", r.Method, r.URL.Path, s.cfg.NodeName), http.StatusNotFound)
	})
	return m
}

// Handler is the API without authentication (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// ServeConn hands the server a connection carrying a client's TLS session
// (a stream tunnel); the server owns it from then on. The TLS handshake runs
// on a goroutine of its own that ends afterwards, so that the goroutine
// serving the (often idle, kept-alive) connection keeps a small stack.
func (s *Server) ServeConn(c net.Conn) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("kubeletserver: shutting down")
	}
	s.handshakes.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.handshakes.Done()
		ctx, cancel := context.WithTimeout(s.ln.ctx, handshakeTimeout)
		defer cancel()
		tc := tls.Server(c, s.TLSConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			s.log.Debug("TLS handshake on a tunnel failed", "err", err)
			_ = c.Close()
			return
		}
		if err := s.ln.deliver(tc); err != nil {
			_ = tc.Close()
		}
	}()
	return nil
}

// handshakeTimeout bounds a client's TLS handshake on a tunnel.
const handshakeTimeout = 30 * time.Second

// TLSConfig is the server side of the client's TLS session: the node
// certificate, HTTP/1.1 only (upgrades need it), and client certificates
// verified against the KubeEdge CA when given.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert := s.deps.Certificate()
			if cert == nil {
				return nil, errors.New("kubeletserver: no node certificate yet")
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
				Certificates: []tls.Certificate{*cert}, ClientAuth: tls.VerifyClientCertIfGiven}
			if s.deps.ClientCAs != nil {
				c.ClientCAs = s.deps.ClientCAs()
			}
			return c, nil
		},
	}
}

// Run serves handed-over connections until ctx is done, then closes every
// connection and waits for handlers.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.authenticate(s.mux),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }() // connections arrive as *tls.Conn, handshake done
	<-ctx.Done()
	s.mu.Lock()
	s.closing = true // no new handshakes, handlers or hijacks
	s.mu.Unlock()
	_ = srv.Close() // closes the listener and every connection not hijacked
	err := <-errc
	s.handshakes.Wait()
	s.mu.Lock()
	for c := range s.hijacked {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.handlers.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("kubeletserver: %w", err)
}

// authenticate requires a verified client certificate that Authorize
// accepts, unless anonymous access is allowed. It also counts handlers.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		if !s.cfg.AllowAnonymous {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				http.Error(w, "a client certificate of the KubeEdge CA is required (kube-apiserver --kubelet-client-certificate, see docs/streams.md)", http.StatusUnauthorized)
				return
			}
			if err := s.deps.Authorize(r.TLS.PeerCertificates[0]); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// httpError writes err with the status its kind maps to.
func (s *Server) httpError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, cri.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, cri.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		s.log.Warn("request failed", "path", r.URL.Path, "err", err)
	}
	http.Error(w, err.Error(), code)
}

// errBadRequest marks errors about the request; it maps to 400.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// connListener is a net.Listener fed by deliver; ctx ends when it closes.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func newConnListener() *connListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{}), ctx: ctx, cancel: cancel}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.cancel()
	})
	return nil
}

func (l *connListener) Addr() net.Addr { return tunnelAddr{} }

func (l *connListener) deliver(c net.Conn) error {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return errors.New("kubeletserver: not running")
	case <-t.C:
		return errors.New("kubeletserver: not accepting connections")
	}
}

// tunnelAddr names the listener that has no socket.
type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "tunnel" }
func (tunnelAddr) String() string  { return "cloudstream-tunnel" }
