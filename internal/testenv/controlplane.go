package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Names of the control plane binaries, also used for their pid and log files.
const (
	etcdName              = "etcd"
	apiServerName         = "kube-apiserver"
	controllerManagerName = "kube-controller-manager"
	schedulerName         = "kube-scheduler"
)

// ErrDirInUse is returned when a directory already holds a running control
// plane, or files that are not a control plane's.
var ErrDirInUse = errors.New("testenv: control plane directory in use")

const (
	// readyTimeout bounds the wait for /readyz and the default objects.
	readyTimeout = 60 * time.Second
	// stopGrace is how long a process may take to exit after SIGTERM.
	stopGrace = 10 * time.Second
	// markerFile marks a directory as written by StartControlPlane, so that a
	// stopped control plane's files may be replaced without risk of wiping a
	// directory given by mistake.
	markerFile = ".testenv-controlplane"
	routeFile  = "route"
)

// ControlPlaneOptions configures StartControlPlane.
type ControlPlaneOptions struct {
	// Dir holds PKI, kubeconfigs, etcd data, logs and pid files. It must be
	// empty, absent, or hold a stopped control plane, which is replaced.
	Dir string
	// BinDir holds the binaries; empty means DefaultBinDir.
	BinDir string
	// Ports on 127.0.0.1; 0 picks a free port.
	EtcdPort, EtcdPeerPort, APIServerPort int
	// ControllerManager and Scheduler start those components too.
	ControllerManager, Scheduler bool
	// NodeMonitorGracePeriod is kube-controller-manager's
	// --node-monitor-grace-period; 0 keeps its default.
	NodeMonitorGracePeriod time.Duration
	// ServiceCIDR, if set, is used as the service range instead of claiming a
	// free 10.96.N.0/24; as root its blackhole route must not exist yet.
	ServiceCIDR string
	// Detach starts the processes in their own session so that they outlive
	// the caller, and records their PIDs in Dir/pids/<name>.pid for
	// StopDetached.
	Detach bool
	// Egress, if set, routes the apiserver's cluster traffic through an
	// egress selector (CloudStream) and gives it a kubelet client certificate.
	Egress *EgressOptions
	// Logger receives progress messages; nil means slog.Default().
	Logger *slog.Logger
}

// validate checks the options without side effects.
func (o *ControlPlaneOptions) validate() error {
	if o.Dir == "" {
		return errors.New("control plane options: Dir is empty")
	}
	ports := map[int]string{}
	for _, p := range []struct {
		name string
		v    int
	}{{"EtcdPort", o.EtcdPort}, {"EtcdPeerPort", o.EtcdPeerPort}, {"APIServerPort", o.APIServerPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("control plane options: %s %d is out of range 0-65535", p.name, p.v)
		}
		if p.v == 0 {
			continue
		}
		if other, ok := ports[p.v]; ok {
			return fmt.Errorf("control plane options: %s and %s are both %d", other, p.name, p.v)
		}
		ports[p.v] = p.name
	}
	if o.NodeMonitorGracePeriod < 0 {
		return fmt.Errorf("control plane options: NodeMonitorGracePeriod %s is negative", o.NodeMonitorGracePeriod)
	}
	if o.NodeMonitorGracePeriod > 0 && !o.ControllerManager {
		return errors.New("control plane options: NodeMonitorGracePeriod is set but ControllerManager is not")
	}
	if o.ServiceCIDR != "" {
		if _, err := parseServiceCIDR(o.ServiceCIDR); err != nil {
			return err
		}
	}
	if o.Egress != nil {
		if err := o.Egress.validate(); err != nil {
			return err
		}
	}
	return nil
}

func parseServiceCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("control plane options: ServiceCIDR %q: %w", s, err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("control plane options: ServiceCIDR %q is not a network address (want %s)", s, p.Masked())
	}
	if p.Addr().Is4() && p.Bits() > 30 || p.Addr().Is6() && p.Bits() > 126 {
		return netip.Prefix{}, fmt.Errorf("control plane options: ServiceCIDR %q is too small", s)
	}
	return p, nil
}

// ControlPlane is a running etcd + kube-apiserver, optionally with
// kube-controller-manager and kube-scheduler.
type ControlPlane struct {
	// Dir is the absolute directory holding its files.
	Dir string
	// Kubeconfig is the path of the admin (system:masters) kubeconfig.
	Kubeconfig string
	// RESTConfig and Client act as admin.
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// CAFile is the cluster CA certificate, which signs the serving and
	// client certificates and, through the controller-manager, CSRs.
	CAFile string
	// ServiceCIDR is the service range in use.
	ServiceCIDR netip.Prefix

	log        *slog.Logger
	httpClient *http.Client // behind Client; its idle connections are closed on Stop
	route      netip.Prefix // blackhole route we added; invalid if none
	procs      []*process   // in start order; appended only during StartControlPlane
	stopOnce   sync.Once
	stopErr    error // result of the first Stop; written inside stopOnce
}

// StartControlPlane starts a control plane and waits until it serves
// requests: /readyz ok, the "default" namespace exists and, with the
// controller-manager, the "default" ServiceAccount too. ctx bounds only the
// start-up; the processes run until Stop or StopDetached. On error everything
// started is stopped again.
func StartControlPlane(ctx context.Context, opts ControlPlaneOptions) (*ControlPlane, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	binDir := opts.BinDir
	if binDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, err
		}
		binDir = d
	}
	if err := checkBinaries(binDir, requiredBinaries(opts)...); err != nil {
		return nil, err
	}
	dir, err := prepareDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cp := &ControlPlane{Dir: dir, log: log}
	if err := cp.start(ctx, opts, binDir); err != nil {
		if stopErr := cp.Stop(); stopErr != nil {
			log.Warn("clean-up after failed start", "err", stopErr)
		}
		return nil, err
	}
	log.Info("control plane ready", "dir", dir, "apiserver", cp.APIServerURL,
		"serviceCIDR", cp.ServiceCIDR, "elapsed", time.Since(start).Round(time.Millisecond))
	return cp, nil
}

func requiredBinaries(opts ControlPlaneOptions) []string {
	names := []string{etcdName, apiServerName}
	if opts.ControllerManager {
		names = append(names, controllerManagerName)
	}
	if opts.Scheduler {
		names = append(names, schedulerName)
	}
	return names
}

func (cp *ControlPlane) start(ctx context.Context, opts ControlPlaneOptions, binDir string) error {
	dir := cp.Dir
	if err := os.WriteFile(filepath.Join(dir, markerFile), nil, 0o644); err != nil {
		return fmt.Errorf("control plane dir: %w", err)
	}
	for _, sub := range []string{"logs", "pids"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("control plane dir: %w", err)
		}
	}
	ports, err := pickPorts(opts.EtcdPort, opts.EtcdPeerPort, opts.APIServerPort)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]

	var want netip.Prefix
	if opts.ServiceCIDR != "" {
		want, _ = parseServiceCIDR(opts.ServiceCIDR) // validated already
	}
	cidr, added, err := claimServiceRange(want)
	if err != nil {
		return err
	}
	cp.ServiceCIDR = cidr
	if added {
		cp.route = cidr
		if err := os.WriteFile(filepath.Join(dir, routeFile), []byte(cidr.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("record route: %w", err)
		}
	} else {
		cp.log.Warn("no blackhole route for the service range (needs root): pods must not run against this control plane",
			"serviceCIDR", cidr)
	}

	pki, err := generatePKI(filepath.Join(dir, "pki"), firstIP(cidr), time.Now())
	if err != nil {
		return err
	}
	cp.CAFile = pki.CACert
	l := layout{dir: dir, etcdPort: etcdPort, peerPort: peerPort, apiPort: apiPort, serviceCIDR: cidr,
		pki: pki, nodeMonitorGracePeriod: opts.NodeMonitorGracePeriod, egress: opts.Egress}
	cp.APIServerURL = l.apiServerURL()
	cp.EtcdURL = l.etcdURL()
	cp.Kubeconfig = l.kubeconfig("admin")
	for _, k := range []struct {
		path, user string
		kp         keyPair
	}{
		{cp.Kubeconfig, "admin", pki.admin},
		{l.kubeconfig("controller-manager"), "system:kube-controller-manager", pki.controllerManager},
		{l.kubeconfig("scheduler"), "system:kube-scheduler", pki.scheduler},
	} {
		if err := writeKubeconfig(k.path, cp.APIServerURL, pki.caPEM, k.user, k.kp); err != nil {
			return err
		}
	}
	cp.RESTConfig, err = restConfigFromKubeconfig(cp.Kubeconfig)
	if err != nil {
		return err
	}
	cp.httpClient, err = rest.HTTPClientFor(cp.RESTConfig)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	client, err := kubernetes.NewForConfigAndClient(cp.RESTConfig, cp.httpClient)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	cp.Client = client

	if err := cp.run(opts.Detach, binDir, etcdName, l.etcdArgs()...); err != nil {
		return err
	}
	if err := cp.run(opts.Detach, binDir, apiServerName, l.apiServerArgs()...); err != nil {
		return err
	}
	apiStart := time.Now()
	if err := cp.waitReady(ctx); err != nil {
		return err
	}
	cp.log.Info("kube-apiserver ready", "elapsed", time.Since(apiStart).Round(time.Millisecond))
	// The controller-manager gives up if the apiserver is not healthy within
	// 10 s of its start, so it starts only now.
	if opts.ControllerManager {
		if err := cp.run(opts.Detach, binDir, controllerManagerName, l.controllerManagerArgs()...); err != nil {
			return err
		}
	}
	if opts.Scheduler {
		if err := cp.run(opts.Detach, binDir, schedulerName, l.schedulerArgs()...); err != nil {
			return err
		}
	}
	return cp.waitDefaults(ctx, opts.ControllerManager)
}

// run starts one binary and, when detached, records its PID.
func (cp *ControlPlane) run(detach bool, binDir, name string, args ...string) error {
	p, err := startProcess(name, filepath.Join(binDir, name), args,
		filepath.Join(cp.Dir, "logs", name+".log"), detach)
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, p)
	if detach {
		pidPath := filepath.Join(cp.Dir, "pids", name+".pid")
		if err := os.WriteFile(pidPath, []byte(strconv.Itoa(p.cmd.Process.Pid)+"\n"), 0o644); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
	}
	return nil
}

// pickPorts returns the given ports, with each 0 replaced by a free port on
// 127.0.0.1. The listeners stay open until all are chosen, so that the
// picked ports differ.
func pickPorts(want ...int) ([]int, error) {
	out := make([]int, len(want))
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i, p := range want {
		if p != 0 {
			out[i] = p
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		listeners = append(listeners, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

// checkAlive fails if a started process has exited.
func (cp *ControlPlane) checkAlive() error {
	for _, p := range cp.procs {
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (%v); last lines of %s:\n%s",
				p.name, p.err, p.log, logTail(p.log, 20))
		}
	}
	return nil
}

// waitReady polls /readyz until it answers ok.
func (cp *ControlPlane) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	for {
		if err := cp.checkAlive(); err != nil {
			return err
		}
		body, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		if err != nil {
			lastErr = err
		} else {
			lastErr = fmt.Errorf("/readyz answered %q", body)
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			apiLog := filepath.Join(cp.Dir, "logs", apiServerName+".log")
			return fmt.Errorf("kube-apiserver not ready: %w; last error: %v; last lines of %s:\n%s",
				err, lastErr, apiLog, logTail(apiLog, 20))
		}
	}
}

// waitDefaults waits for the objects every client expects to exist: the
// "default" namespace (made by the apiserver) and, with the
// controller-manager, the "default" ServiceAccount, without which no Pod can
// be created.
func (cp *ControlPlane) waitDefaults(ctx context.Context, withKCM bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	check := func() error {
		if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("namespace default: %w", err)
		}
		if withKCM {
			if _, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return fmt.Errorf("serviceaccount default/default: %w", err)
			}
		}
		return nil
	}
	for {
		if err := cp.checkAlive(); err != nil {
			return err
		}
		err := check()
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			cp.log.Debug("waiting for default objects", "err", err)
		}
		if perr := pause(ctx, 100*time.Millisecond); perr != nil {
			return fmt.Errorf("control plane defaults not ready: %w; last error: %v", perr, err)
		}
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PIDs returns the process IDs of the running components by binary name.
func (cp *ControlPlane) PIDs() map[string]int {
	m := make(map[string]int, len(cp.procs))
	for _, p := range cp.procs {
		m[p.name] = p.cmd.Process.Pid
	}
	return m
}

// Stop stops the processes in reverse start order (SIGTERM, SIGKILL after a
// grace period), waits for them to exit and removes the blackhole route.
// It is idempotent and safe to call concurrently; later calls return the
// first call's result.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		start := time.Now()
		if cp.httpClient != nil {
			cp.httpClient.CloseIdleConnections()
		}
		for i := len(cp.procs) - 1; i >= 0; i-- {
			cp.procs[i].stop(stopGrace)
			_ = os.Remove(filepath.Join(cp.Dir, "pids", cp.procs[i].name+".pid"))
		}
		var errs []error
		if cp.route.IsValid() {
			if err := removeBlackhole(cp.route); err != nil {
				errs = append(errs, err)
			} else {
				_ = os.Remove(filepath.Join(cp.Dir, routeFile))
			}
		}
		cp.stopErr = errors.Join(errs...)
		cp.log.Info("control plane stopped", "dir", cp.Dir, "elapsed", time.Since(start).Round(time.Millisecond))
	})
	return cp.stopErr
}
