package streams

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// shared is one control plane for the package, started with an egress
// selector that sends its cluster traffic to CloudStream's proxy port. The
// KubeEdge CA exists before the apiserver (whose egress client certificate
// it issues) and is stored in kubeedge/casecret for cloudcore to adopt, as an
// operator would with keadm streamcerts.
var shared struct {
	cp                    *testenv.ControlPlane
	ca                    *pki.CA
	files                 stream.ClientFiles
	proxyPort, tunnelPort int
	reason                string
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "kest")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := setupShared(dir); err != nil {
			shared.reason = err.Error()
		}
		if shared.cp != nil {
			defer func() {
				if err := shared.cp.Stop(); err != nil {
					fmt.Fprintln(os.Stderr, "stop control plane:", err)
				}
			}()
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(
			// client-go and klog start process-wide background goroutines on first use.
			goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
			goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
			goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*typedDelayingType[...]).waitingLoop"),
			goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntilWithContext.func1"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*clientConnReadLoop).run"),
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func setupShared(dir string) error {
	ports, err := freeTCPPorts(2)
	if err != nil {
		return err
	}
	shared.proxyPort, shared.tunnelPort = ports[0], ports[1]
	if shared.ca, err = pki.NewCA(time.Now(), 0); err != nil {
		return err
	}
	shared.files, err = stream.WriteClientFiles(shared.ca, stream.ClientFilesOptions{
		Dir: filepath.Join(dir, "egress"), ProxyURL: fmt.Sprintf("https://127.0.0.1:%d", shared.proxyPort),
	}, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := testenv.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Dir:               filepath.Join(dir, "cp"),
		ControllerManager: true,
		Egress: &testenv.EgressOptions{ConfigFile: shared.files.EgressConfigFile,
			KubeletClientCert: shared.files.CertFile, KubeletClientKey: shared.files.KeyFile,
			// Edge kubelet serving certificates are verified: CloudStream
			// issues them for the nodes' reported addresses.
			KubeletCA: shared.files.CAFile,
			// Edge hostnames are not in DNS; the node proxy needs an address.
			KubeletPreferredAddressTypes: "InternalIP,Hostname"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("no control plane (build it with `make k8s`): %w", err)
	}
	shared.cp = cp
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certs.DefaultNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = cp.Client.CoreV1().Secrets(certs.DefaultNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: certs.CASecret},
		Data:       map[string][]byte{certs.CACertKey: shared.ca.CertDER, certs.CAKeyKey: shared.ca.KeyDER},
	}, metav1.CreateOptions{})
	return err
}

func freeTCPPorts(n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// controlPlane returns the shared control plane, or skips (fails in CI) with the reason.
func controlPlane(t testing.TB) *testenv.ControlPlane {
	t.Helper()
	testenv.Require(t, shared.cp != nil, shared.reason)
	return shared.cp
}
