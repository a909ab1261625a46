package pki

import (
	"crypto/x509"
	"errors"
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
