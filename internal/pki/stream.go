package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// StreamClientsGroup is the organisation of certificates that may use
// CloudStream's proxy port and an edge's kubelet API (the kube-apiserver's
// egress and kubelet client certificate, metrics-server's). Node
// certificates never carry it.
const StreamClientsGroup = "kubeedge:stream-clients"

// ErrNotStreamClient means a certificate is not a stream client's.
var ErrNotStreamClient = errors.New("pki: not a stream client certificate")

// IssueStreamClientCert issues a client certificate for cn in
// StreamClientsGroup with a fresh key. cn names the user (e.g.
// "kube-apiserver-kubelet-client") and must not look like a node's.
func (ca *CA) IssueStreamClientCert(cn string, now time.Time, validity time.Duration) (certDER, keyDER []byte, err error) {
	if err := validateStreamClientCN(cn); err != nil {
		return nil, nil, err
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
		Subject:      pkix.Name{CommonName: cn, Organization: []string{StreamClientsGroup}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue stream client certificate %q: %w", cn, err)
	}
	return certDER, keyDER, nil
}

func validateStreamClientCN(cn string) error {
	switch {
	case cn == "":
		return errors.New("pki: stream client common name is empty")
	case len(cn) > 64:
		return fmt.Errorf("pki: stream client common name is %d characters, at most 64 are allowed", len(cn))
	case strings.HasPrefix(cn, nodeCNPrefix):
		return fmt.Errorf("pki: stream client common name %q must not start with %q", cn, nodeCNPrefix)
	}
	for _, r := range cn {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("pki: stream client common name %q: only printable ASCII without spaces is allowed", cn)
		}
	}
	return nil
}

// AuthorizeStreamClient accepts a verified certificate of StreamClientsGroup
// that is not a node's; the error says what is missing. Call it only on
// certificates the TLS stack has verified against the CA.
func AuthorizeStreamClient(cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no client certificate", ErrNotStreamClient)
	}
	cn := cert.Subject.CommonName
	if strings.HasPrefix(cn, nodeCNPrefix) || slices.Contains(cert.Subject.Organization, NodesGroup) {
		return fmt.Errorf("%w: %q is a node certificate", ErrNotStreamClient, cn)
	}
	if !slices.Contains(cert.Subject.Organization, StreamClientsGroup) {
		return fmt.Errorf("%w: %q (organization %q) is not in %q", ErrNotStreamClient, cn, cert.Subject.Organization, StreamClientsGroup)
	}
	return nil
}

// KubeletServingValidity is the default lifetime of an edge's kubelet
// serving certificate. Edges renew it well before; a short life bounds how
// long a changed node address stays in it.
const KubeletServingValidity = 30 * 24 * time.Hour

// SignKubeletServingCSR issues the serving certificate of nodeName's kubelet
// API: CN=system:node:<nodeName>, O=system:nodes, extended key usage
// serverAuth, and exactly the given SANs (the caller takes them from the
// node's reported addresses, never from the request). The request must be
// self-signed for that identity.
func (ca *CA) SignKubeletServingCSR(csr *x509.CertificateRequest, nodeName string, dnsNames []string, ips []net.IP, now time.Time, validity time.Duration) ([]byte, error) {
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
		return nil, fmt.Errorf("%w: CSR common name %q is not %q", ErrCSRIdentity, csr.Subject.CommonName, want)
	}
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("pki: kubelet serving certificate for %q: no addresses to certify", nodeName)
	}
	if validity <= 0 {
		validity = KubeletServingValidity
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
		Subject:      pkix.Name{CommonName: NodeCommonName(nodeName), Organization: []string{NodesGroup}},
		DNSNames:     slices.Clone(dnsNames),
		IPAddresses:  slices.Clone(ips),
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign kubelet serving certificate for %q: %w", nodeName, err)
	}
	return der, nil
}
