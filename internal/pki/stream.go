package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
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
