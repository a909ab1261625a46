// Package kstest runs pods directly through CRI the way edged does — the
// kubelet's standard labels on sandboxes and containers, logs under
// /var/log/pods-style directories — so that the kubelet API server can be
// tested against a real containerd without edged.
package kstest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/kubeletserver"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// PodSpec describes a pod to run.
type PodSpec struct {
	Namespace, Name, UID string
	// HostNetwork shares the node's network namespace; otherwise the pod
	// gets an address on the test containerd's bridge.
	HostNetwork bool
	Containers  []ContainerSpec
}

// ContainerSpec is one busybox container.
type ContainerSpec struct {
	Name    string
	Command []string
	// Stdin keeps stdin open (for kubectl attach -i); TTY allocates one.
	Stdin, TTY bool
}

// Pod is a running pod.
type Pod struct {
	Spec      PodSpec
	SandboxID string
	// LogDir is the sandbox log directory, <ns>_<pod>_<uid>.
	LogDir string

	rt    *cri.Client
	sbCfg *runtimeapi.PodSandboxConfig
	ids   map[string][]string // container name -> id per attempt
}

// RunPod starts spec's sandbox and containers and waits until every
// container runs.
func RunPod(t testing.TB, ctx context.Context, rt *cri.Client, ctd *testenv.Containerd, spec PodSpec) *Pod {
	t.Helper()
	labels := map[string]string{
		kubeletserver.LabelPodNamespace: spec.Namespace,
		kubeletserver.LabelPodName:      spec.Name,
		kubeletserver.LabelPodUID:       spec.UID,
	}
	logDir := filepath.Join(ctd.Dir, "pods", spec.Namespace+"_"+spec.Name+"_"+spec.UID)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: spec.Name, Namespace: spec.Namespace, Uid: spec.UID},
		Labels:       labels,
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: ctd.CgroupRoot + "/kubepods/pod" + spec.UID},
	}
	if spec.HostNetwork {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	} else {
		cfg.Hostname = spec.Name
	}
	id, err := rt.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatalf("run sandbox %s/%s: %v", spec.Namespace, spec.Name, err)
	}
	p := &Pod{Spec: spec, SandboxID: id, LogDir: logDir, rt: rt, sbCfg: cfg, ids: map[string][]string{}}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = rt.StopPodSandbox(cctx, id)
		_ = rt.RemovePodSandbox(cctx, id)
	})
	for _, c := range spec.Containers {
		p.start(t, ctx, c)
	}
	return p
}

func (p *Pod) start(t testing.TB, ctx context.Context, c ContainerSpec) string {
	t.Helper()
	attempt := len(p.ids[c.Name])
	labels := map[string]string{
		kubeletserver.LabelPodNamespace:  p.Spec.Namespace,
		kubeletserver.LabelPodName:       p.Spec.Name,
		kubeletserver.LabelPodUID:        p.Spec.UID,
		kubeletserver.LabelContainerName: c.Name,
	}
	id, err := p.rt.CreateContainer(ctx, p.SandboxID, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: uint32(attempt)},
		Image:    &runtimeapi.ImageSpec{Image: testenv.BusyboxImage},
		Command:  c.Command,
		Labels:   labels,
		LogPath:  fmt.Sprintf("%s/%d.log", c.Name, attempt),
		Stdin:    c.Stdin,
		Tty:      c.TTY,
	}, p.sbCfg)
	if err != nil {
		t.Fatalf("create container %s (attempt %d): %v", c.Name, attempt, err)
	}
	if err := p.rt.StartContainer(ctx, id); err != nil {
		t.Fatalf("start container %s: %v", c.Name, err)
	}
	p.ids[c.Name] = append(p.ids[c.Name], id)
	return id
}

// ContainerID is the id of the container's latest attempt.
func (p *Pod) ContainerID(name string) string {
	ids := p.ids[name]
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// Restart stops the container's current attempt (leaving it, exited, for
// --previous) and starts the next with command (the spec's when nil).
func (p *Pod) Restart(t testing.TB, ctx context.Context, name string, command []string) string {
	t.Helper()
	var spec ContainerSpec
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			spec = c
		}
	}
	if spec.Name == "" {
		t.Fatalf("pod %s has no container %q", p.Spec.Name, name)
	}
	if command != nil {
		spec.Command = command
	}
	if err := p.rt.StopContainer(ctx, p.ContainerID(name), 0); err != nil {
		t.Fatalf("stop container %s: %v", name, err)
	}
	return p.start(t, ctx, spec)
}

// WaitExited waits until the container's latest attempt has exited.
func (p *Pod) WaitExited(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	id := p.ContainerID(name)
	for {
		st, err := p.rt.ContainerStatus(ctx, id)
		if err == nil && st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s did not exit: %v", name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
