package edged

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels and annotations on sandboxes and containers: the kubelet's names,
// so that tools that know them (crictl, containerd's CRI) show pods right,
// and so that edged can find its objects again after a restart.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"

	annotationHash            = "io.kubernetes.container.hash"
	annotationRestartCount    = "io.kubernetes.container.restartCount"
	annotationTermMsgPath     = "io.kubernetes.container.terminationMessagePath"
	annotationTermMsgPolicy   = "io.kubernetes.container.terminationMessagePolicy"
	annotationGracePeriod     = "io.kubernetes.pod.terminationGracePeriod"
	annotationPreStop         = "io.kubernetes.container.preStopHandler"
	annotationContainerType   = "io.kubeedge-go.container.type" // "init" or "regular"
	annotationTermMsgHostPath = "io.kubeedge-go.container.terminationMessageHostPath"
)

// containerInstance is one CRI container of a pod, newest state.
type containerInstance struct {
	id, name, sandboxID string
	attempt             uint32
	state               runtimeapi.ContainerState
	created, started    time.Time
	finished            time.Time
	exitCode            int32
	reason, message     string
	image, imageRef     string
	hash                string
	annotations         map[string]string
	logPath             string
}

func (c *containerInstance) running() bool {
	return c.state == runtimeapi.ContainerState_CONTAINER_RUNNING
}

func (c *containerInstance) exited() bool {
	return c.state == runtimeapi.ContainerState_CONTAINER_EXITED
}

// sandboxInstance is one CRI sandbox of a pod.
type sandboxInstance struct {
	id      string
	attempt uint32
	ready   bool
	created time.Time
	ip      string
	ips     []string
}

// podRuntime is what the runtime holds for one pod UID. Slices are sorted
// newest first.
type podRuntime struct {
	uid        types.UID
	name, ns   string
	sandboxes  []*sandboxInstance
	containers []*containerInstance
}

// latestSandbox returns the newest sandbox or nil.
func (r *podRuntime) latestSandbox() *sandboxInstance {
	if r == nil || len(r.sandboxes) == 0 {
		return nil
	}
	return r.sandboxes[0]
}

// instances returns the instances of container name, newest first.
func (r *podRuntime) instances(name string) []*containerInstance {
	var out []*containerInstance
	if r == nil {
		return nil
	}
	for _, c := range r.containers {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

// latest returns the newest instance of container name, or nil.
func (r *podRuntime) latest(name string) *containerInstance {
	for _, c := range r.containers {
		if c.name == name {
			return c
		}
	}
	return nil
}

// running returns the running containers.
func (r *podRuntime) running() []*containerInstance {
	var out []*containerInstance
	if r == nil {
		return nil
	}
	for _, c := range r.containers {
		if c.running() || c.state == runtimeapi.ContainerState_CONTAINER_CREATED || c.state == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
			out = append(out, c)
		}
	}
	return out
}

func nanoTime(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
