package edged

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri/fakecri"
)

func bb(name string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: "localhost/kubeedge/busybox:1", ImagePullPolicy: corev1.PullIfNotPresent, Command: cmd}
}

// exitOn makes containers whose name is in codes exit at start with the
// given code.
func exitOn(codes map[string]int32) func(*fakecri.Container) (int32, bool) {
	return func(c *fakecri.Container) (int32, bool) {
		code, ok := codes[c.Config.Metadata.Name]
		return code, ok
	}
}

func containerNames(rt *fakecri.Runtime) []string {
	var out []string
	for _, c := range rt.Containers() {
		out = append(out, c.Config.Metadata.Name)
	}
	return out
}

func TestInitContainersRunInOrder(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.OnStart = exitOn(map[string]int32{"init1": 0, "init2": 0})
	h.start()
	pod := testPod("init", bb("main", "sleep", "1d"))
	pod.Spec.InitContainers = []corev1.Container{bb("init1", "true"), bb("init2", "true")}
	h.putPod(pod)
	st := h.waitStatus(pod, "running after init", running("main"))
	if diff := slices.Compare(containerNames(h.rt), []string{"init1", "init2", "main"}); diff != 0 {
		t.Errorf("creation order %v, want init1 init2 main", containerNames(h.rt))
	}
	if condition(st, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("Initialized = %s", condition(st, corev1.PodInitialized))
	}
	for _, n := range []string{"init1", "init2"} {
		cs := findStatus(st.InitContainerStatuses, n)
		if cs == nil || cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || !cs.Ready {
			t.Errorf("init status %s: %+v", n, cs)
		}
	}
}

func TestInitContainerBlocksAndFails(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.OnStart = exitOn(map[string]int32{"init1": 3})
	h.start()
	pod := testPod("initfail", bb("main", "sleep", "1d"))
	pod.Spec.InitContainers = []corev1.Container{bb("init1", "false"), bb("init2", "true")}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.putPod(pod)
	st := h.waitStatus(pod, "pod failed on init", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
	if n := containerNames(h.rt); !slices.Equal(n, []string{"init1"}) {
		t.Errorf("containers %v, want only init1", n)
	}
	if condition(st, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Errorf("Initialized = %s", condition(st, corev1.PodInitialized))
	}
	if cs := findStatus(st.ContainerStatuses, "main"); cs.State.Waiting == nil || cs.State.Waiting.Reason != waitingPodInitializing {
		t.Errorf("main waits with %+v, want PodInitializing", cs.State)
	}
	if cs := findStatus(st.InitContainerStatuses, "init1"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 3 {
		t.Errorf("init1 state %+v", cs.State)
	}
	h.eventually("sandbox of the failed pod stopped", func() bool {
		sbs := h.rt.Sandboxes()
		return len(sbs) == 1 && sbs[0].State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
}

func TestCrashLoopBackOff(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.OnStart = exitOn(map[string]int32{"main": 1})
	h.start()
	pod := testPod("crash", bb("main", "false"))
	h.putPod(pod)
	// The first restart is immediate; the second waits 10 s.
	st := h.waitStatus(pod, "CrashLoopBackOff after one restart", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.RestartCount == 1 && cs.State.Waiting != nil && cs.State.Waiting.Reason == waitingCrashLoopBackOff
	})
	cs := findStatus(st.ContainerStatuses, "main")
	if !strings.Contains(cs.State.Waiting.Message, "back-off 10s restarting failed container=main pod=crash_default(uid-crash)") {
		t.Errorf("waiting message %q", cs.State.Waiting.Message)
	}
	if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 1 || lt.Reason != "Error" {
		t.Errorf("last termination %+v", cs.LastTerminationState)
	}
	if st.Phase != corev1.PodRunning || condition(st, corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("phase %s ready %s, want Running and not ready", st.Phase, condition(st, corev1.PodReady))
	}
	if !h.rep.hasEvent(pod.UID, reasonBackOff, "Back-off restarting failed container main in pod crash_default(uid-crash)") {
		t.Errorf("no BackOff event:\n%s", h.rep.eventList(pod.UID))
	}
	// MaxPerPodContainerCount 1: only the newest dead instance is kept.
	if n := len(h.rt.Containers()); n != 1 {
		t.Errorf("%d instances during back-off, want 1", n)
	}
	h.clk.Step(9 * time.Second)
	h.e.kickUID(pod.UID)
	h.eventually("still backing off at 9 s", func() bool {
		cs := h.rt.Containers()
		return len(cs) == 1 && cs[0].Config.Metadata.Attempt == 1
	})
	h.clk.Step(time.Second + time.Millisecond)
	st = h.waitStatus(pod, "second restart after 10 s, then 20 s back-off", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs.RestartCount == 2 && cs.State.Waiting != nil && strings.Contains(cs.State.Waiting.Message, "back-off 20s")
	})
	_ = st
	// Dead instances are collected: the newest plus MaxPerPodContainerCount.
	if n := len(h.rt.Containers()); n > 2 {
		t.Errorf("%d instances kept, want at most 2", n)
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy    corev1.RestartPolicy
		exit      int32
		phase     corev1.PodPhase
		restarted bool
	}{
		{corev1.RestartPolicyNever, 0, corev1.PodSucceeded, false},
		{corev1.RestartPolicyNever, 2, corev1.PodFailed, false},
		{corev1.RestartPolicyOnFailure, 0, corev1.PodSucceeded, false},
		{corev1.RestartPolicyOnFailure, 2, corev1.PodRunning, true},
		{corev1.RestartPolicyAlways, 0, corev1.PodRunning, true},
	} {
		t.Run(string(tc.policy)+"/"+string(rune('0'+tc.exit)), func(t *testing.T) {
			h := newHarness(t, nil)
			h.rt.OnStart = exitOn(map[string]int32{"main": tc.exit})
			h.start()
			pod := testPod("p", bb("main", "x"))
			pod.Spec.RestartPolicy = tc.policy
			h.putPod(pod)
			if tc.restarted {
				st := h.waitStatus(pod, "restarted", func(st corev1.PodStatus) bool {
					cs := findStatus(st.ContainerStatuses, "main")
					return cs != nil && cs.RestartCount >= 1
				})
				if st.Phase != tc.phase {
					t.Errorf("phase %s, want %s", st.Phase, tc.phase)
				}
				return
			}
			st := h.waitStatus(pod, "terminal phase", func(st corev1.PodStatus) bool { return st.Phase == tc.phase })
			cs := findStatus(st.ContainerStatuses, "main")
			if cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != tc.exit {
				t.Errorf("container status %+v", cs)
			}
			h.eventually("sandbox stopped", func() bool {
				return h.rt.Sandboxes()[0].State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
			})
			if tc.phase == corev1.PodSucceeded && condition(st, corev1.PodReady) != corev1.ConditionFalse {
				t.Errorf("Ready of a completed pod = %s", condition(st, corev1.PodReady))
			}
			if h.e.RunningPods() != 0 {
				t.Errorf("a finished pod counts as running")
			}
		})
	}
}

func TestLivenessProbeRestartsContainer(t *testing.T) {
	h := newHarness(t, nil)
	var healthy atomic.Bool
	h.rt.OnExec = func(c *fakecri.Container, cmd []string) ([]byte, int32, error) {
		if cmd[0] == "check" && !healthy.Load() {
			return []byte("not healthy"), 1, nil
		}
		return nil, 0, nil
	}
	h.start()
	c := bb("main", "sleep", "1d")
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}}, PeriodSeconds: 5, FailureThreshold: 1}
	pod := testPod("live", c)
	h.putPod(pod)
	h.waitStatus(pod, "restart after a failed liveness probe", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.RestartCount >= 1 && cs.State.Running != nil
	})
	healthy.Store(true)
	if !h.rep.hasEvent(pod.UID, reasonKilling, "Container main failed liveness probe, will be restarted") {
		t.Errorf("no Killing event:\n%s", h.rep.eventList(pod.UID))
	}
	if !h.rep.hasEvent(pod.UID, reasonUnhealthy, "Liveness probe failed: command \"check\" exited with 1: not healthy") {
		t.Errorf("no Unhealthy event:\n%s", h.rep.eventList(pod.UID))
	}
	// The killed instance got the pod's grace period.
	if cs := h.rt.Containers(); cs[0].StopTimeout != 30 {
		t.Errorf("stop timeout %d, want 30", cs[0].StopTimeout)
	}
}

func TestReadinessProbeDrivesReady(t *testing.T) {
	h := newHarness(t, nil)
	var ready atomic.Bool
	h.rt.OnExec = func(c *fakecri.Container, cmd []string) ([]byte, int32, error) {
		if ready.Load() {
			return nil, 0, nil
		}
		return nil, 1, nil
	}
	h.start()
	c := bb("main", "sleep", "1d")
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"ready"}}}, PeriodSeconds: 2, FailureThreshold: 1, SuccessThreshold: 1}
	pod := testPod("ready", c)
	h.putPod(pod)
	st := h.waitStatus(pod, "running but not ready", func(st corev1.PodStatus) bool {
		return running("main")(st) && h.rep.hasEvent(pod.UID, reasonUnhealthy, "Readiness probe failed")
	})
	if condition(st, corev1.PodReady) != corev1.ConditionFalse || condition(st, corev1.ContainersReady) != corev1.ConditionFalse {
		t.Errorf("ready conditions %s/%s before the probe passes", condition(st, corev1.PodReady), condition(st, corev1.ContainersReady))
	}
	ready.Store(true)
	h.eventuallyf(func() string {
		h.clk.Step(2 * time.Second)
		st, _ := h.rep.latest(pod.UID)
		if condition(st, corev1.PodReady) == corev1.ConditionTrue && findStatus(st.ContainerStatuses, "main").Ready {
			return ""
		}
		return "Ready after the probe passes"
	})
	ready.Store(false)
	h.eventuallyf(func() string {
		h.clk.Step(2 * time.Second)
		st, _ := h.rep.latest(pod.UID)
		if condition(st, corev1.PodReady) == corev1.ConditionFalse {
			return ""
		}
		return "not Ready after the probe fails again"
	})
	if n := len(h.rt.Containers()); n != 1 {
		t.Errorf("readiness failures restarted the container (%d instances)", n)
	}
}

func TestGracefulDeletion(t *testing.T) {
	h := newHarness(t, nil)
	var preStop atomic.Int32
	h.rt.OnExec = func(c *fakecri.Container, cmd []string) ([]byte, int32, error) {
		if cmd[0] == "prestop" {
			preStop.Add(1)
		}
		return nil, 0, nil
	}
	h.start()
	c := bb("main", "sleep", "1d")
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"prestop"}}}}
	pod := testPod("del", c, bb("side", "sleep", "1d"))
	h.putPod(pod)
	h.waitStatus(pod, "running", running("side"))
	ids := map[string]string{}
	for _, c := range h.rt.Containers() {
		ids[c.Config.Metadata.Name] = c.ID
	}
	now := metav1.NewTime(h.clk.Now())
	pod.DeletionTimestamp = &now
	pod.DeletionGracePeriodSeconds = ptr(int64(7))
	h.putPod(pod)
	h.eventually("PodTerminated", func() bool { return h.rep.terminations(pod.UID) == 1 })
	if preStop.Load() != 1 {
		t.Errorf("preStop ran %d times, want 1", preStop.Load())
	}
	// The deletion's grace period, not the spec's 30 s (the fake clock did
	// not move during the preStop hook, so all 7 s are left).
	for name, id := range ids {
		if got, _ := h.rt.StopTimeout(id); got != 7 {
			t.Errorf("%s stopped with timeout %d, want 7", name, got)
		}
	}
	if len(h.rt.Sandboxes()) != 0 || len(h.rt.Containers()) != 0 {
		t.Errorf("left: %d sandboxes, %d containers", len(h.rt.Sandboxes()), len(h.rt.Containers()))
	}
	if !h.rep.hasEvent(pod.UID, reasonKilling, "Stopping container side") {
		t.Errorf("no Killing event:\n%s", h.rep.eventList(pod.UID))
	}
	st, _ := h.rep.latest(pod.UID)
	for _, cs := range st.ContainerStatuses {
		if cs.State.Terminated == nil {
			t.Errorf("final status of %s is not terminated: %+v", cs.Name, cs.State)
		}
	}
	if _, err := os.Stat(filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID))); !os.IsNotExist(err) {
		t.Errorf("pod dir remains: %v", err)
	}
	// Still in the store (until the cloud deletes it): nothing restarts and
	// PodTerminated is not repeated.
	h.e.kickUID(pod.UID)
	h.eventually("no restart", func() bool { return len(h.rt.Containers()) == 0 })
	h.deletePod(pod)
	h.eventually("worker gone", func() bool { return !h.e.hasWorker(pod.UID) })
	if n := h.rep.terminations(pod.UID); n != 1 {
		t.Errorf("PodTerminated %d times, want 1", n)
	}
}

func TestStopTimeoutIsGracePeriod(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	pod := testPod("grace")
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(12))
	h.putPod(pod)
	h.waitStatus(pod, "running", running("main"))
	id := h.rt.Containers()[0].ID
	h.deletePod(pod)
	h.eventually("torn down", func() bool { return h.rep.terminations(pod.UID) == 1 && !h.e.hasWorker(pod.UID) })
	if got, ok := h.rt.StopTimeout(id); !ok || got != 12 {
		t.Errorf("StopContainer timeout %d (called %v), want the grace period 12", got, ok)
	}
	if len(h.rt.Sandboxes()) != 0 {
		t.Error("sandbox not removed")
	}
}

func TestBadInputsDoNotAffectOtherPods(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.OnPull = func(image string) error { return errors.New("manifest unknown") }
	h.start()
	good := testPod("good")
	noImage := testPod("noimage", corev1.Container{Name: "main", Image: "localhost/none:1", ImagePullPolicy: corev1.PullIfNotPresent})
	never := testPod("never", corev1.Container{Name: "main", Image: "localhost/none:1", ImagePullPolicy: corev1.PullNever})
	badVol := testPod("badvol", bb("main", "sleep", "1d"))
	badVol.Spec.Volumes = []corev1.Volume{{Name: "nfs", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "x", Path: "/"}}}}
	badEnv := testPod("badenv", corev1.Container{Name: "main", Image: "localhost/kubeedge/busybox:1", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}})
	badMount := testPod("badmount", corev1.Container{Name: "main", Image: "localhost/kubeedge/busybox:1", VolumeMounts: []corev1.VolumeMount{{Name: "missing", MountPath: "/x"}}})
	hostFile := testPod("hostfile", bb("main", "sleep", "1d"))
	hostFile.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/nonexistent/edged-test", Type: ptr(corev1.HostPathFile)}}}}
	for _, p := range []*corev1.Pod{good, noImage, never, badVol, badEnv, badMount, hostFile} {
		h.putPod(p)
	}
	h.waitStatus(good, "good pod running", running("main"))
	waitReason := func(p *corev1.Pod, reasons ...string) corev1.ContainerStatus {
		t.Helper()
		st := h.waitStatus(p, p.Name+" waiting with "+strings.Join(reasons, "/"), func(st corev1.PodStatus) bool {
			cs := findStatus(st.ContainerStatuses, "main")
			return cs != nil && cs.State.Waiting != nil && slices.Contains(reasons, cs.State.Waiting.Reason)
		})
		if st.Phase != corev1.PodPending {
			t.Errorf("%s phase %s, want Pending", p.Name, st.Phase)
		}
		return *findStatus(st.ContainerStatuses, "main")
	}
	cs := waitReason(noImage, waitingErrImagePull, waitingImagePullBackOff)
	if !strings.Contains(cs.State.Waiting.Message, `"localhost/none:1"`) {
		t.Errorf("pull failure message %q", cs.State.Waiting.Message)
	}
	if !h.rep.hasEvent(noImage.UID, reasonFailed, `Failed to pull image "localhost/none:1"`) {
		t.Errorf("no pull failure event:\n%s", h.rep.eventList(noImage.UID))
	}
	h.waitStatus(noImage, "ImagePullBackOff", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == waitingImagePullBackOff
	})
	cs = waitReason(never, waitingErrImageNeverPull)
	if cs.State.Waiting.Message != `Container image "localhost/none:1" is not present with pull policy of Never` {
		t.Errorf("never-pull message %q", cs.State.Waiting.Message)
	}
	waitReason(badVol, waitingContainerCreating)
	h.eventually("FailedMount event for the nfs volume", func() bool {
		return h.rep.hasEvent(badVol.UID, reasonFailedMount, `MountVolume.SetUp failed for volume "nfs" : volume type nfs is not supported by edged`)
	})
	cs = waitReason(badEnv, waitingCreateConfigError)
	if cs.State.Waiting.Message != `configmap "nope" not found` {
		t.Errorf("config error message %q", cs.State.Waiting.Message)
	}
	cs = waitReason(badMount, waitingCreateConfigError)
	if !strings.Contains(cs.State.Waiting.Message, `volumeMount "missing"`) {
		t.Errorf("mount error %q", cs.State.Waiting.Message)
	}
	waitReason(hostFile, waitingContainerCreating)
	h.eventually("hostPath type check event", func() bool {
		return h.rep.hasEvent(hostFile.UID, reasonFailedMount, "hostPath type check failed: /nonexistent/edged-test is not a file")
	})
	// The good pod kept running throughout with one instance.
	st, _ := h.rep.latest(good.UID)
	if !running("main")(st) || len(h.rt.Containers()) < 1 {
		t.Errorf("good pod affected: %s", dumpStatus(st))
	}
}

func TestImagePullPolicies(t *testing.T) {
	h := newHarness(t, nil)
	var pulls atomic.Int32
	h.rt.OnPull = func(image string) error {
		pulls.Add(1)
		if image == "localhost/kubeedge/busybox:latest" {
			return errors.New("dial tcp: connection refused")
		}
		return nil
	}
	h.rt.AddImage("localhost/kubeedge/busybox:latest", 1<<20)
	h.start()
	// :latest defaults to Always; the registry is down but the image is
	// here, so the pod starts anyway (offline autonomy) with a warning.
	always := testPod("always", corev1.Container{Name: "main", Image: "localhost/kubeedge/busybox:latest"})
	h.putPod(always)
	h.waitStatus(always, "running with the local copy", running("main"))
	if !h.rep.hasEvent(always.UID, reasonFailed, "using the copy already on this node") {
		t.Errorf("no warning:\n%s", h.rep.eventList(always.UID))
	}
	if pulls.Load() != 1 {
		t.Errorf("%d pulls, want 1", pulls.Load())
	}
	// IfNotPresent with the image absent pulls it.
	pull := testPod("pull", corev1.Container{Name: "main", Image: "localhost/other:2"})
	h.putPod(pull)
	h.waitStatus(pull, "running after a pull", running("main"))
	if !h.rep.hasEvent(pull.UID, reasonPulling, `Pulling image "localhost/other:2"`) || !h.rep.hasEvent(pull.UID, reasonPulled, `Successfully pulled image "localhost/other:2"`) {
		t.Errorf("pull events:\n%s", h.rep.eventList(pull.UID))
	}
	if pulls.Load() != 2 {
		t.Errorf("%d pulls, want 2", pulls.Load())
	}
}

func TestOrphansRemovedOnStart(t *testing.T) {
	h := newHarness(t, nil)
	// A pod that was deleted while edged was down.
	ctx := t.Context()
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "gone", Namespace: "default", Uid: "uid-gone"},
		Labels:   map[string]string{labelPodUID: "uid-gone", labelPodName: "gone", labelPodNamespace: "default"},
	}
	sb, err := h.rt.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.rt.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "main"}, Image: &runtimeapi.ImageSpec{Image: "localhost/kubeedge/busybox:1"},
		Labels:      map[string]string{labelPodUID: "uid-gone", labelContainerName: "main"},
		Annotations: map[string]string{annotationGracePeriod: "3"},
	}, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	podDir := filepath.Join(h.cfg.RootDirectory, "pods", "uid-gone", "volumes", pluginEmptyDir, "x")
	cg := filepath.Join(h.cfg.CgroupFS, "memory", h.cfg.CgroupRoot, "kubepods", "besteffort", "poduid-gone", "container1")
	logDir := filepath.Join(h.cfg.PodLogsDirectory, "default_gone_uid-gone")
	for _, d := range []string{podDir, cg, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// And a pod that is still stored: it must survive.
	keep := testPod("keep")
	h.putPod(keep)
	h.start()
	h.waitStatus(keep, "kept pod running", running("main"))
	h.eventually("orphan removed", func() bool {
		for _, s := range h.rt.Sandboxes() {
			if s.Config.Metadata.Uid == "uid-gone" {
				return false
			}
		}
		return true
	})
	for _, d := range []string{filepath.Join(h.cfg.RootDirectory, "pods", "uid-gone"), filepath.Dir(cg), logDir} {
		h.eventually(d+" removed", func() bool {
			_, err := os.Stat(d)
			return os.IsNotExist(err)
		})
	}
	if h.rep.terminations("uid-gone") != 0 {
		t.Error("PodTerminated reported for an orphan the cloud never asked about")
	}
}

func TestMaxPodsRejects(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxPods = 1 })
	h.start()
	a := testPod("a")
	h.putPod(a)
	h.waitStatus(a, "first pod running", running("main"))
	b := testPod("b")
	h.putPod(b)
	st := h.waitStatus(b, "second pod rejected", func(st corev1.PodStatus) bool { return st.Phase == corev1.PodFailed })
	if st.Reason != reasonOutOfPods || !strings.Contains(st.Message, "pods, requested: 1, used: 1, capacity: 1") {
		t.Errorf("rejection %q: %q", st.Reason, st.Message)
	}
	for _, s := range h.rt.Sandboxes() {
		if s.Config.Metadata.Uid == string(b.UID) {
			t.Error("a rejected pod got a sandbox")
		}
	}
}

func TestOfflineRestartRecreatesPods(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"k": "v1"}})
	pod := testPod("survivor", bb("main", "sleep", "1d"))
	pod.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "c", MountPath: "/c"}}
	h.putPod(pod)
	h.waitStatus(pod, "running", running("main"))
	h.stop()
	// A reboot: every sandbox is dead, containers exited.
	for _, sb := range h.rt.Sandboxes() {
		if err := h.rt.StopPodSandbox(t.Context(), sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	h.rep = newFakeReporter()
	h.start()
	st := h.waitStatus(pod, "running again after the restart", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return running("main")(st) && cs.RestartCount == 1
	})
	sbs := h.rt.Sandboxes()
	if last := sbs[len(sbs)-1]; last.Config.Metadata.Attempt != 1 || last.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("new sandbox attempt %d state %s", last.Config.Metadata.Attempt, last.State)
	}
	if !h.rep.hasEvent(pod.UID, reasonSandboxChanged, "Pod sandbox changed") {
		t.Errorf("no SandboxChanged event:\n%s", h.rep.eventList(pod.UID))
	}
	if cs := findStatus(st.ContainerStatuses, "main"); cs.LastTerminationState.Terminated == nil {
		t.Errorf("no last termination state after the reboot: %+v", cs)
	}
	data, err := os.ReadFile(filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID), "volumes", pluginConfigMap, "c", "k"))
	if err != nil || string(data) != "v1" {
		t.Errorf("configmap volume after restart: %q, %v", data, err)
	}
}

// kubeAPIAccess is the volume the API server adds to every pod.
func kubeAPIAccess() corev1.Volume {
	return corev1.Volume{Name: "kube-api-access-x1", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr(int32(0o644)),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr(int64(3607)), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
		},
	}}}
}

func TestServiceAccountTokenVolume(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "default"}, Data: map[string]string{"ca.crt": "PEM"}})
	pod := testPod("sa", bb("main", "sleep", "1d"))
	pod.Spec.ServiceAccountName = "robot"
	pod.Spec.Volumes = []corev1.Volume{kubeAPIAccess()}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
	h.putPod(pod)
	h.waitStatus(pod, "running", running("main"))
	dir := filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID), "volumes", pluginProjected, "kube-api-access-x1")
	read := func(f string) string {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err.Error()
		}
		return string(data)
	}
	if read("token") != "token-1" || read("ca.crt") != "PEM" || read("namespace") != "default" {
		t.Fatalf("projected files: token %q ca %q ns %q", read("token"), read("ca.crt"), read("namespace"))
	}
	h.tokens.mu.Lock()
	call := h.tokens.calls[0]
	h.tokens.mu.Unlock()
	if call != "sa/robot:[]:3607" {
		t.Errorf("token request %q", call)
	}
	// At 80% of its lifetime the token is replaced.
	h.clk.Step(2890 * time.Second) // 80% of 3607 s is 2885.6 s
	h.eventually("token refreshed", func() bool { return read("token") == "token-2" })
	// The cloud is unreachable at the next refresh: the token stays.
	h.tokens.mu.Lock()
	h.tokens.down = true
	h.tokens.mu.Unlock()
	h.clk.Step(2900 * time.Second)
	h.eventually("refresh attempted while offline", func() bool {
		h.tokens.mu.Lock()
		defer h.tokens.mu.Unlock()
		return len(h.tokens.calls) >= 3
	})
	if read("token") != "token-2" {
		t.Errorf("token after a failed refresh: %q, want token-2 kept", read("token"))
	}
	if n := len(h.rt.Containers()); n != 1 {
		t.Errorf("token refresh restarted the container (%d instances)", n)
	}
}

func TestTokenUnavailableFailsMountUntilCloudBack(t *testing.T) {
	h := newHarness(t, nil)
	h.tokens.down = true
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "default"}, Data: map[string]string{"ca.crt": "PEM"}})
	pod := testPod("notoken", bb("main", "sleep", "1d"))
	pod.Spec.Volumes = []corev1.Volume{kubeAPIAccess()}
	h.putPod(pod)
	h.eventually("FailedMount for the token", func() bool {
		return h.rep.hasEvent(pod.UID, reasonFailedMount, `MountVolume.SetUp failed for volume "kube-api-access-x1" : service account token for "default": cloud unreachable`)
	})
	if len(h.rt.Sandboxes()) != 0 {
		t.Error("sandbox created before the volumes were ready")
	}
	h.tokens.mu.Lock()
	h.tokens.down = false
	h.tokens.mu.Unlock()
	h.clk.Step(2 * time.Minute) // the volume retry timer
	h.waitStatus(pod, "running once a token arrives", running("main"))
}

func TestImageGC(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ImageMinimumGCAge = 0 })
	h.rt.AddImage("localhost/unused-old:1", 30)
	h.rt.AddImage("localhost/unused-new:1", 30)
	h.start()
	pod := testPod("user")
	h.putPod(pod)
	h.waitStatus(pod, "running", running("main"))
	var capacity, avail uint64 = 100, 10 // 90% used, 85% high, 80% low
	h.e.imageFsStats = func(context.Context) (uint64, uint64, error) { return capacity, avail, nil }
	// The first pass records when images were seen; make "old" older.
	h.rt.AddImage("localhost/unused-new:1", 30)
	if err := h.e.gcImages(t.Context()); err != nil {
		t.Fatal(err)
	}
	var left []string
	imgs, _ := h.rt.ListImages(t.Context(), nil)
	for _, img := range imgs {
		left = append(left, img.RepoTags...)
	}
	slices.Sort(left)
	// 10 bytes had to go: one 30-byte unused image is enough; the image in
	// use and the sandbox image are never candidates.
	if !slices.Contains(left, "localhost/kubeedge/busybox:1") || !slices.Contains(left, DefaultPodSandboxImage) || len(left) != 3 {
		t.Errorf("images left %v", left)
	}
	capacity, avail = 100, 50
	if err := h.e.gcImages(t.Context()); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := h.rt.ListImages(t.Context(), nil); len(imgs) != 3 {
		t.Errorf("images removed below the threshold: %d left", len(imgs))
	}
}

func TestStartupProbeGatesLiveness(t *testing.T) {
	h := newHarness(t, nil)
	var started atomic.Bool
	var livenessBeforeStart atomic.Int32
	h.rt.OnExec = func(c *fakecri.Container, cmd []string) ([]byte, int32, error) {
		switch cmd[0] {
		case "startup":
			if started.Load() {
				return nil, 0, nil
			}
			return nil, 1, nil
		case "live":
			if !started.Load() {
				livenessBeforeStart.Add(1)
			}
		}
		return nil, 0, nil
	}
	h.start()
	c := bb("main", "sleep", "1d")
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"startup"}}}, PeriodSeconds: 1, FailureThreshold: 100}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"live"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	pod := testPod("startup", c)
	h.putPod(pod)
	st := h.waitStatus(pod, "running, not started", func(st corev1.PodStatus) bool {
		return running("main")(st) && h.rep.hasEvent(pod.UID, reasonUnhealthy, "Startup probe failed")
	})
	if cs := findStatus(st.ContainerStatuses, "main"); *cs.Started || cs.Ready {
		t.Errorf("started %v ready %v before the startup probe passed", *cs.Started, cs.Ready)
	}
	started.Store(true)
	h.eventuallyf(func() string {
		h.clk.Step(time.Second)
		st, _ := h.rep.latest(pod.UID)
		if cs := findStatus(st.ContainerStatuses, "main"); cs != nil && cs.Started != nil && *cs.Started && cs.Ready {
			return ""
		}
		return "started and ready after the startup probe passed"
	})
	if n := livenessBeforeStart.Load(); n != 0 {
		t.Errorf("liveness probe ran %d times before the startup probe passed", n)
	}
	if n := len(h.rt.Containers()); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
}

func TestStartupProbeFailureRestarts(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.OnExec = func(c *fakecri.Container, cmd []string) ([]byte, int32, error) { return nil, 1, nil }
	h.start()
	c := bb("main", "sleep", "1d")
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"startup"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	pod := testPod("startupfail", c)
	h.putPod(pod)
	h.waitStatus(pod, "restarted after the startup probe failed", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.RestartCount >= 1
	})
	if !h.rep.hasEvent(pod.UID, reasonKilling, "Container main failed startup probe, will be restarted") {
		t.Errorf("events:\n%s", h.rep.eventList(pod.UID))
	}
}
