package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// pkiFiles holds the paths and PEM data of the control plane's certificates.
type pkiFiles struct {
	CACert, CAKey                   string
	ServingCert, ServingKey         string
	FrontProxyCA                    string
	FrontProxyClient, FrontProxyKey string
	SAPub, SAKey                    string

	caPEM                    []byte
	admin, controllerManager keyPair
	scheduler                keyPair
}

// keyPair is a certificate and its private key, PEM encoded.
type keyPair struct{ cert, key []byte }

// certSpec describes one certificate to issue.
type certSpec struct {
	cn    string
	org   []string
	dns   []string
	ips   []net.IP
	usage []x509.ExtKeyUsage
	isCA  bool
}

// generatePKI writes a CA, the apiserver serving certificate, a front-proxy CA
// and client certificate, client certificates for admin, controller-manager
// and scheduler, and an RSA service-account key pair into dir. serviceIP is
// the first IP of the service range, which in-cluster clients dial as
// "kubernetes.default".
func generatePKI(dir string, serviceIP netip.Addr, now time.Time) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	p := &pkiFiles{
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServingCert: filepath.Join(dir, "apiserver.crt"), ServingKey: filepath.Join(dir, "apiserver.key"),
		FrontProxyCA:     filepath.Join(dir, "front-proxy-ca.crt"),
		FrontProxyClient: filepath.Join(dir, "front-proxy-client.crt"),
		FrontProxyKey:    filepath.Join(dir, "front-proxy-client.key"),
		SAPub:            filepath.Join(dir, "sa.pub"), SAKey: filepath.Join(dir, "sa.key"),
	}
	ca, caKey, caPair, err := issue(certSpec{cn: "kubeedge-testenv-ca", isCA: true}, nil, nil, now)
	if err != nil {
		return nil, err
	}
	p.caPEM = caPair.cert
	if err := writePair(p.CACert, p.CAKey, caPair); err != nil {
		return nil, err
	}
	_, _, serving, err := issue(certSpec{
		cn: "kube-apiserver",
		dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		ips:   []net.IP{net.IPv4(127, 0, 0, 1), net.IP(serviceIP.AsSlice())},
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey, now)
	if err != nil {
		return nil, err
	}
	if err := writePair(p.ServingCert, p.ServingKey, serving); err != nil {
		return nil, err
	}
	// A separate CA for the aggregation layer: the apiserver trusts identity
	// headers only from clients of this CA, never from ordinary clients.
	fpCA, fpKey, fpPair, err := issue(certSpec{cn: "kubeedge-testenv-front-proxy-ca", isCA: true}, nil, nil, now)
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.FrontProxyCA, fpPair.cert, 0o644); err != nil {
		return nil, err
	}
	_, _, fpClient, err := issue(certSpec{cn: "front-proxy-client",
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, fpCA, fpKey, now)
	if err != nil {
		return nil, err
	}
	if err := writePair(p.FrontProxyClient, p.FrontProxyKey, fpClient); err != nil {
		return nil, err
	}
	clients := []struct {
		dst  *keyPair
		spec certSpec
	}{
		{&p.admin, certSpec{cn: "kubernetes-admin", org: []string{"system:masters"}}},
		{&p.controllerManager, certSpec{cn: "system:kube-controller-manager"}},
		{&p.scheduler, certSpec{cn: "system:kube-scheduler"}},
	}
	for _, c := range clients {
		c.spec.usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		_, _, kp, err := issue(c.spec, ca, caKey, now)
		if err != nil {
			return nil, err
		}
		*c.dst = kp
	}
	// RSA because every consumer of service-account tokens accepts RS256.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("pki: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: service-account public key: %w", err)
	}
	if err := writeFile(p.SAKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(p.SAPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// issue creates an ECDSA P-256 key and a certificate for spec, signed by
// parent (self-signed when parent is nil).
func issue(spec certSpec, parent *x509.Certificate, parentKey crypto.Signer, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, keyPair{}, fmt.Errorf("pki: key for %q: %w", spec.cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, keyPair{}, fmt.Errorf("pki: serial for %q: %w", spec.cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.cn, Organization: spec.org},
		// Backdated so that a clock a little behind still accepts it.
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: spec.usage,
		DNSNames:    spec.dns,
		IPAddresses: spec.ips,
	}
	if spec.isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.NotAfter = now.Add(10 * 365 * 24 * time.Hour)
	}
	signer := crypto.Signer(key)
	if parent == nil {
		parent = tmpl
	} else {
		signer = parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, keyPair{}, fmt.Errorf("pki: certificate %q: %w", spec.cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, keyPair{}, fmt.Errorf("pki: parse certificate %q: %w", spec.cn, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, keyPair{}, fmt.Errorf("pki: marshal key %q: %w", spec.cn, err)
	}
	return cert, key, keyPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func writePair(certPath, keyPath string, kp keyPair) error {
	if err := writeFile(certPath, kp.cert, 0o644); err != nil {
		return err
	}
	return writeFile(keyPath, kp.key, 0o600)
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
