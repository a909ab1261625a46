package edged

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
)

// DefaultPodSandboxImage is the pause image hack/localcontainerd and the
// test environment build and import (no registry needed).
const DefaultPodSandboxImage = "localhost/kubeedge/pause:3.10"

// Config is edged's configuration. The comments name the KubeEdge
// (modules.edged / tailoredKubeletConfig) field each one corresponds to.
type Config struct {
	// NodeName is this node; pods bound elsewhere are ignored.
	NodeName string
	// NodeIP is reported as the pods' hostIP (and podIP of hostNetwork
	// pods). KubeEdge: nodeIP.
	NodeIP string
	// RemoteRuntimeEndpoint is the CRI socket, unix:///path.
	// KubeEdge: remoteRuntimeEndpoint.
	RemoteRuntimeEndpoint string
	// RootDirectory holds pod directories (volumes, termination
	// messages). KubeEdge: rootDirectory (default /var/lib/edged).
	RootDirectory string
	// PodLogsDirectory holds container logs as the kubelet lays them out:
	// <dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log.
	// kubelet: podLogsDir.
	PodLogsDirectory string
	// PodSandboxImage is the runtime's sandbox (pause) image; edged never
	// garbage-collects it and warns when it is missing. The runtime's own
	// config decides which image it runs. KubeEdge: podSandboxImage.
	PodSandboxImage string
	// CgroupDriver must be "cgroupfs" (cgroup v1 hierarchies under
	// /sys/fs/cgroup). KubeEdge: cgroupDriver.
	CgroupDriver string
	// CgroupRoot is the cgroup under which edged creates
	// kubepods[/burstable|/besteffort]/pod<uid>. KubeEdge: cgroupRoot.
	CgroupRoot string
	// CgroupFS is where the cgroup hierarchies are mounted (for cleanup
	// of orphaned pod cgroups). Default /sys/fs/cgroup.
	CgroupFS string
	// MaxPods is the most pods edged runs; further pods fail admission
	// with reason OutOfpods. KubeEdge: maxPods.
	MaxPods int
	// ImageGCHighThresholdPercent: disk usage of the image filesystem at
	// which image GC starts; ImageGCLowThresholdPercent: where it stops.
	// KubeEdge: imageGCHighThreshold / imageGCLowThreshold. 100 disables.
	ImageGCHighThresholdPercent, ImageGCLowThresholdPercent int
	// ImageMinimumGCAge: unused images younger than this are kept.
	ImageMinimumGCAge time.Duration
	// MaxPerPodContainerCount is how many dead instances of each container
	// are kept (1 keeps the previous one for `kubectl logs --previous`).
	// KubeEdge: maximumDeadContainersPerPod.
	MaxPerPodContainerCount int
	// MaxContainerCount bounds dead containers on the node; -1 means no
	// limit. KubeEdge: maxContainerCount.
	MaxContainerCount int
	// MinimumGCAge: dead containers younger than this are kept.
	// KubeEdge: minimumGCAge.
	MinimumGCAge time.Duration
	// ClusterDNS and ClusterDomain configure pods with dnsPolicy
	// ClusterFirst; without ClusterDNS they use the node's resolv.conf.
	ClusterDNS    []string
	ClusterDomain string
	// SyncFrequency is how often every pod is re-synced even without a
	// change. kubelet: syncFrequency.
	SyncFrequency time.Duration
	// RelistPeriod is how often the runtime is listed for state changes
	// (PLEG).
	RelistPeriod time.Duration
	// HousekeepingPeriod is how often orphans (sandboxes, pod directories,
	// cgroups) and dead containers are collected.
	HousekeepingPeriod time.Duration
	// ImageGCPeriod is how often image disk usage is checked.
	ImageGCPeriod time.Duration
	// RuntimeRequestTimeout bounds each CRI call except pulls.
	RuntimeRequestTimeout time.Duration
	// ImagePullTimeout bounds a pull.
	ImagePullTimeout time.Duration
	// BackOffInitial and BackOffMax are the container restart and image
	// pull back-off (10 s doubling to 300 s, as the kubelet's).
	BackOffInitial, BackOffMax time.Duration
	// ConcurrentSandboxStarts bounds RunPodSandbox calls in flight. The
	// runtime's work per sandbox (netns, CNI, shim, pause) is CPU-bound on
	// small nodes: a burst of 30 all-at-once takes as long in total as 4
	// at a time, but with the limit the first pods run after a fraction
	// of the time instead of all finishing together at the end.
	ConcurrentSandboxStarts int
}

// Default returns edged's defaults (those of the kubelet and KubeEdge).
func Default() Config {
	return Config{
		RemoteRuntimeEndpoint:       "unix:///run/containerd/containerd.sock",
		RootDirectory:               "/var/lib/edged",
		PodLogsDirectory:            "/var/log/pods",
		PodSandboxImage:             DefaultPodSandboxImage,
		CgroupDriver:                "cgroupfs",
		CgroupRoot:                  "/",
		CgroupFS:                    "/sys/fs/cgroup",
		MaxPods:                     110,
		ImageGCHighThresholdPercent: 85,
		ImageGCLowThresholdPercent:  80,
		ImageMinimumGCAge:           2 * time.Minute,
		MaxPerPodContainerCount:     1,
		MaxContainerCount:           -1,
		ClusterDomain:               "cluster.local",
		SyncFrequency:               time.Minute,
		RelistPeriod:                time.Second,
		HousekeepingPeriod:          time.Minute,
		ImageGCPeriod:               5 * time.Minute,
		RuntimeRequestTimeout:       2 * time.Minute,
		ImagePullTimeout:            10 * time.Minute,
		BackOffInitial:              10 * time.Second,
		BackOffMax:                  300 * time.Second,
		ConcurrentSandboxStarts:     4,
	}
}

// Validate checks cfg without side effects and names the offending field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("edged: "+format, a...)) }
	if c.NodeName == "" {
		bad("NodeName is empty")
	}
	if c.NodeIP != "" {
		if _, err := netip.ParseAddr(c.NodeIP); err != nil {
			bad("nodeIP %q is not an IP address", c.NodeIP)
		}
	}
	if _, err := cri.ParseEndpoint(c.RemoteRuntimeEndpoint); err != nil {
		bad("remoteRuntimeEndpoint: %v", err)
	}
	for _, d := range []struct{ name, v string }{{"rootDirectory", c.RootDirectory}, {"podLogsDirectory", c.PodLogsDirectory}, {"cgroupFS", c.CgroupFS}} {
		if !filepath.IsAbs(d.v) {
			bad("%s %q is not an absolute path", d.name, d.v)
		}
	}
	if c.PodSandboxImage == "" {
		bad("podSandboxImage is empty")
	}
	if c.CgroupDriver != "cgroupfs" {
		bad("cgroupDriver %q is not supported (only cgroupfs)", c.CgroupDriver)
	}
	if !strings.HasPrefix(c.CgroupRoot, "/") {
		bad("cgroupRoot %q is not an absolute cgroup path", c.CgroupRoot)
	}
	if c.MaxPods < 1 {
		bad("maxPods %d must be at least 1", c.MaxPods)
	}
	if c.ImageGCHighThresholdPercent < 0 || c.ImageGCHighThresholdPercent > 100 {
		bad("imageGCHighThreshold %d is not a percentage", c.ImageGCHighThresholdPercent)
	}
	if c.ImageGCLowThresholdPercent < 0 || c.ImageGCLowThresholdPercent > 100 {
		bad("imageGCLowThreshold %d is not a percentage", c.ImageGCLowThresholdPercent)
	}
	if c.ImageGCLowThresholdPercent > c.ImageGCHighThresholdPercent {
		bad("imageGCLowThreshold %d is above imageGCHighThreshold %d", c.ImageGCLowThresholdPercent, c.ImageGCHighThresholdPercent)
	}
	if c.MaxPerPodContainerCount < 0 {
		bad("maximumDeadContainersPerPod %d is negative", c.MaxPerPodContainerCount)
	}
	if c.MaxContainerCount < -1 {
		bad("maxContainerCount %d must be -1 (no limit) or more", c.MaxContainerCount)
	}
	for _, ip := range c.ClusterDNS {
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("clusterDNS %q is not an IP address", ip)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"syncFrequency", c.SyncFrequency}, {"relistPeriod", c.RelistPeriod}, {"housekeepingPeriod", c.HousekeepingPeriod},
		{"imageGCPeriod", c.ImageGCPeriod}, {"runtimeRequestTimeout", c.RuntimeRequestTimeout},
		{"imagePullTimeout", c.ImagePullTimeout}, {"backOffInitial", c.BackOffInitial}, {"backOffMax", c.BackOffMax},
	} {
		if d.v <= 0 {
			bad("%s %s must be positive", d.name, d.v)
		}
	}
	if c.ConcurrentSandboxStarts < 1 {
		bad("concurrentSandboxStarts %d must be at least 1", c.ConcurrentSandboxStarts)
	}
	if c.BackOffMax < c.BackOffInitial {
		bad("backOffMax %s is below backOffInitial %s", c.BackOffMax, c.BackOffInitial)
	}
	if c.MinimumGCAge < 0 || c.ImageMinimumGCAge < 0 {
		bad("minimumGCAge and imageMinimumGCAge must not be negative")
	}
	return errors.Join(errs...)
}
