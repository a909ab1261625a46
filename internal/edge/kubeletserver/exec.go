package kubeletserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/tunnel"
)

// streamOptions are the exec/attach query flags, as the apiserver sends
// them ("1" or "true").
type streamOptions struct {
	stdin, stdout, stderr, tty bool
}

func parseStreamOptions(q url.Values) (streamOptions, error) {
	o := streamOptions{
		stdin: flag(q, "input"), stdout: flag(q, "output"), stderr: flag(q, "error"), tty: flag(q, "tty"),
	}
	if o.tty && o.stderr {
		o.stderr = false // with a TTY, stderr is merged into stdout (as the kubelet does)
	}
	if !o.stdin && !o.stdout && !o.stderr {
		return o, badRequest("you must specify at least one of stdin (input), stdout (output), stderr (error)")
	}
	return o, nil
}

func flag(q url.Values, name string) bool {
	v := q.Get(name)
	return v == "1" || strings.EqualFold(v, "true")
}

// serveExec is /exec/{ns}/{pod}[/{uid}]/{container}?command=...: CRI Exec
// gives the runtime's streaming URL, and the upgraded connection (SPDY or
// WebSocket) is proxied to it.
func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		s.httpError(w, r, badRequest("missing command: give at least one command= parameter"))
		return
	}
	o, err := parseStreamOptions(q)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	c, err := s.findContainer(r.Context(), r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"), false)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	u, err := s.deps.Runtime.Exec(r.Context(), &runtimeapi.ExecRequest{ContainerId: c.Id, Cmd: cmd,
		Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	s.proxyUpgrade(w, r, u)
}

// serveAttach is /attach/{ns}/{pod}[/{uid}]/{container}.
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	o, err := parseStreamOptions(r.URL.Query())
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	c, err := s.findContainer(r.Context(), r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"), false)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	u, err := s.deps.Runtime.Attach(r.Context(), &runtimeapi.AttachRequest{ContainerId: c.Id,
		Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	s.proxyUpgrade(w, r, u)
}

// servePortForward is /portForward/{ns}/{pod}[/{uid}]. Ports travel in the
// SPDY stream headers; WebSocket clients name them in ?port=.
func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	var ports []int32
	for _, v := range r.URL.Query()["port"] {
		for p := range strings.SplitSeq(v, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
			if err != nil || n == 0 {
				s.httpError(w, r, badRequest("port %q is not a number in 1-65535", p))
				return
			}
			ports = append(ports, int32(n))
		}
	}
	sb, err := s.findSandbox(r.Context(), r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"))
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		s.httpError(w, r, badRequest("pod %s/%s is not running", r.PathValue("ns"), r.PathValue("pod")))
		return
	}
	u, err := s.deps.Runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sb.Id, Port: ports})
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	s.proxyUpgrade(w, r, u)
}

// proxyUpgrade forwards an upgrade request to the runtime's streaming
// server at rawURL and splices the connections: the client's request is
// replayed with the runtime's path, and everything after it (the 101
// answer, SPDY or WebSocket frames) passes through untouched.
func (s *Server) proxyUpgrade(w http.ResponseWriter, r *http.Request, rawURL string) {
	if !isUpgrade(r) {
		s.httpError(w, r, badRequest("%s needs an upgrade request (SPDY/3.1 or WebSocket)", r.URL.Path))
		return
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		s.httpError(w, r, fmt.Errorf("runtime returned an unusable streaming URL %q", rawURL))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StreamDialTimeout)
	backend, err := s.deps.Dial(ctx, "tcp", u.Host)
	if err == nil && u.Scheme == "https" {
		// The runtime's own streaming server on this host, with its
		// self-signed certificate; the kubelet does not verify it either.
		tc := tls.Client(backend, &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()}) //nolint:gosec // local runtime
		if err = tc.HandshakeContext(ctx); err != nil {
			_ = backend.Close()
		}
		backend = tc
	}
	cancel()
	if err != nil {
		s.httpError(w, r, fmt.Errorf("connect to the runtime's streaming server %s: %w", u.Host, err))
		return
	}
	out := r.Clone(context.Background())
	out.URL = u
	out.Host = u.Host
	out.RequestURI = ""
	out.Body, out.ContentLength = nil, 0
	out.Header.Del("Authorization")
	if err := out.Write(backend); err != nil {
		_ = backend.Close()
		s.httpError(w, r, fmt.Errorf("forward to the runtime's streaming server: %w", err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = backend.Close()
		s.httpError(w, r, fmt.Errorf("connection cannot be upgraded"))
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		_ = backend.Close()
		s.log.Warn("hijack failed", "err", err)
		return
	}
	if !s.trackHijacked(client) {
		_ = client.Close()
		_ = backend.Close()
		return
	}
	if err := forwardBuffered(backend, brw.Reader); err != nil {
		s.untrackHijacked(client)
		_ = client.Close()
		_ = backend.Close()
		return
	}
	// Splice on a fresh goroutine: the handler's stack grew in the TLS
	// handshake, and net/http does not touch a hijacked connection.
	s.handlers.Add(1) // the handler is counted, so Run cannot be past Wait
	go func() {
		defer s.handlers.Done()
		defer s.untrackHijacked(client)
		tunnel.Splice(client, backend, time.Minute)
	}()
}

// forwardBuffered sends what the HTTP server read past the request.
func forwardBuffered(dst io.Writer, br *bufio.Reader) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		_, err := dst.Write(b)
		return err
	}
	return nil
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return r.Header.Get("Upgrade") != ""
			}
		}
	}
	return false
}

func (s *Server) trackHijacked(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.hijacked[c] = struct{}{}
	return true
}

func (s *Server) untrackHijacked(c net.Conn) {
	s.mu.Lock()
	delete(s.hijacked, c)
	s.mu.Unlock()
}
