package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"testing"
)

func TestStreamClientCert(t *testing.T) {
	ca := newTestCA(t)
	der, keyDER, err := ca.IssueStreamClientCert("kube-apiserver-kubelet-client", t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseECPrivateKey(keyDER); err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0}); err == nil {
		t.Fatal("a stream client certificate verifies as a server certificate")
	}
	if err := AuthorizeStreamClient(cert); err != nil {
		t.Fatalf("AuthorizeStreamClient: %v", err)
	}
	if got := cert.NotAfter; !got.Equal(t0.Add(DefaultCertValidity)) {
		t.Errorf("NotAfter = %s", got)
	}

	for _, cn := range []string{"", "system:node:a", "has space", string(make([]byte, 65))} {
		if _, _, err := ca.IssueStreamClientCert(cn, t0, 0); err == nil {
			t.Errorf("IssueStreamClientCert(%q) succeeded", cn)
		}
	}
}

func TestAuthorizeStreamClientRefuses(t *testing.T) {
	ca := newTestCA(t)
	csr, _ := nodeCSR(t, "system:node:edge-1", "system:nodes")
	nodeDER, err := ca.SignNodeCSR(csr, "edge-1", t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	node, _ := x509.ParseCertificate(nodeDER)
	if err := AuthorizeStreamClient(node); !errors.Is(err, ErrNotStreamClient) {
		t.Fatalf("node certificate: %v", err)
	}
	srvDER, _, err := ca.IssueServerCert([]string{"localhost"}, nil, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := x509.ParseCertificate(srvDER)
	wantErr(t, AuthorizeStreamClient(srv), `is not in "kubeedge:stream-clients"`)
	wantErr(t, AuthorizeStreamClient(nil), "no client certificate")
}

func TestKubeletServingCert(t *testing.T) {
	ca := newTestCA(t)
	csr, key := nodeCSR(t, "system:node:edge-1", "system:nodes")
	der, err := ca.SignKubeletServingCSR(csr, "edge-1", []string{"edge-1"}, []net.IP{net.ParseIP("10.0.0.5")}, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"edge-1", "10.0.0.5"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, DNSName: host}); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", host, err)
		}
	}
	if err := cert.VerifyHostname("10.0.0.6"); err == nil {
		t.Error("verifies for an address it was not issued for")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a serving certificate verifies as a client certificate")
	}
	if !key.PublicKey.Equal(cert.PublicKey) || cert.NotAfter.Sub(t0) != KubeletServingValidity {
		t.Errorf("key or validity wrong: %v", cert.NotAfter)
	}
	if name, err := NodeNameFromCert(cert); err != nil || name != "edge-1" {
		t.Errorf("NodeNameFromCert = %q, %v", name, err)
	}
	other, _ := nodeCSR(t, "system:node:edge-2", "system:nodes")
	if _, err := ca.SignKubeletServingCSR(other, "edge-1", []string{"edge-1"}, nil, t0, 0); !errors.Is(err, ErrCSRIdentity) {
		t.Errorf("another node's request: %v", err)
	}
	if _, err := ca.SignKubeletServingCSR(csr, "edge-1", nil, nil, t0, 0); err == nil {
		t.Error("signed without addresses")
	}
}
