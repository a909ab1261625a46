package keadm

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

func TestStreamCerts(t *testing.T) {
	kc := writeKubeconfig(t)
	ca, err := pki.NewCA(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kubeedge", Name: "casecret"},
		Data: map[string][]byte{"cadata": ca.CertDER, "cakeydata": ca.KeyDER}}
	out := filepath.Join(t.TempDir(), "egress")
	r := run(t.Context(), Deps{NewClient: fakeClient(secret)}, "streamcerts", "--kube-config", kc, "--out", out, "--proxy-url", "https://10.0.0.1:10003")
	r.mustSucceed(t)
	for _, want := range []string{"--egress-selector-config-file=" + filepath.Join(out, "egress-selector-configuration.yaml"),
		"--kubelet-client-certificate=" + filepath.Join(out, "stream-client.crt"), "--kubelet-client-key=" + filepath.Join(out, "stream-client.key")} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "stream-client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509VerifyClient(ca)); err != nil {
		t.Fatalf("certificate not issued by the casecret CA: %v", err)
	}

	run(t.Context(), Deps{NewClient: fakeClient()}, "streamcerts", "--kube-config", kc, "--out", out).
		mustErr(t, "CA secret kubeedge/casecret not found: is cloudcore running?")
	run(t.Context(), Deps{NewClient: fakeClient(secret)}, "streamcerts", "--kube-config", kc).mustErr(t, "--out is required")
	run(t.Context(), Deps{NewClient: fakeClient(secret)}, "streamcerts", "--kube-config", kc, "--out", out, "--proxy-url", "http://x:1").
		mustErr(t, `proxy URL "http://x:1" is not https://host:port`)
}

func x509VerifyClient(ca *pki.CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
