package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

const (
	// DefaultCAValidity is the lifetime of a CA created by NewCA.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is the lifetime of server and node certificates.
	DefaultCertValidity = 365 * 24 * time.Hour

	caCommonName     = "KubeEdge CA"
	serverCommonName = "kubeedge-cloudcore"
	// NodesGroup is the organisation every node certificate carries.
	NodesGroup   = "system:nodes"
	nodeCNPrefix = "system:node:"

	// backdate tolerates clocks that are a little behind the signer's.
	backdate = 5 * time.Minute
)

var (
	// ErrCSRInvalid means a certificate request could not be parsed or its
	// signature does not verify.
	ErrCSRInvalid = errors.New("pki: invalid certificate request")
	// ErrCSRIdentity means a well-formed request asks for an identity the
	// caller is not entitled to.
	ErrCSRIdentity = errors.New("pki: certificate request identity mismatch")
)

// CA is a certificate authority. CertDER and KeyDER are the encodings stored
// in the casecret; Cert and Key are their parsed forms.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertDER []byte
	KeyDER  []byte
}

// NewCA creates a self-signed CA valid from now for validity (DefaultCAValidity
// if zero).
func NewCA(now time.Time, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, keyDER, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	return LoadCA(der, keyDER)
}

// LoadCA parses a CA certificate and its private key (SEC 1 or PKCS #8 DER)
// and checks that they belong together.
func LoadCA(certDER, keyDER []byte) (*CA, error) {
	if len(certDER) == 0 {
		return nil, errors.New("pki: load CA: certificate is empty")
	}
	if len(keyDER) == 0 {
		return nil, errors.New("pki: load CA: private key is empty")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: parse certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: load CA: certificate %q is not a CA (basic constraints CA=false)", cert.Subject.CommonName)
	}
	key, err := parseKeyDER(keyDER)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("pki: load CA: private key does not match certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key, CertDER: slices.Clone(certDER), KeyDER: slices.Clone(keyDER)}, nil
}

// Hash is hex(sha256(CertDER)), the value pinned by join tokens.
func (ca *CA) Hash() string { return HashCert(ca.CertDER) }

// HashCert returns hex(sha256(der)).
func HashCert(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServerCert issues a cloudcore serving certificate (also usable as a
// client certificate) for the given SANs with a fresh key.
func (ca *CA) IssueServerCert(dnsNames []string, ips []net.IP, now time.Time, validity time.Duration) (certDER, keyDER []byte, err error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("pki: issue server certificate: no DNS names or IP addresses given")
	}
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	key, keyDER, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: serverCommonName},
		DNSNames:     slices.Clone(dnsNames),
		IPAddresses:  slices.Clone(ips),
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue server certificate: %w", err)
	}
	return certDER, keyDER, nil
}

// SignNodeCSR issues a client certificate for nodeName from csr. The request
// must be self-signed and ask for exactly CN=system:node:<nodeName> in
// O=system:nodes; validity defaults to DefaultCertValidity.
func (ca *CA) SignNodeCSR(csr *x509.CertificateRequest, nodeName string, now time.Time, validity time.Duration) ([]byte, error) {
	if csr == nil {
		return nil, fmt.Errorf("%w: no request", ErrCSRInvalid)
	}
	if err := ValidateNodeName(nodeName); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrCSRInvalid, err)
	}
	if want := NodeCommonName(nodeName); csr.Subject.CommonName != want {
		return nil, fmt.Errorf("%w: CSR common name %q does not match NodeName %q (want %q)",
			ErrCSRIdentity, csr.Subject.CommonName, nodeName, want)
	}
	if !slices.Contains(csr.Subject.Organization, NodesGroup) {
		return nil, fmt.Errorf("%w: CSR organization %q does not contain %q", ErrCSRIdentity, csr.Subject.Organization, NodesGroup)
	}
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, isRSA := csr.PublicKey.(*rsa.PublicKey); isRSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Only the vetted fields are copied: extensions and SANs in the
		// request are ignored.
		Subject:     pkix.Name{CommonName: csr.Subject.CommonName, Organization: []string{NodesGroup}},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    usage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign node certificate for %q: %w", nodeName, err)
	}
	return der, nil
}

// NewKey generates an ECDSA P-256 key and returns it with its SEC 1 DER.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return key, der, nil
}

// NewNodeCSR returns a DER certificate request for nodeName signed by key.
func NewNodeCSR(key crypto.Signer, nodeName string) ([]byte, error) {
	if err := ValidateNodeName(nodeName); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeCommonName(nodeName), Organization: []string{NodesGroup}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR for %q: %w", nodeName, err)
	}
	return der, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: generate serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // serials must be positive
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}
