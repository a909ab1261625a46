package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func getSecret(t *testing.T, c *fake.Clientset, name string) *corev1.Secret {
	t.Helper()
	s, err := c.CoreV1().Secrets("kubeedge").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret %s: %v", name, err)
	}
	return s
}

func TestEnsureCreatesMaterial(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	clk := clocktesting.NewFakeClock(t0)
	cfg := Config{AdvertiseAddresses: []string{"10.1.2.3", "::1"}, DNSNames: []string{"cloud.example"}}
	m, err := Ensure(ctx, c, cfg, clk)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if _, err := c.CoreV1().Namespaces().Get(ctx, "kubeedge", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace kubeedge not created: %v", err)
	}
	ca := getSecret(t, c, "casecret")
	if !slices.Equal(ca.Data["cadata"], m.CA.CertDER) || !slices.Equal(ca.Data["cakeydata"], m.CA.KeyDER) {
		t.Error("casecret does not hold the returned CA")
	}
	srv := getSecret(t, c, "cloudcoresecret")
	if !slices.Equal(srv.Data["cloudcoredata"], m.ServerCert.Certificate[0]) || len(srv.Data["cloudcorekeydata"]) == 0 {
		t.Error("cloudcoresecret does not hold the returned server certificate")
	}
	if m.ServerCertReissued != "" {
		t.Errorf("fresh server certificate reported as reissued: %s", m.ServerCertReissued)
	}
	for _, host := range []string{"10.1.2.3", "::1", "cloud.example"} {
		if _, err := m.ServerCert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: m.CA.Pool(), CurrentTime: t0}); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", host, err)
		}
	}

	again, err := Ensure(ctx, c, cfg, clk)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if again.CA.Hash() != m.CA.Hash() || !slices.Equal(again.ServerCert.Certificate[0], m.ServerCert.Certificate[0]) {
		t.Error("second Ensure did not reuse the stored material")
	}
}

// TestEnsureRace makes both callers see every secret as absent on their first
// Get, so both generate and Create and one must lose with AlreadyExists.
func TestEnsureRace(t *testing.T) {
	for i := range 5 {
		c := fake.NewClientset()
		var mu sync.Mutex
		gets, creates := map[string]int{}, map[string]int{}
		c.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			name := a.(k8stesting.GetAction).GetName()
			mu.Lock()
			defer mu.Unlock()
			gets[name]++
			if gets[name] <= 2 {
				return true, nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
			}
			return false, nil, nil
		})
		c.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			creates[a.(k8stesting.CreateAction).GetObject().(*corev1.Secret).Name]++
			return false, nil, nil
		})

		var wg sync.WaitGroup
		var ms [2]*Material
		var errs [2]error
		for j := range 2 {
			wg.Go(func() { ms[j], errs[j] = Ensure(context.Background(), c, Config{}, clocktesting.NewFakeClock(t0)) })
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				t.Fatalf("run %d: Ensure %d: %v", i, j, err)
			}
		}
		if creates["casecret"] != 2 || creates["cloudcoresecret"] != 2 {
			t.Fatalf("run %d: creates = %v, want 2 per secret (the race was not exercised)", i, creates)
		}
		stored := getSecret(t, c, "casecret")
		for j, m := range ms {
			if m.CA.Hash() != pki.HashCert(stored.Data["cadata"]) {
				t.Errorf("run %d: Ensure %d uses a CA that is not the stored one", i, j)
			}
			if m.ServerCertReissued != "" {
				t.Errorf("run %d: Ensure %d reissued the server certificate: %s", i, j, m.ServerCertReissued)
			}
		}
		if !slices.Equal(ms[0].ServerCert.Certificate[0], ms[1].ServerCert.Certificate[0]) {
			t.Errorf("run %d: replicas ended with different server certificates", i)
		}
	}
}

func secretObj(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kubeedge"}, Data: data}
}

func TestEnsureKeepsExistingCA(t *testing.T) {
	ca, err := pki.NewCA(t0.AddDate(-1, 0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientset(secretObj("casecret", map[string][]byte{"cadata": ca.CertDER, "cakeydata": ca.KeyDER}))
	m, err := Ensure(context.Background(), c, Config{}, clocktesting.NewFakeClock(t0))
	if err != nil {
		t.Fatal(err)
	}
	if m.CA.Hash() != ca.Hash() {
		t.Error("Ensure did not use the stored CA")
	}
	for _, a := range c.Actions() {
		if a.Matches("update", "secrets") || a.Matches("delete", "secrets") {
			t.Errorf("Ensure modified a secret: %v", a)
		}
	}
}

func TestEnsureCorruptCA(t *testing.T) {
	orig := map[string][]byte{"cadata": []byte("junk"), "cakeydata": []byte("junk")}
	c := fake.NewClientset(secretObj("casecret", orig))
	_, err := Ensure(context.Background(), c, Config{}, clocktesting.NewFakeClock(t0))
	if err == nil || !strings.Contains(err.Error(), "kubeedge/casecret") || !strings.Contains(err.Error(), "parse certificate") {
		t.Fatalf("Ensure with a corrupt casecret = %v, want an error naming the secret and the problem", err)
	}
	if got := getSecret(t, c, "casecret").Data["cadata"]; string(got) != "junk" {
		t.Error("corrupt casecret was overwritten")
	}
}

func TestEnsureReissuesUnusableServerCert(t *testing.T) {
	ca, err := pki.NewCA(t0.AddDate(-1, 0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, dns []string, validity time.Duration) map[string][]byte {
		cert, key, err := ca.IssueServerCert(dns, []net.IP{net.ParseIP("127.0.0.1")}, t0, validity)
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{"cloudcoredata": cert, "cloudcorekeydata": key}
	}
	good := issue(ca, []string{"localhost"}, 0)
	for _, tc := range []struct {
		name   string
		stored map[string][]byte
		cfg    Config
		want   string
	}{
		{"other CA", issue(other, []string{"localhost"}, 0), Config{}, "not signed by the CA in casecret"},
		{"missing DNS SAN", good, Config{DNSNames: []string{"localhost", "cloud.example"}}, "lacks DNS SAN cloud.example"},
		{"missing IP SAN", good, Config{AdvertiseAddresses: []string{"10.0.0.1"}}, "lacks IP SAN 10.0.0.1"},
		{"expiring", issue(ca, []string{"localhost"}, 20*24*time.Hour), Config{}, "expires at 2030-01-22T03:04:05Z"},
		{"key mismatch", map[string][]byte{"cloudcoredata": good["cloudcoredata"], "cloudcorekeydata": issue(ca, []string{"localhost"}, 0)["cloudcorekeydata"]}, Config{}, "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset(
				secretObj("casecret", map[string][]byte{"cadata": ca.CertDER, "cakeydata": ca.KeyDER}),
				secretObj("cloudcoresecret", tc.stored),
			)
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			m, err := Ensure(context.Background(), c, tc.cfg, clocktesting.NewFakeClock(t0))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(m.ServerCertReissued, tc.want) {
				t.Errorf("ServerCertReissued = %q, want it to contain %q", m.ServerCertReissued, tc.want)
			}
			if _, err := usableServerCert(tc.cfg.WithDefaults(), ca, m.ServerCert.Certificate[0], mustKeyDER(t, m.ServerCert), t0); err != nil {
				t.Errorf("reissued certificate is not usable: %v", err)
			}
			if got := getSecret(t, c, "cloudcoresecret").Data["cloudcoredata"]; !slices.Equal(got, tc.stored["cloudcoredata"]) {
				t.Error("cloudcoresecret was overwritten")
			}
		})
	}
}

func mustKeyDER(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{AdvertiseAddresses: []string{"cloud.example"}}, `advertise address "cloud.example" is not an IP address`},
		{Config{DNSNames: []string{"Bad_Name"}}, `DNS name "Bad_Name"`},
		{Config{Namespace: "Kube"}, `namespace "Kube"`},
		{Config{TokenRefresh: -time.Second}, "token refresh period must be positive"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestServerTLSConfigHandshake(t *testing.T) {
	m, err := Ensure(context.Background(), fake.NewClientset(), Config{}, clocktesting.NewFakeClock(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.ServerTLSConfig(tls.RequireAndVerifyClientCert)
	if cfg.MinVersion != tls.VersionTLS12 || !cfg.ClientCAs.Equal(m.CA.Pool()) {
		t.Errorf("TLS config: MinVersion %x, ClientCAs not the CA pool", cfg.MinVersion)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		errc <- conn.(*tls.Conn).Handshake()
	}()
	cli, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: m.CA.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{m.ServerCert}})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	cli.Close()
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}
