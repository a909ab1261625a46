package pkitest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// Validity is how long the CA and every certificate made here stay valid.
const Validity = time.Hour

// NewCA returns a fresh CA valid for Validity from now.
func NewCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now(), Validity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// ServerCert returns a server certificate issued by ca for 127.0.0.1 and
// "localhost", with Leaf set.
func ServerCert(t testing.TB, ca *pki.CA) tls.Certificate {
	t.Helper()
	certDER, keyDER, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now(), Validity)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair(t, certDER, key)
}

// NodeCert returns a client certificate for node issued by ca through
// pki.NewKey, pki.NewNodeCSR and CA.SignNodeCSR, with Leaf set.
func NodeCert(t testing.TB, ca *pki.CA, node string) tls.Certificate {
	t.Helper()
	key, _, err := pki.NewKey()
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
	der, err := ca.SignNodeCSR(csr, node, time.Now(), Validity)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair(t, der, key)
}

func keyPair(t testing.TB, der []byte, key any) tls.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
