package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudconfig "github.com/kubeedge-go/kubeedge/internal/cloud/config"
	"github.com/kubeedge-go/kubeedge/internal/edge/certs"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/transport"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// joinAs obtains a node certificate for node with tok, in a fresh directory.
func joinAs(t *testing.T, c *cloud, node, tok string) (*certs.Manager, error) {
	t.Helper()
	dir := t.TempDir()
	m, err := certs.New(certs.Config{
		Server: fmt.Sprintf("https://127.0.0.1:%d", c.ports.https), Token: tok, NodeName: node,
		CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key"),
	}, certs.Deps{Logger: testLogger(t, "certs")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return m, m.Bootstrap(ctx)
}

func wantErrContaining(t *testing.T, what string, err error, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Fatalf("%s: error = %v, want one containing %q", what, err, substr)
	}
}

// TestJoinRefusals: only a current token signed by this cloud's CA gets a certificate.
func TestJoinRefusals(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	good := token(t, cp.Client)
	if _, err := joinAs(t, c, "join-ok", good); err != nil {
		t.Fatalf("join with a valid token: %v", err)
	}
	now := time.Now()
	otherCA, err := pki.NewCA(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.NewJWT([]byte("not the CA key"), now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewToken(otherCA, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := pki.NewToken(c.Material.CA, now.Add(-48*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hash, _, _ := pki.ParseToken(good)
	for _, tc := range []struct{ name, token, want string }{
		{"forged signature", hash + "." + forged, "signature"},
		{"token for another CA", foreign, "does not match"},
		{"expired token", expired, "expired"},
		{"garbage", "not-a-token", "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := joinAs(t, c, "join-bad", tc.token)
			wantErrContaining(t, tc.name, err, tc.want)
		})
	}
}

// TestSessionIdentity: a certificate for one node cannot open a session as another.
func TestSessionIdentity(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	m, err := joinAs(t, c, "id-a", token(t, cp.Client))
	if err != nil {
		t.Fatal(err)
	}
	tc := m.ClientTLSConfig("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = transport.DialWebSocket(ctx, fmt.Sprintf("127.0.0.1:%d", c.ports.ws), "p", "id-b", tc, 1<<20)
	wantErrContaining(t, "websocket as another node", err, `client certificate is for node "id-a", but the session claims node "id-b"`)

	conn, err := transport.DialQUIC(ctx, fmt.Sprintf("127.0.0.1:%d", c.ports.quic), transport.Hello{NodeID: "id-b", ProjectID: "p"}, tc, 1<<20)
	if err == nil {
		_, err = conn.ReadFrame()
	}
	wantErrContaining(t, "quic as another node", err, `client certificate is for node "id-a"`)

	// Without a client certificate the TLS handshake itself fails.
	bare := &tls.Config{RootCAs: tc.RootCAs, ServerName: "127.0.0.1"}
	_, err = transport.DialWebSocket(ctx, fmt.Sprintf("127.0.0.1:%d", c.ports.ws), "p", "id-a", bare, 1<<20)
	if err == nil {
		t.Fatal("a session without a client certificate was accepted")
	}
	if c.Hub.SessionCount() != 0 {
		t.Fatalf("%d sessions after refusals, want 0", c.Hub.SessionCount())
	}
}

// TestBadFrames: malformed, unknown, tricky and oversize input gets an error
// reply or a closed session; another node's session is unaffected.
func TestBadFrames(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t), func(cfg *cloudconfig.CloudCore) { cfg.Modules.CloudHub.MaxFrameBytes = 64 << 10 })
	tok := token(t, cp.Client)
	good := startEdge(t, edgeConfig(t, t.TempDir(), "bf-good", c.ports, tok, "websocket"))
	waitFor(t, 30*time.Second, "the good edge", func() (bool, error) { return c.Hub.Session("bf-good") != nil, nil })
	goodSession := c.Hub.Session("bf-good")

	m, err := joinAs(t, c, "bf-raw", tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := transport.DialWebSocket(ctx, fmt.Sprintf("127.0.0.1:%d", c.ports.ws), "p", "bf-raw", m.ClientTLSConfig("127.0.0.1"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithReason("")
	// expectError sends frame and waits for the cloud's error reply.
	expectError := func(name string, frame []byte, want string) {
		t.Helper()
		if err := conn.WriteFrame(frame); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			b, err := conn.ReadFrame()
			if err != nil {
				t.Fatalf("%s: read: %v", name, err)
			}
			reply, err := wire.Decode(b, 0)
			if err != nil {
				t.Fatalf("%s: reply does not decode: %v", name, err)
			}
			if reply.Operation != wire.OpError {
				continue // e.g. keepalive replies
			}
			txt, _ := reply.ContentString()
			if !strings.Contains(txt, want) {
				t.Fatalf("%s: error reply %q, want one containing %q", name, txt, want)
			}
			return
		}
	}
	msg := func(op, resource string, content any) []byte {
		b, _ := json.Marshal(map[string]any{
			"header":  map[string]any{"msg_id": wire.NewID(), "timestamp": time.Now().UnixMilli()},
			"route":   map[string]any{"source": "edged", "group": "resource", "operation": op, "resource": resource},
			"content": content,
		})
		return b
	}
	expectError("garbage", []byte("\x00\x01 not json"), "malformed")
	expectError("unknown operation", msg("explode", "null/node/bf-raw", nil), `unknown operation: "explode"`)
	expectError("path trick", msg("update", "default/pod/../../etc", nil), "bad resource")
	expectError("another node's status", msg("update", "null/nodestatus/bf-good", map[string]any{}), `node "bf-raw" may not write null/nodestatus/bf-good`)
	expectError("node status that is not one", msg("update", "null/nodestatus/bf-raw", "surprise"), "is not a NodeStatus")
	expectError("unsupported", msg("delete", "default/configmap/x", nil), "not supported from the edge")
	expectError("pod deletion without a uid", msg("delete", "default/pod/x", map[string]any{}), "uid is empty")
	expectError("status of another node's pod", msg("update", "default/podstatus/nowhere",
		map[string]any{"UID": "u", "Name": "nowhere", "Status": map[string]any{"phase": "Running"}}), "does not exist")
	expectError("token not bound to a pod", msg("query", "default/serviceaccounttoken/default", map[string]any{}), "must be bound to a pod")
	expectError("event about a secret", msg("insert", "default/event/e", map[string]any{
		"metadata": map[string]any{"name": "e", "namespace": "default"}, "involvedObject": map[string]any{"kind": "Secret", "name": "s"}}), "may not report events")

	// An oversize frame closes the session.
	big := msg("update", "null/nodestatus/bf-raw", strings.Repeat("x", 70<<10))
	_ = conn.WriteFrame(big)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err = conn.ReadFrame(); err != nil {
			break
		}
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		t.Fatal("the session stayed open after an oversize frame")
	}
	waitFor(t, 10*time.Second, "bf-raw's session to end", func() (bool, error) { return c.Hub.Session("bf-raw") == nil, nil })
	if s := c.Hub.Session("bf-good"); s != goodSession || good.Hub.Connects() != 1 {
		t.Fatalf("the good session was disturbed: same=%v connects=%d", s == goodSession, good.Hub.Connects())
	}
}
