package keadm

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	cloudcerts "github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	cloudjoin "github.com/kubeedge-go/kubeedge/internal/cloud/join"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// testCloud is the cloud side in-process: cloudcore's key material and
// token secret in a fake cluster, and the real join server on 127.0.0.1.
type testCloud struct {
	client   *fake.Clientset
	mat      *cloudcerts.Material
	certPort int
}

func newTestCloud(t *testing.T) *testCloud {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := cloudcerts.Config{Logger: quiet}
	mat, err := cloudcerts.Ensure(ctx, client, cfg, clock.RealClock{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	keeper, err := cloudcerts.NewTokenKeeper(cfg, cloudcerts.TokenKeeperDeps{Client: client, CA: mat.CA})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := cloudjoin.New(cloudjoin.Config{}, cloudjoin.Deps{CA: mat.CA, ServerCert: mat.ServerCert, Logger: quiet})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	keeperDone, serverDone := make(chan error, 1), make(chan error, 1)
	go func() { keeperDone <- keeper.Run(ctx) }()
	go func() { serverDone <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-keeperDone; err != nil {
			t.Errorf("token keeper: %v", err)
		}
		if err := <-serverDone; err != nil {
			t.Errorf("join server: %v", err)
		}
	})
	waitFor(t, "the token secret", func() bool {
		_, err := keeper.CurrentToken(ctx)
		return err == nil
	})
	return &testCloud{client: client, mat: mat, certPort: ln.Addr().(*net.TCPAddr).Port}
}

func (c *testCloud) newClient(*rest.Config) (kubernetes.Interface, error) { return c.client, nil }

// writeKubeconfig writes a kubeconfig for a cluster that is never dialled.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://cluster.example:6443"}}]
users: [{name: u, user: {token: secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGetTokenJoinReset goes the way a user does: gettoken on the cloud,
// join --prepare-only on the edge, reset.
func TestGetTokenJoinReset(t *testing.T) {
	cloud := newTestCloud(t)
	r := run(t.Context(), Deps{NewClient: cloud.newClient}, "gettoken", "--kube-config", writeKubeconfig(t))
	r.mustSucceed(t)
	tok := strings.TrimSpace(r.stdout)
	if hash, _, err := pki.ParseToken(tok); err != nil || hash != cloud.mat.CA.Hash() {
		t.Fatalf("gettoken printed %q (%v), want a token for CA %s", r.stdout, err, cloud.mat.CA.Hash())
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config", "edgecore.yaml")
	r = run(t.Context(), Deps{}, "join", "--cloudcore-ipport=127.0.0.1:10000", "--token="+tok, "--edgenode-name=edge-1",
		"--certport="+strconv.Itoa(cloud.certPort), "--data-dir="+dir, "--config="+cfgPath, "--prepare-only")
	r.mustSucceed(t)

	certPEM, err := os.ReadFile(filepath.Join(dir, "certs", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := pki.NodeNameFromCert(cert); err != nil || name != "edge-1" {
		t.Errorf("certificate is for %q (%v), want edge-1", name, err)
	}
	if err := cert.CheckSignatureFrom(cloud.mat.CA.Cert); err != nil {
		t.Errorf("certificate is not signed by the cloud's CA: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca", "rootCA.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if ca, err := pki.ParseCertPEM(caPEM); err != nil || pki.HashCert(ca.Raw) != cloud.mat.CA.Hash() {
		t.Errorf("rootCA.crt is not the cloud's CA (%v)", err)
	}
	if !exists(filepath.Join(dir, "certs", "server.key")) {
		t.Error("no key written")
	}

	r = run(t.Context(), Deps{}, "reset", "--data-dir="+dir, "--config="+cfgPath, "--force")
	r.mustSucceed(t)
	for _, f := range []string{cfgPath, filepath.Join(dir, "ca", "rootCA.crt"), filepath.Join(dir, "certs", "server.crt"), filepath.Join(dir, "certs", "server.key")} {
		if exists(f) {
			t.Errorf("reset left %s", f)
		}
		if !strings.Contains(r.stdout, "removed "+f+"\n") {
			t.Errorf("reset output does not mention %s:\n%s", f, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "no "+filepath.Join(dir, "edgecore.pid")+": no edgecore started by keadm join to stop") {
		t.Errorf("reset output does not say there was nothing to stop:\n%s", r.stdout)
	}
}

// TestJoinBadToken checks that the cloud's refusal reaches the user at
// once and nothing is left behind.
func TestJoinBadToken(t *testing.T) {
	cloud := newTestCloud(t)
	_, otherTok := testToken(t)
	// Signed with the right key but already expired.
	expired, err := pki.NewToken(cloud.mat.CA, time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The right CA hash, but not signed with its key.
	forged := cloud.mat.CA.Hash() + otherTok[strings.IndexByte(otherTok, '.'):]
	for _, tc := range []struct {
		name, token string
		want        []string
	}{
		{"other cloud", otherTok, []string{"fetch certificates", "does not match the token's " + otherTok[:64]}},
		{"expired", expired, []string{"fetch certificates", "401 Unauthorized", "token expired"}},
		{"forged", forged, []string{"fetch certificates", "401 Unauthorized", "token signature does not verify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "edgecore.yaml")
			r := run(t.Context(), Deps{}, "join", "-e", "127.0.0.1:10000", "-t", tc.token, "-i", "edge-1",
				"-s", strconv.Itoa(cloud.certPort), "--data-dir", dir, "-c", cfgPath, "--prepare-only")
			r.mustErr(t, tc.want...)
			for _, f := range []string{cfgPath, filepath.Join(dir, "certs", "server.crt"), filepath.Join(dir, "ca", "rootCA.crt")} {
				if exists(f) {
					t.Errorf("failed join left %s", f)
				}
			}
		})
	}
}
