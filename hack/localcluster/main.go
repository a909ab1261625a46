// Command localcluster starts and stops the control plane of the local
// development cluster (`make up`, `make down`): etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on fixed loopback ports,
// detached so that they outlive this command.
//
//	localcluster up   [-dir DIR] [-bin-dir DIR]
//	localcluster down [-dir DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/pki"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

const usage = "usage: localcluster up|down [-dir DIR] [-bin-dir DIR]"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("localcluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "_output/local/cluster", "directory of the cluster's files (PKI, kubeconfigs, etcd data, logs)")
	binDir := fs.String("bin-dir", "", "directory of the control plane binaries (default: $KUBEEDGE_K8S_BIN or _output/k8s/VERSION/bin of the repository)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; %s", fs.Args(), usage)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "up":
		return up(ctx, *dir, *binDir, log, stdout)
	case "down":
		if err := testenv.StopDetached(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "control plane in %s stopped\n", *dir)
		return nil
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func up(ctx context.Context, dir, binDir string, log *slog.Logger, stdout io.Writer) error {
	kubeconfig, err := filepath.Abs(filepath.Join(dir, "admin.kubeconfig"))
	if err != nil {
		return err
	}
	running, err := testenv.RunningDetached(ctx, dir)
	if err != nil {
		return err
	}
	if running {
		fmt.Fprintf(stdout, "control plane already running\nkubeconfig: %s\n", kubeconfig)
		return nil
	}
	// Leftovers of a half-dead cluster (some processes gone) go first.
	if err := testenv.StopDetached(dir); err != nil {
		return err
	}
	// The KubeEdge CA exists before the apiserver, which presents a client
	// certificate it issued to CloudStream (its egress selector sends
	// kubelet traffic there: kubectl logs/exec to edge pods without iptables);
	// cloudcore adopts it from kubeedge/casecret.
	// Beside the cluster's directory, which StartControlPlane empties.
	caDir := filepath.Join(filepath.Dir(filepath.Clean(dir)), "kubeedge-ca")
	ca, err := loadOrCreateCA(caDir)
	if err != nil {
		return err
	}
	files, err := stream.WriteClientFiles(ca, stream.ClientFilesOptions{
		Dir: caDir, ProxyURL: "https://127.0.0.1:10003"}, time.Now())
	if err != nil {
		return err
	}
	start := time.Now()
	cp, err := testenv.StartControlPlane(ctx, testenv.ControlPlaneOptions{
		Egress: &testenv.EgressOptions{ConfigFile: files.EgressConfigFile,
			KubeletClientCert: files.CertFile, KubeletClientKey: files.KeyFile, KubeletCA: files.CAFile,
			KubeletPreferredAddressTypes: "InternalIP,Hostname"},
		Dir:                    dir,
		BinDir:                 binDir,
		EtcdPort:               12379,
		EtcdPeerPort:           12380,
		APIServerPort:          6443,
		ControllerManager:      true,
		Scheduler:              true,
		NodeMonitorGracePeriod: 40 * time.Second,
		Detach:                 true,
		Logger:                 log,
	})
	if err != nil {
		return err
	}
	if err := storeCA(ctx, cp, ca); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "control plane ready in %s (apiserver %s, services %s)\nkubeconfig: %s\n",
		time.Since(start).Round(100*time.Millisecond), cp.APIServerURL, cp.ServiceCIDR, cp.Kubeconfig)
	return nil
}

// loadOrCreateCA reads the KubeEdge CA kept in dir (ca.der, ca.key.der),
// creating it on the first start.
func loadOrCreateCA(dir string) (*pki.CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.der"), filepath.Join(dir, "ca.key.der")
	certDER, err1 := os.ReadFile(certPath)
	keyDER, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		return pki.LoadCA(certDER, keyDER)
	}
	ca, err := pki.NewCA(time.Now(), 0)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, ca.KeyDER, 0o600); err != nil {
		return nil, err
	}
	return ca, os.WriteFile(certPath, ca.CertDER, 0o600)
}

// storeCA puts ca into kubeedge/casecret unless a CA is there already.
func storeCA(ctx context.Context, cp *testenv.ControlPlane, ca *pki.CA) error {
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: certs.DefaultNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = cp.Client.CoreV1().Secrets(certs.DefaultNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: certs.CASecret},
		Data:       map[string][]byte{certs.CACertKey: ca.CertDER, certs.CAKeyKey: ca.KeyDER},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
