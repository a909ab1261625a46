package stream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/pki/pkitest"
)

func TestWriteClientFiles(t *testing.T) {
	ca := pkitest.NewCA(t)
	dir := filepath.Join(t.TempDir(), "egress")
	f, err := WriteClientFiles(ca, ClientFilesOptions{Dir: dir, ProxyURL: "https://127.0.0.1:10003"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(mustRead(t, f.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.AuthorizeStreamClient(cert); err != nil || cert.Subject.CommonName != DefaultClientCommonName {
		t.Fatalf("certificate %q: %v", cert.Subject.CommonName, err)
	}
	if _, _, err := pki.ParseKeyPEM(mustRead(t, f.KeyFile)); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(f.KeyFile); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	caCert, err := pki.ParseCertPEM(mustRead(t, f.CAFile))
	if err != nil || !caCert.Equal(ca.Cert) {
		t.Fatalf("CA file: %v", err)
	}
	want := `# kube-apiserver --egress-selector-config-file: kubelet and cluster traffic through kubeedge CloudStream.
apiVersion: apiserver.k8s.io/v1beta1
egressSelections:
- connection:
    proxyProtocol: HTTPConnect
    transport:
      tcp:
        tlsConfig:
          caBundle: ` + f.CAFile + `
          clientCert: ` + f.CertFile + `
          clientKey: ` + f.KeyFile + `
        url: https://127.0.0.1:10003
  name: cluster
kind: EgressSelectorConfiguration
`
	if got := string(mustRead(t, f.EgressConfigFile)); got != want {
		t.Fatalf("egress configuration:\n%s\nwant:\n%s", got, want)
	}
	flags := strings.Join(APIServerFlags(f), " ")
	if !strings.Contains(flags, "--egress-selector-config-file="+f.EgressConfigFile) || !strings.Contains(flags, "--kubelet-client-certificate="+f.CertFile) {
		t.Fatalf("flags %s", flags)
	}

	// Without a proxy URL only the client files are written.
	f2, err := WriteClientFiles(ca, ClientFilesOptions{Dir: t.TempDir(), CommonName: "metrics-server"}, time.Now())
	if err != nil || f2.EgressConfigFile != "" {
		t.Fatalf("client files only: %+v, %v", f2, err)
	}
	for _, bad := range []string{"http://x:1", "https://x", "x:1", "https://x:1/path"} {
		if _, err := WriteClientFiles(ca, ClientFilesOptions{Dir: t.TempDir(), ProxyURL: bad}, time.Now()); err == nil {
			t.Errorf("proxy URL %q accepted", bad)
		}
	}
	if _, err := WriteClientFiles(ca, ClientFilesOptions{Dir: t.TempDir(), CommonName: "system:node:x"}, time.Now()); err == nil {
		t.Error("a node common name was accepted")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
