package app

import (
	"github.com/kubeedge-go/kubeedge/internal/edge/config"
	"github.com/kubeedge-go/kubeedge/internal/edge/edged"
)

// EdgedConfig maps edgecore's modules.edged onto edged's configuration;
// what edgecore's file does not name keeps edged's defaults.
func EdgedConfig(c *config.EdgeCore) edged.Config {
	m := c.Modules.Edged
	out := edged.Default()
	out.NodeName = c.NodeName()
	out.NodeIP = m.NodeIP
	out.RemoteRuntimeEndpoint = m.RemoteRuntimeEndpoint
	out.MaxPods = m.MaxPods
	out.RootDirectory = m.RootDirectory
	out.PodLogsDirectory = m.PodLogsDirectory
	out.PodSandboxImage = m.PodSandboxImage
	out.CgroupDriver = m.CgroupDriver
	out.CgroupRoot = m.CgroupRoot
	out.ImageGCHighThresholdPercent = m.ImageGCHighThreshold
	out.ImageGCLowThresholdPercent = m.ImageGCLowThreshold
	out.MaxPerPodContainerCount = m.MaximumDeadContainersPerPod
	out.MaxContainerCount = m.MaxContainerCount
	out.ClusterDNS = m.ClusterDNS
	out.ClusterDomain = m.ClusterDomain
	if m.ConcurrentSandboxStarts > 0 {
		out.ConcurrentSandboxStarts = m.ConcurrentSandboxStarts
	}
	return out
}
