package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// Secret names and data keys, as KubeEdge uses them.
const (
	CASecret         = "casecret"
	CACertKey        = "cadata"
	CAKeyKey         = "cakeydata"
	ServerSecret     = "cloudcoresecret"
	ServerCertKey    = "cloudcoredata"
	ServerKeyKey     = "cloudcorekeydata"
	TokenSecret      = "tokensecret"
	TokenKey         = "tokendata"
	DefaultNamespace = "kubeedge"
)

// renewBefore is how close to expiry a stored server certificate may be
// before this process stops using it.
const renewBefore = 30 * 24 * time.Hour

// Config says where the material lives and what the server certificate
// must cover. Zero fields take the defaults from WithDefaults.
type Config struct {
	Namespace string
	// AdvertiseAddresses are the IP addresses edges use to reach cloudcore;
	// each becomes an IP SAN of the server certificate.
	AdvertiseAddresses []string
	// DNSNames become DNS SANs of the server certificate.
	DNSNames []string
	// TokenRefresh is how often a new join token is written; tokens live
	// twice as long so one missed refresh does not break joining.
	TokenRefresh     time.Duration
	NodeCertValidity time.Duration
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if len(c.AdvertiseAddresses) == 0 {
		c.AdvertiseAddresses = []string{"127.0.0.1"}
	}
	if len(c.DNSNames) == 0 {
		c.DNSNames = []string{"localhost"}
	}
	if c.TokenRefresh == 0 {
		c.TokenRefresh = 12 * time.Hour
	}
	if c.NodeCertValidity == 0 {
		c.NodeCertValidity = pki.DefaultCertValidity
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field. It has no side effects.
func (c Config) Validate() error {
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("certs: namespace %q: %s", c.Namespace, strings.Join(errs, "; "))
	}
	for _, a := range c.AdvertiseAddresses {
		if net.ParseIP(a) == nil {
			return fmt.Errorf("certs: advertise address %q is not an IP address", a)
		}
	}
	for _, n := range c.DNSNames {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("certs: DNS name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	if c.TokenRefresh <= 0 {
		return fmt.Errorf("certs: token refresh period must be positive, got %s", c.TokenRefresh)
	}
	if c.NodeCertValidity <= 0 {
		return fmt.Errorf("certs: node certificate validity must be positive, got %s", c.NodeCertValidity)
	}
	return nil
}

func (c Config) ips() []net.IP {
	ips := make([]net.IP, len(c.AdvertiseAddresses))
	for i, a := range c.AdvertiseAddresses {
		ips[i] = net.ParseIP(a)
	}
	return ips
}

// Material is cloudcore's key material for this process.
type Material struct {
	CA *pki.CA
	// ServerCert has Leaf set.
	ServerCert tls.Certificate
	// ServerCertReissued says why the certificate in cloudcoresecret was not
	// used and ServerCert was issued for this process only; empty when the
	// stored one is in use.
	ServerCertReissued string
}

// ServerTLSConfig returns a TLS config serving ServerCert and verifying client
// certificates against the CA according to clientAuth.
func (m *Material) ServerTLSConfig(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{m.ServerCert},
		ClientAuth:   clientAuth,
		ClientCAs:    m.CA.Pool(),
	}
}

// Ensure loads or creates the namespace, CA and server certificate.
func Ensure(ctx context.Context, client kubernetes.Interface, cfg Config, clk clock.Clock) (*Material, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ensureNamespace(ctx, client, cfg.Namespace); err != nil {
		return nil, err
	}
	secrets := client.CoreV1().Secrets(cfg.Namespace)

	caSecret, err := createOrGet(ctx, secrets, CASecret, func() (map[string][]byte, error) {
		ca, err := pki.NewCA(clk.Now(), 0)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{CACertKey: ca.CertDER, CAKeyKey: ca.KeyDER}, nil
	})
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA(caSecret.Data[CACertKey], caSecret.Data[CAKeyKey])
	if err != nil {
		return nil, fmt.Errorf("certs: secret %s/%s (keys %q, %q): %w", cfg.Namespace, CASecret, CACertKey, CAKeyKey, err)
	}

	srvSecret, err := createOrGet(ctx, secrets, ServerSecret, func() (map[string][]byte, error) {
		cert, key, err := ca.IssueServerCert(cfg.DNSNames, cfg.ips(), clk.Now(), 0)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{ServerCertKey: cert, ServerKeyKey: key}, nil
	})
	if err != nil {
		return nil, err
	}
	m := &Material{CA: ca}
	m.ServerCert, err = usableServerCert(cfg, ca, srvSecret.Data[ServerCertKey], srvSecret.Data[ServerKeyKey], clk.Now())
	if err != nil {
		// The secret is shared with other replicas, which may have been
		// configured with other SANs: never overwrite it.
		m.ServerCertReissued = err.Error()
		cfg.Logger.Warn("stored cloudcore certificate is not usable; issuing one for this process only",
			"secret", cfg.Namespace+"/"+ServerSecret, "reason", m.ServerCertReissued)
		certDER, keyDER, err := ca.IssueServerCert(cfg.DNSNames, cfg.ips(), clk.Now(), 0)
		if err != nil {
			return nil, err
		}
		if m.ServerCert, err = keyPair(certDER, keyDER); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// usableServerCert returns the stored pair if it is signed by ca, covers the
// configured SANs and is valid for more than renewBefore; otherwise the error
// says why not.
func usableServerCert(cfg Config, ca *pki.CA, certDER, keyDER []byte, now time.Time) (tls.Certificate, error) {
	pair, err := keyPair(certDER, keyDER)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert := pair.Leaf
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate is not signed by the CA in %s: %w", CASecret, err)
	}
	for _, ip := range cfg.ips() {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return tls.Certificate{}, fmt.Errorf("certificate lacks IP SAN %s (has %v)", ip, cert.IPAddresses)
		}
	}
	for _, n := range cfg.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			return tls.Certificate{}, fmt.Errorf("certificate lacks DNS SAN %s (has %v)", n, cert.DNSNames)
		}
	}
	if now.Add(renewBefore).After(cert.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("certificate expires at %s, within %s", cert.NotAfter.UTC().Format(time.RFC3339), renewBefore)
	}
	if now.Before(cert.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("certificate is not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return pair, nil
}

func keyPair(certDER, keyDER []byte) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(pki.EncodeCertPEM(certDER), pki.EncodeKeyPEM(keyDER))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate and key (keys %q, %q): %w", ServerCertKey, ServerKeyKey, err)
	}
	return pair, nil
}

func ensureNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	_, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("certs: get namespace %s: %w", name, err)
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("certs: create namespace %s: %w", name, err)
	}
	return nil
}

// createOrGet returns secret name, creating it with gen's data when absent.
// If another process creates it first, its data wins.
func createOrGet(ctx context.Context, secrets typedcorev1.SecretInterface, name string, gen func() (map[string][]byte, error)) (*corev1.Secret, error) {
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return s, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("certs: get secret %s: %w", name, err)
	}
	data, err := gen()
	if err != nil {
		return nil, fmt.Errorf("certs: generate secret %s: %w", name, err)
	}
	s, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}, metav1.CreateOptions{})
	if err == nil {
		return s, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("certs: create secret %s: %w", name, err)
	}
	// Lost the race: a Get without resourceVersion is a quorum read, so it
	// sees the winner's secret.
	s, err = secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("certs: get secret %s after losing the create race: %w", name, err)
	}
	return s, nil
}
