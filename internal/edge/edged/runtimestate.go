package edged

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
)

// podRuntimeState reads a pod's sandboxes and containers from the runtime,
// with full container status (exit codes, times), newest first.
func (e *Edged) podRuntimeState(ctx context.Context, uid types.UID) (*podRuntime, error) {
	sel := map[string]string{labelPodUID: string(uid)}
	sbs, err := e.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	cs, err := e.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	r := &podRuntime{uid: uid}
	for _, sb := range sbs {
		si := &sandboxInstance{
			id: sb.Id, attempt: sb.GetMetadata().GetAttempt(), created: nanoTime(sb.CreatedAt),
			ready: sb.State == runtimeapi.PodSandboxState_SANDBOX_READY,
		}
		r.name, r.ns = sb.GetMetadata().GetName(), sb.GetMetadata().GetNamespace()
		if si.ready {
			st, err := e.rt.PodSandboxStatus(ctx, sb.Id)
			if err != nil && !errors.Is(err, cri.ErrNotFound) {
				return nil, err
			}
			if st != nil {
				si.ready = st.State == runtimeapi.PodSandboxState_SANDBOX_READY
				if n := st.GetNetwork(); n != nil && n.Ip != "" {
					si.ip = n.Ip
					si.ips = append(si.ips, n.Ip)
					for _, ip := range n.AdditionalIps {
						si.ips = append(si.ips, ip.GetIp())
					}
				}
			}
		}
		r.sandboxes = append(r.sandboxes, si)
	}
	sort.SliceStable(r.sandboxes, func(i, j int) bool {
		a, b := r.sandboxes[i], r.sandboxes[j]
		if a.attempt != b.attempt {
			return a.attempt > b.attempt
		}
		return a.created.After(b.created)
	})
	for _, c := range cs {
		st, err := e.rt.ContainerStatus(ctx, c.Id)
		if errors.Is(err, cri.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		r.containers = append(r.containers, instanceFromStatus(c, st))
	}
	sort.SliceStable(r.containers, func(i, j int) bool {
		a, b := r.containers[i], r.containers[j]
		if !a.created.Equal(b.created) {
			return a.created.After(b.created)
		}
		return a.attempt > b.attempt
	})
	return r, nil
}

func instanceFromStatus(c *runtimeapi.Container, st *runtimeapi.ContainerStatus) *containerInstance {
	return &containerInstance{
		id: c.Id, name: c.GetMetadata().GetName(), sandboxID: c.PodSandboxId, attempt: c.GetMetadata().GetAttempt(),
		state: st.State, created: nanoTime(st.CreatedAt), started: nanoTime(st.StartedAt), finished: nanoTime(st.FinishedAt),
		exitCode: st.ExitCode, reason: st.Reason, message: st.Message,
		image: st.GetImage().GetImage(), imageRef: st.ImageRef,
		hash: st.Annotations[annotationHash], annotations: st.Annotations, logPath: st.LogPath,
	}
}

// runtimeSnapshot lists every sandbox and container (PLEG, orphan
// detection, GC).
type runtimeSnapshot struct {
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
}

func (e *Edged) snapshot(ctx context.Context) (*runtimeSnapshot, error) {
	sbs, err := e.rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("relist: %w", err)
	}
	cs, err := e.rt.ListContainers(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("relist: %w", err)
	}
	return &runtimeSnapshot{sandboxes: sbs, containers: cs}, nil
}
