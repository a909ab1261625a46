package testenv

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func testLayout(t *testing.T, grace time.Duration) layout {
	t.Helper()
	dir := canonicalTempDir(t)
	p, err := generatePKI(dir+"/pki", netip.MustParseAddr("10.96.5.1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return layout{dir: dir, etcdPort: 12379, peerPort: 12380, apiPort: 6443,
		serviceCIDR: netip.MustParsePrefix("10.96.5.0/24"), pki: p, nodeMonitorGracePeriod: grace}
}

func TestLayoutArgs(t *testing.T) {
	l := testLayout(t, 40*time.Second)
	all := map[string][]string{
		etcdName:              l.etcdArgs(),
		apiServerName:         l.apiServerArgs(),
		controllerManagerName: l.controllerManagerArgs(),
		schedulerName:         l.schedulerArgs(),
	}
	want := map[string][]string{
		etcdName: {"--unsafe-no-fsync", "--listen-client-urls=http://127.0.0.1:12379",
			"--listen-peer-urls=http://127.0.0.1:12380", "--data-dir=" + l.dir + "/etcd"},
		apiServerName: {"--secure-port=6443", "--bind-address=127.0.0.1", "--authorization-mode=Node,RBAC",
			"--allow-privileged=true", "--service-cluster-ip-range=10.96.5.0/24",
			"--etcd-servers=http://127.0.0.1:12379"},
		controllerManagerName: {"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
			"--node-monitor-grace-period=40s", "--service-cluster-ip-range=10.96.5.0/24",
			"--kubeconfig=" + l.dir + "/controller-manager.kubeconfig"},
		schedulerName: {"--leader-elect=false", "--secure-port=0", "--kubeconfig=" + l.dir + "/scheduler.kubeconfig"},
	}
	for name, args := range all {
		for _, w := range want[name] {
			if !slices.Contains(args, w) {
				t.Errorf("%s args lack %s: %q", name, w, args)
			}
		}
		// StopDetached tells our processes from PID reuse by an argument
		// under the directory: every binary must have one.
		cmdline := strings.Join(append([]string{"/bin/" + name}, args...), "\x00")
		if !cmdlineMatches([]byte(cmdline), name, l.dir) {
			t.Errorf("%s: no argument under %s, StopDetached could not recognise it", name, l.dir)
		}
	}
	if args := testLayout(t, 0).controllerManagerArgs(); slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--node-monitor-grace-period")
	}) {
		t.Errorf("grace period 0 must keep the default, got %q", args)
	}
}

func TestLayoutEgressArgs(t *testing.T) {
	l := testLayout(t, 0)
	if slices.ContainsFunc(l.apiServerArgs(), func(a string) bool { return strings.HasPrefix(a, "--egress") }) {
		t.Fatal("egress flags without Egress options")
	}
	l.egress = &EgressOptions{ConfigFile: "/e.yaml", KubeletClientCert: "/c.crt", KubeletClientKey: "/c.key", KubeletCA: "/ca.crt",
		KubeletPreferredAddressTypes: "InternalIP,Hostname"}
	for _, w := range []string{"--egress-selector-config-file=/e.yaml", "--kubelet-client-certificate=/c.crt", "--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-key=/c.key", "--kubelet-certificate-authority=/ca.crt", "--secure-port=6443"} {
		if !slices.Contains(l.apiServerArgs(), w) {
			t.Errorf("apiserver args lack %s", w)
		}
	}
	o := ControlPlaneOptions{Dir: t.TempDir(), Egress: &EgressOptions{ConfigFile: "/nonexistent/e.yaml", KubeletClientCert: "/c", KubeletClientKey: "/k"}}
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "Egress.ConfigFile") {
		t.Fatalf("validate with a missing egress file: %v", err)
	}
}
