package nodestatus

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Well-known node labels; LabelEdgeRole marks a node as an edge node
// (KubeEdge's node-role.kubernetes.io/edge="").
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelOS       = "kubernetes.io/os"
	LabelArch     = "kubernetes.io/arch"
	LabelEdgeRole = "node-role.kubernetes.io/edge"
)

// Condition reasons and messages edgecore reports.
const (
	ReasonReady  = "EdgeReady"
	MessageReady = "edgecore is posting ready status"
)

// ErrConfig is wrapped by every error about a bad Config.
var ErrConfig = errors.New("nodestatus: invalid config")

// Config says what to report and where to read the host's facts.
type Config struct {
	// NodeName is the node's name (edged.hostnameOverride).
	NodeName string
	// NodeIP is the InternalIP to report; empty picks one from the interfaces.
	NodeIP string
	// Labels are added to the node (edged.nodeLabels); they may override the
	// kubernetes.io/{hostname,os,arch} defaults, like the kubelet's
	// --node-labels, but not the edge role label.
	Labels  map[string]string
	MaxPods int
	// DataDir is where pods' ephemeral data lives; its filesystem's size is
	// the ephemeral-storage capacity. Empty means "/".
	DataDir        string
	KubeletVersion string
	// KubeletPort is reported as status.daemonEndpoints.kubeletEndpoint.port,
	// the port the apiserver asks CloudStream for (edgeStream.port); 0
	// reports none.
	KubeletPort int32
	// ProcRoot and EtcRoot default to /proc and /etc; tests point them at
	// fixtures.
	ProcRoot string
	EtcRoot  string
}

func (c Config) withDefaults() Config {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.EtcRoot == "" {
		c.EtcRoot = "/etc"
	}
	if c.DataDir == "" {
		c.DataDir = "/"
	}
	return c
}

// Validate checks c without side effects; the error names the bad field.
func (c Config) Validate() error {
	if err := wire.ValidateNodeName(c.NodeName); err != nil {
		return fmt.Errorf("%w: NodeName: %w", ErrConfig, err)
	}
	if c.NodeIP != "" {
		if _, err := netip.ParseAddr(c.NodeIP); err != nil {
			return fmt.Errorf("%w: NodeIP %q is not an IP address", ErrConfig, c.NodeIP)
		}
	}
	if c.MaxPods <= 0 {
		return fmt.Errorf("%w: MaxPods %d must be positive", ErrConfig, c.MaxPods)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("%w: label key %q: %s", ErrConfig, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(c.Labels[k]); len(errs) > 0 {
			return fmt.Errorf("%w: label %q value %q: %s", ErrConfig, k, c.Labels[k], strings.Join(errs, "; "))
		}
	}
	return nil
}

// Collect describes this host as a Node named cfg.NodeName, with heartbeat
// and transition times set to now.
func Collect(cfg Config, now time.Time) (*corev1.Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	mem, err := readMemTotal(cfg.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("nodestatus: memory: %w", err)
	}
	storage, err := fsCapacity(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("nodestatus: ephemeral-storage: %w", err)
	}
	ip := cfg.NodeIP
	if ip == "" {
		if ip, err = pickNodeIP(cfg.ProcRoot); err != nil {
			return nil, fmt.Errorf("nodestatus: node IP: %w", err)
		}
	}
	info, err := systemInfo(cfg)
	if err != nil {
		return nil, err
	}

	labels := map[string]string{
		LabelHostname: cfg.NodeName,
		LabelOS:       runtime.GOOS,
		LabelArch:     runtime.GOARCH,
	}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	labels[LabelEdgeRole] = ""

	resources := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(cfg.MaxPods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(storage, resource.BinarySI),
	}
	t := metav1.NewTime(now)
	cond := func(typ corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: t, LastTransitionTime: t}
	}
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName, Labels: labels},
		Status: corev1.NodeStatus{
			Capacity:    resources,
			Allocatable: resources.DeepCopy(),
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip},
				{Type: corev1.NodeHostName, Address: cfg.NodeName},
			},
			NodeInfo: info,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, ReasonReady, MessageReady),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "EdgeHasSufficientMemory", "edgecore has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "EdgeHasNoDiskPressure", "edgecore has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "EdgeHasSufficientPID", "edgecore has sufficient PID available"),
			},
		},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = cfg.KubeletPort
	return n, nil
}

func readMemTotal(procRoot string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return 0, err
	}
	return parseMemTotal(data)
}

func systemInfo(cfg Config) (corev1.NodeSystemInfo, error) {
	info := corev1.NodeSystemInfo{
		KubeletVersion:  cfg.KubeletVersion,
		OperatingSystem: runtime.GOOS,
		Architecture:    runtime.GOARCH,
		// Edged talks CRI to containerd; the runtime version is filled in
		// once that connection exists, not here.
		ContainerRuntimeVersion: "",
	}
	id, err := os.ReadFile(filepath.Join(cfg.EtcRoot, "machine-id"))
	switch {
	case err == nil:
		info.MachineID = strings.TrimSpace(string(id))
	case !errors.Is(err, fs.ErrNotExist):
		return info, fmt.Errorf("nodestatus: machine-id: %w", err)
	}
	// /proc/sys/kernel/osrelease is uname(2)'s release; reading it keeps
	// ProcRoot fixtures self-contained.
	if rel, err := os.ReadFile(filepath.Join(cfg.ProcRoot, "sys", "kernel", "osrelease")); err == nil {
		info.KernelVersion = strings.TrimSpace(string(rel))
	} else if info.KernelVersion, err = kernelRelease(); err != nil {
		return info, fmt.Errorf("nodestatus: kernel version: %w", err)
	}
	info.OSImage, err = osImage(cfg.EtcRoot)
	if err != nil {
		return info, fmt.Errorf("nodestatus: os image: %w", err)
	}
	return info, nil
}

// osImage is PRETTY_NAME from os-release, looked up where os-release(5)
// says: <etc>/os-release, then /usr/lib/os-release (only for the real /etc).
func osImage(etcRoot string) (string, error) {
	paths := []string{filepath.Join(etcRoot, "os-release")}
	if etcRoot == "/etc" {
		paths = append(paths, "/usr/lib/os-release")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if name := parseOSRelease(data)["PRETTY_NAME"]; name != "" {
			return name, nil
		}
		return "Linux", nil // os-release(5): PRETTY_NAME defaults to "Linux"
	}
	return "", nil
}

// iface is what pickIPv4 needs to know about a network interface.
type iface struct {
	name     string
	up       bool
	loopback bool
	addrs    []netip.Addr
}

// pickNodeIP chooses the InternalIP when none is configured.
func pickNodeIP(procRoot string) (string, error) {
	var preferred string
	if data, err := os.ReadFile(filepath.Join(procRoot, "net", "route")); err == nil {
		// A malformed table only loses the preference.
		preferred, _ = parseDefaultRoute(data)
	}
	nifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	ifs := make([]iface, 0, len(nifs))
	for _, n := range nifs {
		addrs, err := n.Addrs()
		if err != nil {
			continue // the interface went away meanwhile
		}
		i := iface{name: n.Name, up: n.Flags&net.FlagUp != 0, loopback: n.Flags&net.FlagLoopback != 0}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				i.addrs = append(i.addrs, p.Addr())
			}
		}
		ifs = append(ifs, i)
	}
	return pickIPv4(ifs, preferred), nil
}

// pickIPv4 returns the first global unicast IPv4 address of an up,
// non-loopback interface, trying the default route's interface (preferred)
// first, as the kubelet does; 127.0.0.1 when there is none.
func pickIPv4(ifs []iface, preferred string) string {
	first := func(i iface) (netip.Addr, bool) {
		if !i.up || i.loopback {
			return netip.Addr{}, false
		}
		for _, a := range i.addrs {
			a = a.Unmap()
			if a.Is4() && a.IsGlobalUnicast() {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	for _, i := range ifs {
		if i.name == preferred {
			if a, ok := first(i); ok {
				return a.String()
			}
		}
	}
	for _, i := range ifs {
		if a, ok := first(i); ok {
			return a.String()
		}
	}
	return "127.0.0.1"
}
