package edged

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CPU constants of the kubelet's cgroupfs mapping.
const (
	minShares     = 2
	sharesPerCPU  = 1024
	quotaPeriod   = 100000 // µs
	minQuotaValue = 1000
)

// cgroupParent is the pod's cgroup, laid out as the kubelet does with
// cgroupsPerQOS: <root>/kubepods/pod<uid> for Guaranteed pods,
// <root>/kubepods/{burstable,besteffort}/pod<uid> for the others.
func cgroupParent(root string, pod *corev1.Pod) string {
	base := path.Join(root, "kubepods")
	switch qosClass(pod) {
	case corev1.PodQOSBurstable:
		base = path.Join(base, "burstable")
	case corev1.PodQOSBestEffort:
		base = path.Join(base, "besteffort")
	}
	return path.Join(base, "pod"+string(pod.UID))
}

// podLogDir is <logs>/<namespace>_<name>_<uid>, the kubelet's layout.
func podLogDir(logs string, pod *corev1.Pod) string {
	return filepath.Join(logs, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// sandboxHostname is the pod's hostname: empty for host-network pods (they
// share the node's UTS namespace), else spec.hostname or the pod name, cut
// to 63 characters.
func sandboxHostname(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return ""
	}
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func namespaceOptions(pod *corev1.Pod) *runtimeapi.NamespaceOption {
	o := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	if pod.Spec.HostNetwork {
		o.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		o.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		o.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		o.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return o
}

// sandboxConfig builds the CRI sandbox config of a pod.
func (e *Edged) sandboxConfig(pod *corev1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	labels[labelPodName], labels[labelPodNamespace], labels[labelPodUID] = pod.Name, pod.Namespace, string(pod.UID)
	annotations := map[string]string{}
	for k, v := range pod.Annotations {
		annotations[k] = v
	}
	sc := &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
	}
	for _, c := range allContainers(pod) {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			sc.Privileged = true
		}
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     sandboxHostname(pod),
		LogDirectory: podLogDir(e.cfg.PodLogsDirectory, pod),
		DnsConfig:    e.dnsConfig(pod),
		Labels:       labels,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    cgroupParent(e.cfg.CgroupRoot, pod),
			SecurityContext: sc,
		},
	}
	if psc := pod.Spec.SecurityContext; psc != nil && len(psc.Sysctls) > 0 {
		cfg.Linux.Sysctls = map[string]string{}
		for _, s := range psc.Sysctls {
			cfg.Linux.Sysctls[s.Name] = s.Value
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case corev1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case corev1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{
				Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP,
			})
		}
	}
	return cfg
}

// dnsConfig implements the pod's dnsPolicy. nil lets the runtime copy the
// node's resolv.conf (policy Default, or ClusterFirst without clusterDNS).
func (e *Edged) dnsConfig(pod *corev1.Pod) *runtimeapi.DNSConfig {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	var cfg *runtimeapi.DNSConfig
	cluster := func() *runtimeapi.DNSConfig {
		if len(e.cfg.ClusterDNS) == 0 {
			return nil
		}
		d := e.cfg.ClusterDomain
		return &runtimeapi.DNSConfig{
			Servers:  append([]string(nil), e.cfg.ClusterDNS...),
			Searches: []string{pod.Namespace + ".svc." + d, "svc." + d, d},
			Options:  []string{"ndots:5"},
		}
	}
	switch policy {
	case corev1.DNSClusterFirstWithHostNet:
		cfg = cluster()
	case corev1.DNSClusterFirst:
		if !pod.Spec.HostNetwork {
			cfg = cluster()
		}
	case corev1.DNSNone:
		cfg = &runtimeapi.DNSConfig{}
	}
	if pc := pod.Spec.DNSConfig; pc != nil {
		if cfg == nil {
			cfg = &runtimeapi.DNSConfig{}
		}
		cfg.Servers = append(cfg.Servers, pc.Nameservers...)
		cfg.Searches = append(cfg.Searches, pc.Searches...)
		for _, o := range pc.Options {
			s := o.Name
			if o.Value != nil {
				s += ":" + *o.Value
			}
			cfg.Options = append(cfg.Options, s)
		}
	}
	return cfg
}

// containerResources maps requests and limits to cgroupfs values as the
// kubelet does: shares from the cpu request (or limit), quota from the
// limit over a 100 ms period, the memory limit in bytes.
func containerResources(c *corev1.Container) *runtimeapi.LinuxContainerResources {
	req := milliValue(c.Resources.Requests, corev1.ResourceCPU)
	lim := milliValue(c.Resources.Limits, corev1.ResourceCPU)
	if req == 0 && lim > 0 {
		req = lim
	}
	r := &runtimeapi.LinuxContainerResources{CpuShares: max(req*sharesPerCPU/1000, minShares)}
	if lim > 0 {
		r.CpuPeriod = quotaPeriod
		r.CpuQuota = max(lim*quotaPeriod/1000, minQuotaValue)
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = q.Value()
	}
	return r
}

// containerSecurity maps a container's security context (over the pod's).
func containerSecurity(pod *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
	}
	csc := c.SecurityContext
	if csc == nil {
		return sc
	}
	if csc.RunAsUser != nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: *csc.RunAsUser}
	}
	if csc.RunAsGroup != nil {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: *csc.RunAsGroup}
	}
	if csc.Privileged != nil {
		sc.Privileged = *csc.Privileged
	}
	if csc.ReadOnlyRootFilesystem != nil {
		sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
	}
	if csc.AllowPrivilegeEscalation != nil {
		sc.NoNewPrivs = !*csc.AllowPrivilegeEscalation
	}
	if caps := csc.Capabilities; caps != nil {
		sc.Capabilities = &runtimeapi.Capability{}
		for _, a := range caps.Add {
			sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
		}
		for _, d := range caps.Drop {
			sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
		}
	}
	return sc
}

// runAsNonRootViolation checks runAsNonRoot against the user the container
// will run as (its security context, else the image's).
func runAsNonRootViolation(pod *corev1.Pod, c *corev1.Container, img *runtimeapi.Image) error {
	nonRoot := false
	if psc := pod.Spec.SecurityContext; psc != nil && psc.RunAsNonRoot != nil {
		nonRoot = *psc.RunAsNonRoot
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		nonRoot = *c.SecurityContext.RunAsNonRoot
	}
	if !nonRoot {
		return nil
	}
	sc := containerSecurity(pod, c)
	if sc.RunAsUser != nil {
		if sc.RunAsUser.Value == 0 {
			return configErr("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podFullName(pod), c.Name)
		}
		return nil
	}
	if img != nil && img.Uid != nil {
		if img.Uid.Value == 0 {
			return configErr("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podFullName(pod), c.Name)
		}
		return nil
	}
	if img != nil && img.Username != "" {
		if _, err := strconv.Atoi(img.Username); err != nil {
			return configErr("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", img.Username, podFullName(pod), c.Name)
		}
		return nil
	}
	return configErr("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podFullName(pod), c.Name)
}

// containerHash identifies the spec a container instance was made from; a
// different hash (the pod's image was changed) restarts the container.
func containerHash(c *corev1.Container) string {
	data, _ := json.Marshal(c) // a Container always marshals
	h := fnv.New32a()
	h.Write(data)
	return strconv.FormatUint(uint64(h.Sum32()), 16)
}

// containerMounts maps a container's volumeMounts onto host paths.
func containerMounts(pod *corev1.Pod, c *corev1.Container, vols map[string]mountedVolume, env map[string]string) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return nil, configErr("volumeMount %q of container %s: no volume of that name in the pod", m.Name, c.Name)
		}
		if !filepath.IsAbs(m.MountPath) {
			return nil, configErr("volumeMount %q: mountPath %q is not absolute", m.Name, m.MountPath)
		}
		host := v.path
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, func(n string) (string, bool) { s, ok := env[n]; return s, ok })
		}
		if sub != "" {
			p, err := resolveSubPath(v, sub)
			if err != nil {
				return nil, configErr("volumeMount %q: %v", m.Name, err)
			}
			host = p
		}
		mnt := &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: host, Readonly: m.ReadOnly || v.readOnly}
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case corev1.MountPropagationHostToContainer:
				mnt.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			case corev1.MountPropagationBidirectional:
				mnt.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			}
		}
		out = append(out, mnt)
	}
	return out, nil
}

// resolveSubPath returns the host path of sub inside volume v, refusing
// anything that leaves the volume; a missing subPath of a writable volume
// is created as a directory, as the kubelet does.
func resolveSubPath(v mountedVolume, sub string) (string, error) {
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("subPath %q must be relative", sub)
	}
	for _, part := range strings.Split(filepath.ToSlash(sub), "/") {
		if part == ".." {
			return "", fmt.Errorf("subPath %q must not contain '..'", sub)
		}
	}
	p := filepath.Join(v.path, sub)
	if _, err := os.Lstat(p); os.IsNotExist(err) {
		if v.readOnly {
			return "", fmt.Errorf("subPath %q does not exist in the volume", sub)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("subPath %q: %w", sub, err)
		}
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	base, err := filepath.EvalSymlinks(v.path)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if real != base && !strings.HasPrefix(real, base+string(filepath.Separator)) {
		return "", fmt.Errorf("subPath %q resolves outside the volume", sub)
	}
	return real, nil
}
