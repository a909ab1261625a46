package join

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// Config configures the server. Zero fields take defaults.
type Config struct {
	// Address is the listen address for Run (default ":10002").
	Address string
	// NodeCertValidity is the lifetime of issued node certificates
	// (default 365 days).
	NodeCertValidity time.Duration
	// MaxBodyBytes bounds the CSR body (default 64 KiB).
	MaxBodyBytes int64
}

// Deps are the server's collaborators. CA and ServerCert are required.
type Deps struct {
	CA         *pki.CA
	ServerCert tls.Certificate
	Clock      clock.Clock
	Logger     *slog.Logger
	// AuthorizeNode, if set, may refuse a node that authenticated
	// correctly (for example one an administrator has banned).
	AuthorizeNode func(ctx context.Context, nodeName string) error
}

// Server serves /ca.crt and /edge.crt over TLS.
type Server struct {
	cfg     Config
	deps    Deps
	handler http.Handler

	mu   sync.Mutex
	addr net.Addr // guarded by mu; set once listening
}

const shutdownTimeout = 5 * time.Second

// New validates cfg and deps and returns a server that is not yet listening.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Address == "" {
		cfg.Address = ":10002"
	}
	if cfg.NodeCertValidity == 0 {
		cfg.NodeCertValidity = pki.DefaultCertValidity
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	switch {
	case cfg.NodeCertValidity < 0:
		return nil, fmt.Errorf("join: node certificate validity must be positive, got %s", cfg.NodeCertValidity)
	case cfg.MaxBodyBytes < 0:
		return nil, fmt.Errorf("join: max body bytes must be positive, got %d", cfg.MaxBodyBytes)
	case deps.CA == nil:
		return nil, errors.New("join: Deps.CA is required")
	case len(deps.ServerCert.Certificate) == 0:
		return nil, errors.New("join: Deps.ServerCert is required")
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps}
	mux := http.NewServeMux()
	mux.HandleFunc("/ca.crt", s.handleCA)
	mux.HandleFunc("/edge.crt", s.handleEdgeCert)
	s.handler = mux
	return s, nil
}

// Handler returns the HTTP handler. Client certificates are only seen when
// it is served with TLSConfig.
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig returns the server's TLS configuration: client certificates are
// optional, and verified against the CA when given.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.deps.ServerCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.deps.CA.Pool(),
		Time:         s.deps.Clock.Now,
	}
}

// Addr returns the address the server listens on, or nil before it listens.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens on Config.Address and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("join: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves TLS on ln until ctx is done, then shuts down gracefully. It
// closes ln and returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.deps.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("join: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("join: shutdown: %w", err)
	}
	return nil
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.refuse(w, r, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed, use GET", r.Method))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(s.deps.CA.CertDER)
}

func (s *Server) handleEdgeCert(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		s.refuse(w, r, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed, use GET or POST", r.Method))
		return
	}
	node := r.Header.Get("NodeName")
	if node == "" {
		s.refuse(w, r, http.StatusBadRequest, "", "missing NodeName header")
		return
	}
	if err := pki.ValidateNodeName(node); err != nil {
		s.refuse(w, r, http.StatusBadRequest, node, "invalid NodeName header: "+err.Error())
		return
	}
	via, code, err := s.authenticate(r, node)
	if err != nil {
		s.refuse(w, r, code, node, err.Error())
		return
	}
	if s.deps.AuthorizeNode != nil {
		if err := s.deps.AuthorizeNode(r.Context(), node); err != nil {
			s.refuse(w, r, http.StatusForbidden, node, fmt.Sprintf("node %q is not authorized: %v", node, err))
			return
		}
	}

	tooLarge := fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, node, tooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, node, tooLarge)
		} else {
			s.refuse(w, r, http.StatusBadRequest, node, "reading body: "+err.Error())
		}
		return
	}
	csr, err := pki.ParseCSR(body)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, node, err.Error())
		return
	}
	der, err := s.deps.CA.SignNodeCSR(csr, node, s.deps.Clock.Now(), s.cfg.NodeCertValidity)
	switch {
	case errors.Is(err, pki.ErrCSRIdentity):
		s.refuse(w, r, http.StatusForbidden, node, err.Error())
		return
	case errors.Is(err, pki.ErrCSRInvalid):
		s.refuse(w, r, http.StatusBadRequest, node, err.Error())
		return
	case err != nil:
		s.deps.Logger.Error("signing node certificate failed", "node", node, "err", err)
		http.Error(w, "internal error signing the certificate", http.StatusInternalServerError)
		return
	}
	s.deps.Logger.Info("issued node certificate", "node", node, "via", via, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(der)
}

// authenticate accepts a bearer join token (the JWT, or the whole
// "<ca hash>.<jwt>" token) or, for renewal, a verified client certificate
// of the same node. It returns how the caller authenticated, or an HTTP
// status and the reason.
func (s *Server) authenticate(r *http.Request, node string) (via string, code int, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return "", http.StatusUnauthorized, errors.New(`header "Authorization" is not "Bearer <token>"`)
		}
		tok = strings.TrimSpace(tok)
		if strings.Count(tok, ".") == 3 {
			hash, jwt, err := pki.ParseToken(tok)
			if err != nil {
				return "", http.StatusUnauthorized, err
			}
			if hash != s.deps.CA.Hash() {
				return "", http.StatusUnauthorized, fmt.Errorf("token is for CA %s, this cloud's CA is %s", hash, s.deps.CA.Hash())
			}
			tok = jwt
		}
		if err := pki.VerifyJWT(tok, s.deps.CA.KeyDER, s.deps.Clock.Now()); err != nil {
			return "", http.StatusUnauthorized, err
		}
		return "token", 0, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		// The TLS layer has verified the chain to our CA.
		name, err := pki.NodeNameFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			return "", http.StatusForbidden, fmt.Errorf("client certificate is not a node certificate: %w", err)
		}
		if name != node {
			return "", http.StatusForbidden, fmt.Errorf("client certificate is for node %q, not NodeName %q", name, node)
		}
		return "client certificate", 0, nil
	}
	return "", http.StatusUnauthorized, errors.New("no credentials: send Authorization: Bearer <token>, or a node client certificate to renew")
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, node, reason string) {
	s.deps.Logger.Warn("join request refused", "path", r.URL.Path, "method", r.Method, "remote", r.RemoteAddr,
		"node", node, "status", code, "reason", reason)
	http.Error(w, reason, code)
}
