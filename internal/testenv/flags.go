package testenv

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"time"
)

// layout is where a control plane's parts listen and keep their files; it
// yields each binary's command line.
type layout struct {
	dir                    string
	etcdPort, peerPort     int
	apiPort                int
	serviceCIDR            netip.Prefix
	pki                    *pkiFiles
	nodeMonitorGracePeriod time.Duration  // 0: the controller-manager's default
	egress                 *EgressOptions // nil: no egress selector
}

func (l layout) etcdURL() string      { return "http://127.0.0.1:" + strconv.Itoa(l.etcdPort) }
func (l layout) peerURL() string      { return "http://127.0.0.1:" + strconv.Itoa(l.peerPort) }
func (l layout) apiServerURL() string { return "https://127.0.0.1:" + strconv.Itoa(l.apiPort) }

// kubeconfig returns the path of the kubeconfig of one client.
func (l layout) kubeconfig(client string) string {
	return filepath.Join(l.dir, client+".kubeconfig")
}

func (l layout) etcdArgs() []string {
	return []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(l.dir, "etcd"),
		"--listen-client-urls=" + l.etcdURL(),
		"--advertise-client-urls=" + l.etcdURL(),
		"--listen-peer-urls=" + l.peerURL(),
		"--initial-advertise-peer-urls=" + l.peerURL(),
		"--initial-cluster=testenv=" + l.peerURL(),
		// Data lives only as long as the test or dev cluster; fsync would
		// only slow every write on a shared disk.
		"--unsafe-no-fsync",
	}
}

func (l layout) apiServerArgs() []string {
	p := l.pki
	return append([]string{
		"--etcd-servers=" + l.etcdURL(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(l.apiPort),
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-cluster-ip-range=" + l.serviceCIDR.String(),
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// The aggregation layer (for metrics-server and kubectl top). With no
		// kube-proxy the apiserver must dial endpoint IPs, not Service IPs.
		"--requestheader-client-ca-file=" + p.FrontProxyCA,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.FrontProxyClient,
		"--proxy-client-key-file=" + p.FrontProxyKey,
		"--enable-aggregator-routing=true",
		// Keeps the apiserver from writing self-signed certificates under
		// /var/run/kubernetes.
		"--cert-dir=" + filepath.Join(l.dir, "pki"),
	}, l.egress.apiServerArgs()...)
}

func (l layout) controllerManagerArgs() []string {
	p := l.pki
	args := []string{
		"--kubeconfig=" + l.kubeconfig("controller-manager"),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.SAKey,
		"--root-ca-file=" + p.CACert,
		"--cluster-signing-cert-file=" + p.CACert,
		"--cluster-signing-key-file=" + p.CAKey,
		"--service-cluster-ip-range=" + l.serviceCIDR.String(),
		// At start-up it creates a ServiceAccount and token for each
		// controller; its default limit of 20 QPS makes that take seconds.
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	}
	if l.nodeMonitorGracePeriod > 0 {
		args = append(args, "--node-monitor-grace-period="+l.nodeMonitorGracePeriod.String())
	}
	return args
}

func (l layout) schedulerArgs() []string {
	return []string{
		"--kubeconfig=" + l.kubeconfig("scheduler"),
		"--leader-elect=false",
		"--secure-port=0",
	}
}
