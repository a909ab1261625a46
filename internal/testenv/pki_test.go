package testenv

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGeneratePKI(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	p, err := generatePKI(dir, netip.MustParseAddr("10.96.7.1"), now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.CACert))

	serving := readCert(t, p.ServingCert)
	for _, name := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "127.0.0.1", "10.96.7.1"} {
		if _, err := serving.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", name, err)
		}
	}
	if _, err := serving.Verify(x509.VerifyOptions{DNSName: "10.96.7.2", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("serving certificate valid for 10.96.7.2, which is not in its SANs")
	}

	clients := []struct {
		kp  keyPair
		cn  string
		org []string
	}{
		{p.admin, "kubernetes-admin", []string{"system:masters"}},
		{p.controllerManager, "system:kube-controller-manager", nil},
		{p.scheduler, "system:kube-scheduler", nil},
	}
	for _, c := range clients {
		cert := parseCert(t, c.kp.cert)
		if cert.Subject.CommonName != c.cn || !cmp.Equal(cert.Subject.Organization, c.org) {
			t.Errorf("client subject = %v, want CN=%s O=%v", cert.Subject, c.cn, c.org)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: not a client certificate of the CA: %v", c.cn, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s: client certificate also valid for serving", c.cn)
		}
	}

	fpRoots := x509.NewCertPool()
	fpRoots.AddCert(readCert(t, p.FrontProxyCA))
	fp := readCert(t, p.FrontProxyClient)
	if _, err := fp.Verify(x509.VerifyOptions{Roots: fpRoots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("front-proxy client not signed by the front-proxy CA: %v", err)
	}
	if _, err := fp.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("front-proxy client accepted by the cluster CA: the CAs must differ")
	}

	block := readPEM(t, p.SAKey)
	sa, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("service-account key: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(readPEM(t, p.SAPub).Bytes)
	if err != nil {
		t.Fatalf("service-account public key: %v", err)
	}
	if !sa.PublicKey.Equal(pub.(*rsa.PublicKey)) {
		t.Error("sa.pub does not belong to sa.key")
	}

	for _, key := range []string{p.CAKey, p.ServingKey, p.FrontProxyKey, p.SAKey} {
		fi, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(key), fi.Mode().Perm())
		}
	}
}

func TestWriteKubeconfig(t *testing.T) {
	dir := t.TempDir()
	p, err := generatePKI(dir, netip.MustParseAddr("10.96.0.1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(path, "https://127.0.0.1:6443", p.caPEM, "admin", p.admin); err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfigFromKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Errorf("host = %q", cfg.Host)
	}
	if diff := cmp.Diff(string(p.caPEM), string(cfg.CAData)); diff != "" {
		t.Errorf("CA data (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(p.admin.cert), string(cfg.CertData)); diff != "" {
		t.Errorf("client certificate (-want +got):\n%s", diff)
	}
	if len(cfg.KeyData) == 0 || cfg.CertFile != "" || cfg.KeyFile != "" {
		t.Errorf("credentials not embedded: keyData %d bytes, certFile %q, keyFile %q", len(cfg.KeyData), cfg.CertFile, cfg.KeyFile)
	}
}

func readPEM(t *testing.T, path string) *pem.Block {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return b
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseCert(t, data)
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
