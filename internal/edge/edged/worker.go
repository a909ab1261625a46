package edged

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podWorker owns one pod UID: every runtime action for the pod happens on
// its goroutine (run), so actions for one pod never interleave, while pods
// proceed in parallel. Wakes (store changes, PLEG events, probe results,
// timers) coalesce; each sync reads the desired pod and the runtime state
// afresh (level-triggered).
type podWorker struct {
	e    *Edged
	uid  types.UID
	key  podKey
	kick chan struct{} // capacity 1

	// rejected: not admitted (maxPods); nothing runs, a Failed status is
	// reported. Set at creation, then read-only.
	rejected bool

	mu          sync.Mutex
	pod         *corev1.Pod // guarded by mu; newest desired spec (or last known)
	removed     bool        // guarded by mu; the pod left the store
	terminating bool        // guarded by mu; being torn down
	terminal    bool        // guarded by mu; Succeeded or Failed, nothing will restart
	// reported is lastStatus for readers outside run (streams pick the
	// container instance a log request means from it). Guarded by mu.
	reported *corev1.PodStatus

	// Owned by run.
	waiting     map[string]*startError // container name -> why it is waiting
	lastStatus  *corev1.PodStatus      // last reported
	startTime   *metav1.Time
	terminated  bool // PodTerminated was sent
	volumeRetry time.Duration
	sandboxKey  string
}

func newPodWorker(e *Edged, pod *corev1.Pod, rejected bool) *podWorker {
	w := &podWorker{
		e: e, uid: pod.UID, key: keyOf(pod), kick: make(chan struct{}, 1),
		rejected: rejected, pod: pod, waiting: map[string]*startError{},
		sandboxKey: string(pod.UID) + "/sandbox",
	}
	if pod.Status.StartTime != nil {
		// Reported earlier (before a restart of edged): keep it.
		st := *pod.Status.StartTime
		w.startTime = &st
	}
	w.wake()
	return w
}

func (w *podWorker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) remove() {
	w.mu.Lock()
	w.removed = true
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.removed
}

// active reports whether the pod counts against maxPods.
func (w *podWorker) active() bool {
	if w.rejected {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.removed && !w.terminating && !w.terminal && w.pod.DeletionTimestamp == nil
}

func (w *podWorker) setFlags(terminating, terminal bool) {
	w.mu.Lock()
	w.terminating, w.terminal = terminating, terminal
	w.mu.Unlock()
}

// run syncs the pod on every wake and at least every SyncFrequency, until
// ctx ends (edged stops: containers stay) or the pod is gone and torn down.
func (w *podWorker) run(ctx context.Context) {
	defer w.e.probes.stopPod(w.uid)
	timer := w.e.clk.NewTimer(w.e.cfg.SyncFrequency)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C():
		}
		next, done := w.syncOnce(ctx)
		if done {
			w.e.workerDone(w)
			return
		}
		if next <= 0 || next > w.e.cfg.SyncFrequency {
			next = w.e.cfg.SyncFrequency
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(next)
	}
}

// syncOnce does one level-triggered pass; it returns when to sync again
// and whether the worker is finished.
func (w *podWorker) syncOnce(ctx context.Context) (time.Duration, bool) {
	e := w.e
	pod, removed := w.snapshot()
	if w.rejected {
		if removed || pod.DeletionTimestamp != nil {
			if !w.terminated {
				e.deps.Reporter.PodTerminated(pod.Namespace, pod.Name, pod.UID)
				w.terminated = true
			}
			return 0, removed
		}
		if w.lastStatus == nil {
			w.report(pod, rejectedStatus(pod, e.activePods(), e.cfg.MaxPods, e.clk.Now()))
			e.events.pod(pod, "", corev1.EventTypeWarning, reasonOutOfPods, "%s", w.lastStatus.Message)
		}
		return 0, false
	}
	rt, err := e.podRuntimeState(ctx, w.uid)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("read pod state from the runtime", "pod", podFullName(pod), "err", err)
		}
		return 2 * time.Second, false
	}
	if removed || pod.DeletionTimestamp != nil {
		w.setFlags(true, false)
		return w.terminate(ctx, pod, rt, removed)
	}
	next := w.syncPod(ctx, pod, rt)
	if fresh, err := e.podRuntimeState(ctx, w.uid); err == nil {
		rt = fresh
	}
	w.report(pod, w.computeStatus(pod, rt))
	e.probes.syncPod(ctx, pod, rt)
	w.gcContainers(ctx, pod, rt)
	return next, false
}

func (e *Edged) activePods() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.activePodsLocked()
}

// report sends status when it differs from the last one sent.
func (w *podWorker) report(pod *corev1.Pod, st corev1.PodStatus) {
	if w.lastStatus != nil && statusEqual(w.lastStatus, &st) {
		return
	}
	w.lastStatus = st.DeepCopy()
	w.mu.Lock()
	w.reported = w.lastStatus
	w.mu.Unlock()
	w.e.deps.Reporter.PodStatus(pod.Namespace, pod.Name, pod.UID, st)
}

// terminate stops the pod's containers with its grace period, reports the
// final status, removes sandboxes, volumes, cgroups and logs, and then
// reports PodTerminated once.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod, rt *podRuntime, removed bool) (time.Duration, bool) {
	e := w.e
	if w.terminated {
		if removed {
			return 0, true
		}
		return 0, false
	}
	e.probes.stopPod(w.uid)
	if err := e.stopPodContainers(ctx, pod, rt, gracePeriod(pod)); err != nil {
		e.log.Warn("stop pod", "pod", podFullName(pod), "err", err)
		return 2 * time.Second, false
	}
	if fresh, err := e.podRuntimeState(ctx, w.uid); err == nil {
		rt = fresh
	}
	if !removed {
		w.report(pod, w.computeStatus(pod, rt))
	}
	if err := e.removePodResources(ctx, pod.UID, rt, podLogDir(e.cfg.PodLogsDirectory, pod)); err != nil {
		e.log.Warn("remove pod", "pod", podFullName(pod), "err", err)
		return 2 * time.Second, false
	}
	e.deps.Reporter.PodTerminated(pod.Namespace, pod.Name, pod.UID)
	w.terminated = true
	e.log.Info("pod terminated", "pod", podFullName(pod), "removedFromStore", removed)
	return 0, removed
}

// stopPodContainers stops every running container of the pod in parallel,
// running preStop hooks first, and then stops its sandboxes.
func (e *Edged) stopPodContainers(ctx context.Context, pod *corev1.Pod, rt *podRuntime, grace int64) error {
	running := rt.running()
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for i, c := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.killContainer(ctx, pod, c, grace, fmt.Sprintf("Stopping container %s", c.name))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, sb := range rt.sandboxes {
		if err := e.rt.StopPodSandbox(ctx, sb.id); err != nil {
			return err
		}
	}
	return nil
}

// killContainer runs the preStop hook (if the spec has one and the
// container runs), then stops the container with what is left of grace.
// pod may be nil for orphans: the grace period then comes from the
// container's annotation.
func (e *Edged) killContainer(ctx context.Context, pod *corev1.Pod, c *containerInstance, grace int64, msg string) error {
	start := e.clk.Now()
	if pod != nil {
		spec := containerByName(pod, c.name)
		fieldPath := ""
		if spec != nil {
			fieldPath = containerFieldPath(spec, isInitContainer(pod, c.name))
		}
		e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonKilling, "%s", msg)
		if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && c.running() && grace > 0 {
			hctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
			if err := e.runHook(hctx, pod, spec, c.id, spec.Lifecycle.PreStop, time.Duration(grace)*time.Second); err != nil {
				e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailedPreStopHook, "PreStopHook failed: %v", err)
			}
			cancel()
			grace = max(grace-int64(e.clk.Since(start)/time.Second), 2)
		}
	}
	return e.rt.StopContainer(ctx, c.id, grace)
}

func isInitContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// removePodResources removes the pod's sandboxes (and with them its
// containers), its directory, cgroup and log directory.
func (e *Edged) removePodResources(ctx context.Context, uid types.UID, rt *podRuntime, logDir string) error {
	for _, sb := range rt.sandboxes {
		if err := e.rt.RemovePodSandbox(ctx, sb.id); err != nil {
			return err
		}
	}
	// Containers outside any known sandbox (should not exist) go too.
	for _, c := range rt.containers {
		if err := e.rt.RemoveContainer(ctx, c.id); err != nil {
			return err
		}
	}
	if err := e.vols.teardown(uid); err != nil {
		return err
	}
	if err := e.removePodCgroups(uid); err != nil {
		e.log.Warn("remove pod cgroup", "uid", uid, "err", err)
	}
	if logDir != "" {
		if err := os.RemoveAll(logDir); err != nil {
			return fmt.Errorf("remove pod logs: %w", err)
		}
	}
	return nil
}

// shouldRestart applies the pod's restart policy to an exited container.
func shouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// podTerminal reports whether the pod has finished for good (nothing will
// be restarted) and its phase.
func podTerminal(pod *corev1.Pod, rt *podRuntime) (bool, corev1.PodPhase) {
	policy := restartPolicy(pod)
	if policy == corev1.RestartPolicyAlways {
		return false, ""
	}
	for _, ic := range pod.Spec.InitContainers {
		if inst := rt.latest(ic.Name); inst != nil && inst.exited() && inst.exitCode != 0 && policy == corev1.RestartPolicyNever {
			return true, corev1.PodFailed
		}
	}
	sb := rt.latestSandbox()
	sandboxGone := sb == nil || !sb.ready
	ran := len(rt.containers) > 0
	if policy == corev1.RestartPolicyNever && sb != nil && sandboxGone && ran {
		// The sandbox died (a reboot) after containers ran: a Never pod
		// is not started again, as with the kubelet.
		for _, c := range pod.Spec.Containers {
			if inst := rt.latest(c.Name); inst == nil || !inst.exited() || inst.exitCode != 0 {
				return true, corev1.PodFailed
			}
		}
		return true, corev1.PodSucceeded
	}
	succeeded := true
	for _, c := range pod.Spec.Containers {
		inst := rt.latest(c.Name)
		if inst == nil || !inst.exited() {
			return false, ""
		}
		if inst.exitCode != 0 {
			if policy == corev1.RestartPolicyOnFailure {
				return false, ""
			}
			succeeded = false
		}
	}
	if succeeded {
		return true, corev1.PodSucceeded
	}
	return true, corev1.PodFailed
}

// syncPod brings a live pod towards its spec and returns when to look
// again (0: the periodic resync is enough).
func (w *podWorker) syncPod(ctx context.Context, pod *corev1.Pod, rt *podRuntime) time.Duration {
	e := w.e
	var requeue time.Duration
	want := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	if terminal, _ := podTerminal(pod, rt); terminal {
		w.setFlags(false, true)
		// A finished pod gives its address back, as the kubelet's does.
		for _, c := range rt.running() {
			_ = e.killContainer(ctx, pod, c, gracePeriod(pod), fmt.Sprintf("Stopping container %s", c.name))
		}
		if sb := rt.latestSandbox(); sb != nil && sb.ready {
			if err := e.rt.StopPodSandbox(ctx, sb.id); err != nil {
				e.log.Warn("stop sandbox of finished pod", "pod", podFullName(pod), "err", err)
				return 2 * time.Second
			}
		}
		return 0
	}
	w.setFlags(false, false)
	if w.startTime == nil {
		now := metav1.NewTime(e.clk.Now())
		w.startTime = &now
	}
	sb := rt.latestSandbox()
	if sb == nil || !sb.ready {
		newSB, d := w.createSandbox(ctx, pod, rt)
		if newSB == nil {
			return d
		}
		fresh, err := e.podRuntimeState(ctx, w.uid)
		if err != nil {
			return 2 * time.Second
		}
		rt, sb = fresh, fresh.latestSandbox()
		if sb == nil || sb.id != newSB.id {
			return time.Second
		}
	}
	addrs := w.addrs(pod, sb)
	vols, refresh, volErr := e.vols.setup(ctx, pod, addrs)
	if !refresh.IsZero() {
		want(max(refresh.Sub(e.clk.Now()), time.Second))
	}
	if volErr != nil {
		e.events.pod(pod, "", corev1.EventTypeWarning, reasonFailedMount, "%v", volErr)
		want(w.nextVolumeRetry())
	} else {
		w.volumeRetry = 0
	}
	startOne := func(c *corev1.Container, isInit bool) {
		if volErr != nil {
			w.waiting[c.Name] = &startError{reason: waitingContainerCreating}
			return
		}
		if d := w.startContainer(ctx, pod, c, isInit, sb, rt, vols, addrs); d > 0 {
			want(d)
		}
	}

	// Init containers, in order, in the current sandbox.
	if len(pod.Spec.InitContainers) > 0 && !regularStartedIn(pod, rt, sb.id) {
		for i := range pod.Spec.InitContainers {
			ic := &pod.Spec.InitContainers[i]
			inst := latestIn(rt, ic.Name, sb.id)
			if inst == nil {
				startOne(ic, true)
				return requeue
			}
			if !inst.exited() {
				return requeue // running: wait for it
			}
			if inst.exitCode == 0 {
				continue
			}
			if restartPolicy(pod) == corev1.RestartPolicyNever {
				return requeue // terminal: handled on the next pass
			}
			startOne(ic, true)
			return requeue
		}
	}

	policy := restartPolicy(pod)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		inst := rt.latest(c.Name)
		if inst != nil && inst.sandboxID == sb.id && !inst.exited() {
			reason := ""
			switch {
			case e.probes.failed(inst.id, probeStartup):
				reason = fmt.Sprintf("Container %s failed startup probe, will be restarted", c.Name)
			case e.probes.failed(inst.id, probeLiveness):
				reason = fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.Name)
			case inst.hash != "" && inst.hash != containerHash(c):
				reason = fmt.Sprintf("Container %s definition changed, will be restarted", c.Name)
			case inst.state == runtimeapi.ContainerState_CONTAINER_CREATED:
				// Created but never started (edged stopped in between).
				reason = fmt.Sprintf("Container %s was created but not started, will be re-created", c.Name)
			}
			if reason == "" {
				continue
			}
			if err := e.killContainer(ctx, pod, inst, gracePeriod(pod), reason); err != nil {
				e.log.Warn("kill container", "pod", podFullName(pod), "container", c.Name, "err", err)
				want(time.Second)
				continue
			}
			e.probes.forget(inst.id)
			if policy != corev1.RestartPolicyNever {
				// The pre-kill state was running: no back-off, as the
				// kubelet's restart after a failed liveness probe.
				w.restartNow(ctx, pod, c, sb, vols, addrs, volErr, want)
			}
			continue
		}
		if inst != nil && inst.exited() && !shouldRestart(policy, inst.exitCode) {
			continue
		}
		startOne(c, false)
	}
	return requeue
}

// restartNow starts a container whose instance edged just killed, without
// the crash-loop back-off.
func (w *podWorker) restartNow(ctx context.Context, pod *corev1.Pod, c *corev1.Container, sb *sandboxInstance, vols map[string]mountedVolume, addrs podAddrs, volErr error, want func(time.Duration)) {
	if volErr != nil {
		w.waiting[c.Name] = &startError{reason: waitingContainerCreating}
		return
	}
	fresh, err := w.e.podRuntimeState(ctx, w.uid)
	if err != nil {
		want(time.Second)
		return
	}
	if d := w.doStart(ctx, pod, c, false, sb, fresh, vols, addrs); d > 0 {
		want(d)
	}
}

func (w *podWorker) nextVolumeRetry() time.Duration {
	if w.volumeRetry == 0 {
		w.volumeRetry = 2 * time.Second
	} else {
		w.volumeRetry = min(2*w.volumeRetry, 2*time.Minute)
	}
	return w.volumeRetry
}

// regularStartedIn reports whether any regular container has an instance
// in sandbox sbID, which means the init containers completed there.
func regularStartedIn(pod *corev1.Pod, rt *podRuntime, sbID string) bool {
	for _, c := range pod.Spec.Containers {
		if latestIn(rt, c.Name, sbID) != nil {
			return true
		}
	}
	return false
}

func latestIn(rt *podRuntime, name, sbID string) *containerInstance {
	for _, c := range rt.containers {
		if c.name == name && c.sandboxID == sbID {
			return c
		}
	}
	return nil
}

// addrs returns the pod's and the node's addresses for the downward API.
func (w *podWorker) addrs(pod *corev1.Pod, sb *sandboxInstance) podAddrs {
	var a podAddrs
	if w.e.cfg.NodeIP != "" {
		a.hostIPs = []string{w.e.cfg.NodeIP}
	}
	switch {
	case pod.Spec.HostNetwork:
		a.podIPs = a.hostIPs
	case sb != nil && len(sb.ips) > 0:
		a.podIPs = sb.ips
	}
	return a
}

// createSandbox stops what is left of an old sandbox and runs a new one.
func (w *podWorker) createSandbox(ctx context.Context, pod *corev1.Pod, rt *podRuntime) (*sandboxInstance, time.Duration) {
	e := w.e
	old := rt.latestSandbox()
	for _, c := range rt.running() {
		if err := e.killContainer(ctx, pod, c, gracePeriod(pod), fmt.Sprintf("Stopping container %s", c.name)); err != nil {
			return nil, time.Second
		}
	}
	attempt := uint32(0)
	if old != nil {
		e.events.pod(pod, "", corev1.EventTypeNormal, reasonSandboxChanged, "Pod sandbox changed, it will be killed and re-created.")
		if err := e.rt.StopPodSandbox(ctx, old.id); err != nil {
			return nil, time.Second
		}
		attempt = old.attempt + 1
	}
	// Volumes before the sandbox, as the kubelet waits for volumes first.
	if _, _, err := e.vols.setup(ctx, pod, w.addrs(pod, nil)); err != nil {
		e.events.pod(pod, "", corev1.EventTypeWarning, reasonFailedMount, "%v", err)
		for _, c := range allContainers(pod) {
			w.waiting[c.Name] = &startError{reason: waitingContainerCreating}
		}
		return nil, w.nextVolumeRetry()
	}
	if in, left := e.backoff.inBackoff(w.sandboxKey, e.pullFailedAt(w.sandboxKey)); in {
		return nil, left
	}
	cfg := e.sandboxConfig(pod, attempt)
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		e.log.Warn("pod log directory", "pod", podFullName(pod), "err", err)
	}
	select {
	case e.sandboxSem <- struct{}{}:
	case <-ctx.Done():
		return nil, time.Second
	}
	id, err := e.rt.RunPodSandbox(ctx, cfg, "")
	<-e.sandboxSem
	if err != nil {
		now := e.clk.Now()
		e.setPullFailedAt(w.sandboxKey, now)
		d := e.backoff.next(w.sandboxKey, now)
		e.events.pod(pod, "", corev1.EventTypeWarning, reasonFailedSandbox, "Failed to create pod sandbox: %v", err)
		for _, c := range allContainers(pod) {
			w.waiting[c.Name] = &startError{reason: waitingContainerCreating, message: fmt.Sprintf("Failed to create pod sandbox: %v", err)}
		}
		return nil, d
	}
	e.backoff.reset(w.sandboxKey)
	e.log.Info("pod sandbox started", "pod", podFullName(pod), "sandbox", id, "attempt", attempt)
	return &sandboxInstance{id: id, attempt: attempt, ready: true}, 0
}

// startContainer starts c unless it is in crash-loop back-off; it returns
// when to try again if it could not.
func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, isInit bool, sb *sandboxInstance, rt *podRuntime, vols map[string]mountedVolume, addrs podAddrs) time.Duration {
	e := w.e
	key := string(pod.UID) + "/" + c.Name
	if latest := rt.latest(c.Name); latest != nil && latest.exited() {
		if in, left := e.backoff.inBackoff(key, latest.finished); in {
			delay := e.backoff.delay(key)
			w.waiting[c.Name] = &startError{
				reason:  waitingCrashLoopBackOff,
				message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", delay, c.Name, podFullName(pod)),
			}
			e.events.pod(pod, containerFieldPath(c, isInit), corev1.EventTypeWarning, reasonBackOff,
				"Back-off restarting failed container %s in pod %s", c.Name, podFullName(pod))
			return left
		}
		e.backoff.next(key, latest.finished)
	}
	return w.doStart(ctx, pod, c, isInit, sb, rt, vols, addrs)
}

// doStart pulls, creates and starts one container instance.
func (w *podWorker) doStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, isInit bool, sb *sandboxInstance, rt *podRuntime, vols map[string]mountedVolume, addrs podAddrs) time.Duration {
	e := w.e
	fieldPath := containerFieldPath(c, isInit)
	fail := func(se *startError, event bool) time.Duration {
		w.waiting[c.Name] = se
		if event {
			e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailed, "Error: %s", se.message)
		}
		if se.retryAfter > 0 {
			return se.retryAfter
		}
		return e.cfg.BackOffInitial
	}
	sbCfg := e.sandboxConfig(pod, sb.attempt)
	img, err := e.ensureImage(ctx, pod, c, fieldPath, sbCfg)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			return fail(se, false)
		}
		return fail(&startError{reason: waitingErrImagePull, message: err.Error()}, false)
	}
	env, err := makeEnv(pod, c, addrs, storeObjects{e: e, ctx: ctx})
	if err != nil {
		return fail(configError(err), true)
	}
	envMap := make(map[string]string, len(env))
	for _, v := range env {
		envMap[v.name] = v.value
	}
	if err := runAsNonRootViolation(pod, c, img); err != nil {
		return fail(configError(err), true)
	}
	mounts, err := containerMounts(pod, c, vols, envMap)
	if err != nil {
		return fail(configError(err), true)
	}
	attempt := uint32(0)
	if latest := rt.latest(c.Name); latest != nil {
		attempt = latest.attempt + 1
		if latest.state == runtimeapi.ContainerState_CONTAINER_CREATED {
			_ = e.rt.RemoveContainer(ctx, latest.id)
		}
	}
	termHost := ""
	if c.TerminationMessagePath != "" {
		termHost = filepath.Join(e.vols.podDir(pod.UID), "containers", c.Name, strconv.FormatUint(uint64(attempt), 10))
		if err := os.MkdirAll(filepath.Dir(termHost), 0o755); err == nil {
			if f, err := os.OpenFile(termHost, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666); err == nil {
				_ = f.Close()
				_ = os.Chmod(termHost, 0o666)
				mounts = append(mounts, &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: termHost})
			}
		}
	}
	cfg := e.containerConfig(pod, c, attempt, isInit, env, envMap, mounts, img, termHost)
	id, err := e.rt.CreateContainer(ctx, sb.id, cfg, sbCfg)
	if err != nil {
		return fail(&startError{reason: waitingCreateError, message: err.Error()}, true)
	}
	e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonCreated, "Created container: %s", c.Name)
	if err := e.rt.StartContainer(ctx, id); err != nil {
		_ = e.rt.RemoveContainer(ctx, id)
		return fail(&startError{reason: waitingRunContainerError, message: err.Error()}, true)
	}
	e.events.pod(pod, fieldPath, corev1.EventTypeNormal, reasonStarted, "Started container %s", c.Name)
	delete(w.waiting, c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := e.runHook(ctx, pod, c, id, c.Lifecycle.PostStart, 30*time.Second); err != nil {
			e.events.pod(pod, fieldPath, corev1.EventTypeWarning, reasonFailedPostStartHook, "PostStartHook failed: %v", err)
			_ = e.rt.StopContainer(ctx, id, gracePeriod(pod))
			w.waiting[c.Name] = &startError{reason: waitingPostStartHookError, message: err.Error()}
		}
	}
	return 0
}

func configError(err error) *startError {
	return &startError{reason: waitingCreateConfigError, message: trimConfigErr(err)}
}

// trimConfigErr drops the errConfig prefix, which says nothing the reason
// does not.
func trimConfigErr(err error) string {
	msg := err.Error()
	prefix := errConfig.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

// containerConfig builds the CRI container config.
func (e *Edged) containerConfig(pod *corev1.Pod, c *corev1.Container, attempt uint32, isInit bool, env []envVar, envMap map[string]string, mounts []*runtimeapi.Mount, img *runtimeapi.Image, termHost string) *runtimeapi.ContainerConfig {
	lookup := func(n string) (string, bool) { v, ok := envMap[n]; return v, ok }
	var cmd, args []string
	for _, s := range c.Command {
		cmd = append(cmd, expand(s, lookup))
	}
	for _, s := range c.Args {
		args = append(args, expand(s, lookup))
	}
	kvs := make([]*runtimeapi.KeyValue, 0, len(env))
	for _, v := range env {
		kvs = append(kvs, &runtimeapi.KeyValue{Key: v.name, Value: v.value})
	}
	typ := "regular"
	if isInit {
		typ = "init"
	}
	annotations := map[string]string{
		annotationHash:          containerHash(c),
		annotationRestartCount:  strconv.FormatUint(uint64(attempt), 10),
		annotationGracePeriod:   strconv.FormatInt(gracePeriod(pod), 10),
		annotationTermMsgPath:   c.TerminationMessagePath,
		annotationTermMsgPolicy: string(c.TerminationMessagePolicy),
		annotationContainerType: typ,
	}
	if termHost != "" {
		annotations[annotationTermMsgHostPath] = termHost
	}
	image := c.Image
	if img != nil && img.Id != "" {
		// The resolved image: a later tag move does not change what a
		// restarted instance runs until the pull policy pulls again.
		image = img.Id
	}
	return &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:       &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: c.Image},
		Command:     cmd,
		Args:        args,
		WorkingDir:  c.WorkingDir,
		Envs:        kvs,
		Mounts:      mounts,
		Labels:      map[string]string{labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelPodUID: string(pod.UID), labelContainerName: c.Name},
		Annotations: annotations,
		LogPath:     filepath.Join(c.Name, strconv.FormatUint(uint64(attempt), 10)+".log"),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       containerResources(c),
			SecurityContext: containerSecurity(pod, c),
		},
	}
}
