package edged

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Condition reasons, the kubelet's.
const (
	reasonContainersNotInitialized = "ContainersNotInitialized"
	reasonContainersNotReady       = "ContainersNotReady"
	reasonPodCompleted             = "PodCompleted"
	reasonReadinessGatesNotReady   = "ReadinessGatesNotReady"
)

// maxTerminationMessage is the kubelet's limit on a termination message.
const maxTerminationMessage = 4096

// ownConditions are the condition types edged computes; others (readiness
// gates, DisruptionTarget) are kept as the cloud has them.
var ownConditions = map[corev1.PodConditionType]bool{
	corev1.PodScheduled: true, corev1.PodReadyToStartContainers: true, corev1.PodInitialized: true,
	corev1.ContainersReady: true, corev1.PodReady: true,
}

// containerIDPrefix is "<runtime>://" as the kubelet writes container ids.
const containerIDPrefix = "containerd://"

// computeStatus builds the pod's status from its spec, the runtime state,
// the worker's record of why containers wait, and probe results.
func (w *podWorker) computeStatus(pod *corev1.Pod, rt *podRuntime) corev1.PodStatus {
	e := w.e
	now := metav1.NewTime(e.clk.Now())
	sb := rt.latestSandbox()
	addrs := w.addrs(pod, sb)
	st := corev1.PodStatus{QOSClass: qosClass(pod), StartTime: w.startTime}
	for _, ip := range addrs.hostIPs {
		st.HostIPs = append(st.HostIPs, corev1.HostIP{IP: ip})
	}
	if len(addrs.hostIPs) > 0 {
		st.HostIP = addrs.hostIPs[0]
	}
	if sb != nil && sb.ready || pod.Spec.HostNetwork {
		for _, ip := range addrs.podIPs {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
		}
		if len(addrs.podIPs) > 0 {
			st.PodIP = addrs.podIPs[0]
		}
	}
	terminal, terminalPhase := podTerminal(pod, rt)
	policy := restartPolicy(pod)

	// Init containers.
	initDone := true
	var incomplete []string
	regularStarted := sb != nil && regularStartedIn(pod, rt, sb.id)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.containerStatus(pod, c, rt, true, terminal, policy)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if !(cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0) && !regularStarted {
			initDone = false
			incomplete = append(incomplete, c.Name)
		}
	}
	failedInit := false
	if !initDone && policy == corev1.RestartPolicyNever {
		for _, cs := range st.InitContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				failedInit = true
			}
		}
	}

	// Regular containers.
	var unready []string
	running, waiting, stopped, succeeded := 0, 0, 0, 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.containerStatus(pod, c, rt, false, terminal, policy)
		if !initDone && cs.State.Waiting != nil && cs.State.Waiting.Reason == waitingContainerCreating && cs.LastTerminationState.Terminated == nil {
			cs.State.Waiting.Reason = waitingPodInitializing
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
	}

	// Phase, as the kubelet's getPhase.
	switch {
	case terminal:
		st.Phase = terminalPhase
	case failedInit:
		st.Phase = corev1.PodFailed
	case !initDone || waiting > 0:
		st.Phase = corev1.PodPending
	case running > 0:
		st.Phase = corev1.PodRunning
	case stopped > 0:
		switch {
		case policy == corev1.RestartPolicyAlways:
			st.Phase = corev1.PodRunning
		case stopped == succeeded:
			st.Phase = corev1.PodSucceeded
		case policy == corev1.RestartPolicyNever:
			st.Phase = corev1.PodFailed
		default:
			st.Phase = corev1.PodRunning
		}
	default:
		st.Phase = corev1.PodPending
	}
	// Terminal phases are final, also across edged restarts.
	if p := pod.Status.Phase; p == corev1.PodSucceeded || p == corev1.PodFailed {
		st.Phase = p
	}

	// Conditions.
	cond := func(typ corev1.PodConditionType, ok bool, reason, msg string) {
		s := corev1.ConditionFalse
		if ok {
			s, reason, msg = corev1.ConditionTrue, "", ""
		}
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: s, Reason: reason, Message: msg})
	}
	cond(corev1.PodReadyToStartContainers, sb != nil && sb.ready, "", "")
	if initDone {
		cond(corev1.PodInitialized, true, "", "")
	} else {
		cond(corev1.PodInitialized, false, reasonContainersNotInitialized, fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incomplete, " ")))
	}
	completed := st.Phase == corev1.PodSucceeded
	switch {
	case completed:
		cond(corev1.ContainersReady, false, reasonPodCompleted, "")
		cond(corev1.PodReady, false, reasonPodCompleted, "")
	case len(unready) > 0:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		cond(corev1.ContainersReady, false, reasonContainersNotReady, msg)
		cond(corev1.PodReady, false, reasonContainersNotReady, msg)
	default:
		cond(corev1.ContainersReady, true, "", "")
		if msg := readinessGatesUnready(pod); msg != "" {
			cond(corev1.PodReady, false, reasonReadinessGatesNotReady, msg)
		} else {
			cond(corev1.PodReady, true, "", "")
		}
	}
	cond(corev1.PodScheduled, true, "", "")
	for _, c := range pod.Status.Conditions {
		if !ownConditions[c.Type] {
			st.Conditions = append(st.Conditions, c)
		}
	}
	// Keep transition times of conditions whose status did not change.
	prev := map[corev1.PodConditionType]corev1.PodCondition{}
	if w.lastStatus != nil {
		for _, c := range w.lastStatus.Conditions {
			prev[c.Type] = c
		}
	} else {
		for _, c := range pod.Status.Conditions {
			prev[c.Type] = c
		}
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if !ownConditions[c.Type] {
			continue
		}
		if p, ok := prev[c.Type]; ok && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
			c.LastTransitionTime = p.LastTransitionTime
		} else {
			c.LastTransitionTime = now
		}
	}
	return st
}

// readinessGatesUnready explains the first readiness gate whose condition
// is not True, or returns "".
func readinessGatesUnready(pod *corev1.Pod) string {
	for _, g := range pod.Spec.ReadinessGates {
		found := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType {
				found = true
				if c.Status != corev1.ConditionTrue {
					return fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %s", g.ConditionType, c.Status)
				}
			}
		}
		if !found {
			return fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
		}
	}
	return ""
}

// containerStatus is one container's status from its two newest instances.
func (w *podWorker) containerStatus(pod *corev1.Pod, c *corev1.Container, rt *podRuntime, isInit, terminal bool, policy corev1.RestartPolicy) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	insts := rt.instances(c.Name)
	rec := w.waiting[c.Name]
	if len(insts) == 0 {
		reason, msg := waitingContainerCreating, ""
		if isInit && !w.initReached(pod, c.Name, rt) {
			reason = waitingPodInitializing
		}
		if rec != nil {
			reason, msg = rec.reason, rec.message
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		started := false
		cs.Started = &started
		return cs
	}
	latest := insts[0]
	cs.ContainerID = containerIDPrefix + latest.id
	cs.ImageID = latest.imageRef
	cs.RestartCount = int32(latest.attempt)
	started := false
	switch latest.state {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(latest.started)}
		started = w.e.probes.started(latest.id, c)
		cs.Ready = started && w.e.probes.ready(latest.id, c)
		if isInit {
			cs.Ready = false
		}
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		term := w.terminatedState(c, latest)
		if rec != nil && !terminal && shouldRestart(policy, latest.exitCode) {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: rec.reason, Message: rec.message}
			cs.LastTerminationState.Terminated = term
			cs.Started = &started
			return cs
		}
		cs.State.Terminated = term
		if isInit && term.ExitCode == 0 {
			cs.Ready = true
		}
	default:
		reason := waitingContainerCreating
		if rec != nil {
			reason = rec.reason
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	}
	cs.Started = &started
	if len(insts) > 1 && insts[1].exited() {
		cs.LastTerminationState.Terminated = w.terminatedState(c, insts[1])
	}
	return cs
}

// initReached reports whether init container name is the next to run or
// has run (the ones after it wait with PodInitializing).
func (w *podWorker) initReached(pod *corev1.Pod, name string, rt *podRuntime) bool {
	for _, ic := range pod.Spec.InitContainers {
		if ic.Name == name {
			return true
		}
		inst := rt.latest(ic.Name)
		if inst == nil || !inst.exited() || inst.exitCode != 0 {
			return false
		}
	}
	return false
}

func (w *podWorker) terminatedState(c *corev1.Container, inst *containerInstance) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    inst.exitCode,
		Reason:      inst.reason,
		Message:     inst.message,
		StartedAt:   metav1.NewTime(inst.started),
		FinishedAt:  metav1.NewTime(inst.finished),
		ContainerID: containerIDPrefix + inst.id,
	}
	if t.Reason == "" {
		t.Reason = "Error"
		if t.ExitCode == 0 {
			t.Reason = "Completed"
		}
	}
	if msg := terminationMessage(c, inst); msg != "" {
		t.Message = msg
	}
	return t
}

// terminationMessage reads what the container wrote to its termination
// message file, or with FallbackToLogsOnError the tail of its log when it
// failed without writing one.
func terminationMessage(c *corev1.Container, inst *containerInstance) string {
	if p := inst.annotations[annotationTermMsgHostPath]; p != "" {
		if msg := readLimited(p, maxTerminationMessage); msg != "" {
			return msg
		}
	}
	if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && inst.exitCode != 0 && inst.logPath != "" {
		return logTail(inst.logPath, 80, 2048)
	}
	return ""
}

func readLimited(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return ""
	}
	return string(data)
}

// logTail returns the message text of the last lines of a CRI log file,
// at most maxBytes.
func logTail(path string, lines int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	// Read enough of the end for the lines we want (CRI lines carry a
	// ~40-byte prefix).
	window := min(st.Size(), maxBytes*4+4096)
	buf := make([]byte, window)
	if _, err := f.ReadAt(buf, st.Size()-window); err != nil && err != io.EOF {
		return ""
	}
	all := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if window < st.Size() && len(all) > 0 {
		all = all[1:] // partial first line
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	var b strings.Builder
	for _, l := range all {
		msg, partial, ok := parseCRILogLine(l)
		if !ok {
			continue
		}
		b.Write(msg)
		if !partial {
			b.WriteByte('\n')
		}
	}
	out := b.String()
	if int64(len(out)) > maxBytes {
		out = out[int64(len(out))-maxBytes:]
	}
	return out
}

// parseCRILogLine splits "<RFC3339Nano> <stream> <P|F> <message>".
func parseCRILogLine(l []byte) (msg []byte, partial, ok bool) {
	parts := bytes.SplitN(l, []byte(" "), 4)
	if len(parts) < 3 {
		return nil, false, false
	}
	if _, err := time.Parse(time.RFC3339Nano, string(parts[0])); err != nil {
		return nil, false, false
	}
	if s := string(parts[1]); s != "stdout" && s != "stderr" {
		return nil, false, false
	}
	switch string(parts[2]) {
	case "P":
		partial = true
	case "F":
	default:
		return nil, false, false
	}
	if len(parts) == 4 {
		msg = parts[3]
	}
	return msg, partial, true
}

// rejectedStatus is the status of a pod refused at admission.
func rejectedStatus(pod *corev1.Pod, used, capacity int, now time.Time) corev1.PodStatus {
	return corev1.PodStatus{
		Phase:    corev1.PodFailed,
		Reason:   reasonOutOfPods,
		Message:  fmt.Sprintf("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: %d, capacity: %d", used, capacity),
		QOSClass: qosClass(pod),
		StartTime: func() *metav1.Time {
			if pod.Status.StartTime != nil {
				return pod.Status.StartTime
			}
			t := metav1.NewTime(now)
			return &t
		}(),
	}
}

// statusEqual compares two statuses semantically.
func statusEqual(a, b *corev1.PodStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
