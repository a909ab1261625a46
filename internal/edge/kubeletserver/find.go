package kubeletserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's standard CRI labels; edged sets them on every sandbox and
// container, and they are how this server finds a pod's containers without
// knowing edged's internals.
const (
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

// errNotFound is wrapped by lookups that found nothing; it maps to 404.
var errNotFound = errors.New("not found")

// findSandbox returns the pod's sandbox: with uid, that pod's; without, the
// ready one (or else the newest) among those with the name, as the kubelet
// resolves names to its current pod.
func (s *Server) findSandbox(ctx context.Context, ns, pod, uid string) (*runtimeapi.PodSandbox, error) {
	sel := map[string]string{LabelPodNamespace: ns, LabelPodName: pod}
	if uid != "" {
		sel[LabelPodUID] = uid
	}
	sbs, err := s.deps.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	if len(sbs) == 0 {
		if uid != "" {
			return nil, fmt.Errorf("pod %s/%s (uid %s) %w on node %q", ns, pod, uid, errNotFound, s.cfg.NodeName)
		}
		return nil, fmt.Errorf("pod %s/%s %w on node %q", ns, pod, errNotFound, s.cfg.NodeName)
	}
	slices.SortFunc(sbs, func(a, b *runtimeapi.PodSandbox) int {
		ra, rb := a.State == runtimeapi.PodSandboxState_SANDBOX_READY, b.State == runtimeapi.PodSandboxState_SANDBOX_READY
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.CreatedAt, a.CreatedAt)
	})
	return sbs[0], nil
}

// findContainer returns the container's current instance (the latest
// attempt) or, with previous, the one before it, across the sandboxes of the
// pod's uid.
func (s *Server) findContainer(ctx context.Context, ns, pod, uid, container string, previous bool) (*runtimeapi.Container, error) {
	if s.deps.ContainerID != nil && uid == "" {
		id, err := s.deps.ContainerID(ctx, ns, pod, container, previous)
		if err != nil {
			return nil, fmt.Errorf("%v on node %q: %w", err, s.cfg.NodeName, errNotFound)
		}
		if id != "" {
			cs, err := s.deps.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: id})
			if err != nil {
				return nil, err
			}
			if len(cs) == 1 {
				return cs[0], nil
			}
		}
	}
	sb, err := s.findSandbox(ctx, ns, pod, uid)
	if err != nil {
		return nil, err
	}
	sel := map[string]string{LabelPodNamespace: ns, LabelPodName: pod, LabelContainerName: container}
	if u := sb.GetLabels()[LabelPodUID]; u != "" {
		sel[LabelPodUID] = u
	} else {
		// No uid label: stay within this sandbox.
		sel = map[string]string{LabelContainerName: container}
	}
	filter := &runtimeapi.ContainerFilter{LabelSelector: sel}
	if sel[LabelPodUID] == "" {
		filter.PodSandboxId = sb.Id
	}
	cs, err := s.deps.Runtime.ListContainers(ctx, filter)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(cs, func(a, b *runtimeapi.Container) int {
		if c := cmp.Compare(b.GetMetadata().GetAttempt(), a.GetMetadata().GetAttempt()); c != 0 {
			return c
		}
		return cmp.Compare(b.CreatedAt, a.CreatedAt)
	})
	switch {
	case len(cs) == 0:
		return nil, fmt.Errorf("container %q in pod %s/%s %w on node %q", container, ns, pod, errNotFound, s.cfg.NodeName)
	case previous && len(cs) < 2:
		return nil, fmt.Errorf("previous terminated container %q in pod %s/%s %w on node %q", container, ns, pod, errNotFound, s.cfg.NodeName)
	case previous:
		return cs[1], nil
	}
	return cs[0], nil
}
