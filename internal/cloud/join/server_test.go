package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink the server goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	ca      *pki.CA
	clk     *clocktesting.FakeClock
	base    string
	logs    *syncBuffer
	srvCert tls.Certificate
	mu      sync.Mutex
	clients []*http.Client // guarded by mu
}

func newEnv(t *testing.T, authorize func(context.Context, string) error) *env {
	t.Helper()
	// The fake clock starts at the real time so that the client's own
	// certificate checks, which use the real clock, pass.
	now := time.Now()
	ca, err := pki.NewCA(now, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: ca, clk: clocktesting.NewFakeClock(now), logs: &syncBuffer{}}
	certDER, keyDER, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.srvCert, err = tls.X509KeyPair(pki.EncodeCertPEM(certDER), pki.EncodeKeyPEM(keyDER)); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, Deps{
		CA: ca, ServerCert: e.srvCert, Clock: e.clk,
		Logger:        slog.New(slog.NewTextHandler(e.logs, nil)),
		AuthorizeNode: authorize,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		e.mu.Lock()
		for _, c := range e.clients {
			c.CloseIdleConnections()
		}
		e.mu.Unlock()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); srv.Addr() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Addr() stayed nil after Serve started")
		}
	}
	if got := srv.Addr().String(); got != ln.Addr().String() {
		t.Fatalf("Addr() = %v, want %v", got, ln.Addr())
	}
	e.base = "https://" + ln.Addr().String()
	return e
}

// client returns an HTTP client that trusts the CA and presents certs.
func (e *env) client(certs ...tls.Certificate) *http.Client {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), Certificates: certs}}}
	e.mu.Lock()
	e.clients = append(e.clients, c)
	e.mu.Unlock()
	return c
}

type request struct {
	method, path string
	header       map[string]string
	body         io.Reader
}

func (e *env) do(t *testing.T, c *http.Client, r request) (int, []byte, http.Header) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/edge.crt"
	}
	req, err := http.NewRequest(r.method, e.base+r.path, r.body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

func csrPEM(t *testing.T, node string) []byte {
	t.Helper()
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewNodeCSR(key, node)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCSRPEM(der)
}

// nodeCert returns a client certificate for node signed by ca.
func nodeCert(t *testing.T, ca *pki.CA, node string, now time.Time) tls.Certificate {
	t.Helper()
	key, keyDER, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := pki.NewNodeCSR(key, node)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.SignNodeCSR(csr, node, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pki.EncodeCertPEM(der), pki.EncodeKeyPEM(keyDER))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func (e *env) token(t *testing.T, ttl time.Duration) (full, jwt string) {
	t.Helper()
	full, err := pki.NewToken(e.ca, e.clk.Now(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	_, jwt, err = pki.ParseToken(full)
	if err != nil {
		t.Fatal(err)
	}
	return full, jwt
}

func checkNodeCert(t *testing.T, e *env, der []byte, node string) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("response is not a DER certificate: %v (%q)", err, der)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: e.ca.Pool(), CurrentTime: e.clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	if got, err := pki.NodeNameFromCert(cert); err != nil || got != node {
		t.Errorf("issued certificate is for %q (%v), want %q", got, err, node)
	}
	return cert
}

func TestCACert(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	code, body, hdr := e.do(t, c, request{method: http.MethodGet, path: "/ca.crt"})
	if code != http.StatusOK || !bytes.Equal(body, e.ca.CertDER) {
		t.Fatalf("GET /ca.crt = %d, %d bytes; want 200 and the CA DER", code, len(body))
	}
	if ct := hdr.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if code, body, _ := e.do(t, c, request{method: http.MethodPost, path: "/ca.crt"}); code != http.StatusMethodNotAllowed || !strings.Contains(string(body), "method POST not allowed") {
		t.Errorf("POST /ca.crt = %d %q, want 405", code, body)
	}
}

func TestJoin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	full, jwt := e.token(t, time.Hour)
	for _, tc := range []struct {
		name, method, auth string
		body               []byte
	}{
		// KubeEdge's edge sends the JWT and the CSR PEM in the body of a GET.
		{"KubeEdge GET with JWT", http.MethodGet, "Bearer " + jwt, csrPEM(t, "edge-1")},
		{"POST with full token", http.MethodPost, "Bearer " + full, csrPEM(t, "edge-1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := e.do(t, c, request{method: tc.method, body: bytes.NewReader(tc.body),
				header: map[string]string{"Authorization": tc.auth, "NodeName": "edge-1"}})
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			cert := checkNodeCert(t, e, body, "edge-1")
			if got, want := cert.NotAfter, e.clk.Now().Add(365*24*time.Hour).Truncate(time.Second); !got.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", got, want)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "issued node certificate") {
		t.Errorf("no log line for the issued certificate:\n%s", e.logs)
	}
}

// unsized hides the length of a body so the client sends it chunked.
type unsized struct{ io.Reader }

func TestJoinRefusals(t *testing.T) {
	e := newEnv(t, func(_ context.Context, node string) error {
		if node == "banned" {
			return errors.New("node is banned")
		}
		return nil
	})
	c := e.client()
	_, jwt := e.token(t, time.Hour)
	other, err := pki.NewCA(e.clk.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	otherFull, err := pki.NewToken(other, e.clk.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, otherJWT, _ := pki.ParseToken(otherFull)
	big := bytes.Repeat([]byte("x"), 64<<10+1)

	for _, tc := range []struct {
		name     string
		method   string
		header   map[string]string
		body     io.Reader
		wantCode int
		want     string
	}{
		{"wrong token signature", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + otherJWT}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusUnauthorized, "not issued by this cloud's CA"},
		{"token for another CA", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + otherFull}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusUnauthorized, "token is for CA " + other.Hash()},
		{"malformed token", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer abc"}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusUnauthorized, "JWT has 1 parts"},
		{"not bearer", "", map[string]string{"NodeName": "edge-1", "Authorization": "Basic Zm9vOmJhcg=="}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusUnauthorized, `header "Authorization" is not "Bearer <token>"`},
		{"no credentials", "", map[string]string{"NodeName": "edge-1"}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusUnauthorized, "no credentials"},
		{"missing NodeName", "", map[string]string{"Authorization": "Bearer " + jwt}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusBadRequest, "missing NodeName header"},
		{"invalid NodeName", "", map[string]string{"NodeName": "Edge_1", "Authorization": "Bearer " + jwt}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusBadRequest, `invalid NodeName header: pki: node name "Edge_1" contains 'E'`},
		{"CSR CN mismatch", "", map[string]string{"NodeName": "a", "Authorization": "Bearer " + jwt}, bytes.NewReader(csrPEM(t, "b")),
			http.StatusForbidden, `CSR common name "system:node:b" does not match NodeName "a"`},
		{"garbage body", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}, strings.NewReader("hello"),
			http.StatusBadRequest, "not a PEM or DER certificate request"},
		{"empty body", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}, nil,
			http.StatusBadRequest, "body is empty"},
		{"oversize body", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}, bytes.NewReader(big),
			http.StatusRequestEntityTooLarge, "request body exceeds 65536 bytes"},
		{"oversize chunked body", "", map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}, unsized{bytes.NewReader(big)},
			http.StatusRequestEntityTooLarge, "request body exceeds 65536 bytes"},
		{"PUT", http.MethodPut, map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}, bytes.NewReader(csrPEM(t, "edge-1")),
			http.StatusMethodNotAllowed, "method PUT not allowed, use GET or POST"},
		{"refused by AuthorizeNode", "", map[string]string{"NodeName": "banned", "Authorization": "Bearer " + jwt}, bytes.NewReader(csrPEM(t, "banned")),
			http.StatusForbidden, `node "banned" is not authorized: node is banned`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := e.do(t, c, request{method: tc.method, header: tc.header, body: tc.body})
			if code != tc.wantCode || !strings.Contains(string(body), tc.want) {
				t.Errorf("got %d %q, want %d containing %q", code, body, tc.wantCode, tc.want)
			}
			// slog's text handler quotes values.
			if q := strconv.Quote(tc.want); !strings.Contains(e.logs.String(), q[1:len(q)-1]) {
				t.Errorf("refusal reason %q not logged", tc.want)
			}
		})
	}
}

func TestJoinExpiredToken(t *testing.T) {
	e := newEnv(t, nil)
	_, jwt := e.token(t, time.Hour)
	e.clk.Step(time.Hour)
	code, body, _ := e.do(t, e.client(), request{body: bytes.NewReader(csrPEM(t, "edge-1")),
		header: map[string]string{"NodeName": "edge-1", "Authorization": "Bearer " + jwt}})
	if code != http.StatusUnauthorized || !strings.Contains(string(body), "token expired at") {
		t.Errorf("got %d %q, want 401 token expired", code, body)
	}
}

func TestRenewal(t *testing.T) {
	e := newEnv(t, nil)
	edge1 := e.client(nodeCert(t, e.ca, "edge-1", e.clk.Now()))
	code, body, _ := e.do(t, edge1, request{body: bytes.NewReader(csrPEM(t, "edge-1")), header: map[string]string{"NodeName": "edge-1"}})
	if code != http.StatusOK {
		t.Fatalf("renewal: %d %s", code, body)
	}
	checkNodeCert(t, e, body, "edge-1")
	if !strings.Contains(e.logs.String(), `via="client certificate"`) {
		t.Errorf("renewal not logged as via client certificate:\n%s", e.logs)
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		want   string
	}{
		{"certificate for another node", edge1, `client certificate is for node "edge-1", not NodeName "edge-2"`},
		{"cloudcore certificate", e.client(e.srvCert), `client certificate is not a node certificate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := e.do(t, tc.client, request{body: bytes.NewReader(csrPEM(t, "edge-2")), header: map[string]string{"NodeName": "edge-2"}})
			if code != http.StatusForbidden || !strings.Contains(string(body), tc.want) {
				t.Errorf("got %d %q, want 403 containing %q", code, body, tc.want)
			}
		})
	}

	t.Run("certificate from another CA", func(t *testing.T) {
		other, err := pki.NewCA(e.clk.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, e.base+"/edge.crt", bytes.NewReader(csrPEM(t, "edge-1")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("NodeName", "edge-1")
		resp, err := e.client(nodeCert(t, other, "edge-1", e.clk.Now())).Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request with a foreign client certificate got status %d, want a TLS failure", resp.StatusCode)
		}
	})
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.CA is required") {
		t.Errorf("New without CA = %v", err)
	}
	ca, err := pki.NewCA(time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}, Deps{CA: ca}); err == nil || !strings.Contains(err.Error(), "Deps.ServerCert is required") {
		t.Errorf("New without server certificate = %v", err)
	}
}
