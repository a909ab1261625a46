package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA(t0, 0)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func wantErr(t *testing.T, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", substr)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	if got := ca.Cert.Subject.CommonName; got != "KubeEdge CA" {
		t.Errorf("CN = %q, want KubeEdge CA", got)
	}
	if !ca.Cert.IsCA {
		t.Error("CA certificate has IsCA=false")
	}
	if got, want := ca.Cert.NotAfter, t0.Add(DefaultCAValidity); !got.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", got, want)
	}
	sum := sha256.Sum256(ca.CertDER)
	if got, want := ca.Hash(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	loaded, err := LoadCA(ca.CertDER, ca.KeyDER)
	if err != nil {
		t.Fatalf("LoadCA of NewCA output: %v", err)
	}
	if loaded.Hash() != ca.Hash() || !slices.Equal(loaded.KeyDER, ca.KeyDER) {
		t.Error("LoadCA did not round-trip")
	}
}

func TestLoadCAErrors(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	leaf, _, err := ca.IssueServerCert([]string{"x"}, nil, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"empty cert", nil, ca.KeyDER, "certificate is empty"},
		{"empty key", ca.CertDER, nil, "private key is empty"},
		{"garbage cert", []byte("nope"), ca.KeyDER, "parse certificate"},
		{"garbage key", ca.CertDER, []byte("nope"), "neither SEC 1"},
		{"not a CA", leaf, ca.KeyDER, "is not a CA"},
		{"foreign key", ca.CertDER, other.KeyDER, "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			wantErr(t, err, tc.want)
		})
	}
}

func TestIssueServerCert(t *testing.T) {
	ca := newTestCA(t)
	certDER, keyDER, err := ca.IssueServerCert([]string{"localhost", "cloud.example"}, []net.IP{net.ParseIP("10.0.0.7")}, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "kubeedge-cloudcore" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	for _, name := range []string{"localhost", "cloud.example", "10.0.0.7"} {
		if _, err := cert.Verify(x509.VerifyOptions{
			DNSName: name, Roots: ca.Pool(), CurrentTime: t0,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: ca.Pool(), CurrentTime: t0}); err == nil {
		t.Error("certificate verified for a name it was not issued for")
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("returned key does not match certificate")
	}
	if got := cert.NotAfter.Sub(t0); got != DefaultCertValidity {
		t.Errorf("validity = %s, want %s", got, DefaultCertValidity)
	}
	_, _, err = ca.IssueServerCert(nil, nil, t0, 0)
	wantErr(t, err, "no DNS names or IP addresses")
}

func nodeCSR(t *testing.T, cn string, org ...string) (*x509.CertificateRequest, *ecdsa.PrivateKey) {
	t.Helper()
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	tmpl.Subject.CommonName = cn
	tmpl.Subject.Organization = org
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr, key
}

func TestSignNodeCSR(t *testing.T) {
	ca := newTestCA(t)
	csr, key := nodeCSR(t, "system:node:edge-1", "system:nodes")
	der, err := ca.SignNodeCSR(csr, "edge-1", t0, 0)
	if err != nil {
		t.Fatalf("SignNodeCSR: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node certificate does not verify as a client certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("node certificate verifies as a server certificate")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate key is not the CSR key")
	}
	if got := cert.NotAfter.Sub(t0); got != 365*24*time.Hour {
		t.Errorf("validity = %s, want 365 days", got)
	}
	name, err := NodeNameFromCert(cert)
	if err != nil || name != "edge-1" {
		t.Errorf("NodeNameFromCert = %q, %v; want edge-1", name, err)
	}

	tampered, _ := nodeCSR(t, "system:node:edge-1", "system:nodes")
	tampered.Signature = slices.Clone(tampered.Signature)
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff
	tampered.Signature[10] ^= 0xff
	wrongCN, _ := nodeCSR(t, "system:node:b", "system:nodes")
	noOrg, _ := nodeCSR(t, "system:node:a", "acme")
	for _, tc := range []struct {
		name    string
		csr     *x509.CertificateRequest
		node    string
		want    string
		wantErr error
	}{
		{"bad signature", tampered, "edge-1", "signature does not verify", ErrCSRInvalid},
		{"CN mismatch", wrongCN, "a", `CSR common name "system:node:b" does not match NodeName "a"`, ErrCSRIdentity},
		{"missing group", noOrg, "a", `does not contain "system:nodes"`, ErrCSRIdentity},
		{"invalid node name", wrongCN, "B", `node name "B" contains 'B'`, nil},
		{"nil", nil, "a", "no request", ErrCSRInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.SignNodeCSR(tc.csr, tc.node, t0, 0)
			wantErr(t, err, tc.want)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
		})
	}
}

func TestNodeNameFromCertErrors(t *testing.T) {
	for _, tc := range []struct {
		cn   string
		org  []string
		want string
	}{
		{"kubeedge-cloudcore", nil, `does not start with "system:node:"`},
		{"system:node:a", []string{"x"}, `does not contain "system:nodes"`},
		{"system:node:", []string{"system:nodes"}, "node name is empty"},
	} {
		cert := &x509.Certificate{}
		cert.Subject.CommonName, cert.Subject.Organization = tc.cn, tc.org
		_, err := NodeNameFromCert(cert)
		wantErr(t, err, tc.want)
	}
	_, err := NodeNameFromCert(nil)
	wantErr(t, err, "no certificate")
}

func TestValidateNodeName(t *testing.T) {
	for _, ok := range []string{"a", "edge-1", "edge.example.com", "0", strings.Repeat("a", 63) + "." + strings.Repeat("b", 189)} {
		if err := ValidateNodeName(ok); err != nil {
			t.Errorf("ValidateNodeName(%q) = %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "empty"},
		{strings.Repeat("a", 254), "254 characters long, at most 253"},
		{"Edge", `contains 'E'`},
		{"edge_1", `contains '_'`},
		{"edge/1", `contains '/'`},
		{"édge", `contains 'é'`},
		{"-edge", "must start and end"},
		{"edge-", "must start and end"},
		{"a..b", "empty label"},
		{".a", "empty label"},
		{"a.", "empty label"},
	} {
		wantErr(t, ValidateNodeName(tc.name), tc.want)
	}
}
