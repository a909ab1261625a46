package edged

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// realHarness runs edged against a private containerd (real clock, real
// CRI), with the local busybox and pause images.
type realHarness struct {
	*harness
	ctd    *testenv.Containerd
	client *cri.Client
}

func newRealHarness(t testing.TB, mutate func(*Config)) *realHarness {
	t.Helper()
	ctd := testenv.ContainerdForTest(t, testenv.ContainerdOptions{})
	client, err := cri.Dial(ctd.Endpoint, cri.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	dir, err := os.MkdirTemp("", "ked")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// tmpfs volumes of pods still running when the test ends.
		for _, mp := range mountPointsUnder(dir) {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	h := newHarness(t, func(c *Config) {
		c.RemoteRuntimeEndpoint = ctd.Endpoint
		c.CgroupRoot = ctd.CgroupRoot
		c.CgroupFS = "/sys/fs/cgroup"
		c.RootDirectory = filepath.Join(dir, "root")
		c.PodLogsDirectory = filepath.Join(dir, "logs")
		c.BackOffInitial, c.BackOffMax = time.Second, 4*time.Second
		if mutate != nil {
			mutate(c)
		}
	})
	h.runtime, h.noKick = client, true
	h.logger = slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &realHarness{harness: h, ctd: ctd, client: client}
}

type tLog struct{ t testing.TB }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// exec runs cmd in the pod's container through CRI and returns stdout.
func (h *realHarness) exec(pod *corev1.Pod, container string, cmd ...string) (string, int32) {
	h.t.Helper()
	id, err := h.e.ContainerID(context.Background(), pod.Namespace, pod.Name, container, false)
	if err != nil {
		h.t.Fatalf("container id: %v", err)
	}
	out, stderr, code, err := h.client.ExecSync(context.Background(), id, cmd, 30*time.Second)
	if err != nil {
		h.t.Fatalf("exec %v: %v", cmd, err)
	}
	if code != 0 {
		h.t.Logf("exec %v: exit %d, stderr %q", cmd, code, stderr)
	}
	return string(out), code
}

func busybox(name string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: testenv.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: cmd}
}

// TestRealPodNetworkAndHostNetwork runs a pod on the pod network (its IP is
// on the test's bridge and answers HTTP from the host) and a host-network
// pod, and removes both.
func TestRealPodNetworkAndHostNetwork(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	pod := testPod("net", busybox("web", "httpd", "-f", "-p", "8080", "-h", "/tmp"))
	// sleep and httpd as PID 1 ignore SIGTERM: keep the SIGKILL close.
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	h.putPod(pod)
	hn := testPod("hostnet", busybox("main", "sleep", "3600"))
	hn.Spec.HostNetwork = true
	hn.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	h.putPod(hn)

	st := h.waitStatus(pod, "pod-network pod running", running("web"))
	ip, err := netip.ParseAddr(st.PodIP)
	if err != nil || !h.ctd.Subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not on the test bridge %s", st.PodIP, h.ctd.Subnet)
	}
	if !strings.HasPrefix(findStatus(st.ContainerStatuses, "web").ContainerID, "containerd://") {
		t.Errorf("container id %q", findStatus(st.ContainerStatuses, "web").ContainerID)
	}
	hst := h.waitStatus(hn, "host-network pod running", running("main"))
	if hst.PodIP != "127.0.0.1" {
		t.Errorf("host-network pod IP %q, want the node IP", hst.PodIP)
	}
	out, _ := h.exec(hn, "main", "hostname")
	host, _ := os.Hostname()
	if strings.TrimSpace(out) != host {
		t.Errorf("host-network pod hostname %q, want the node's %q", strings.TrimSpace(out), host)
	}
	out, _ = h.exec(pod, "web", "hostname")
	if strings.TrimSpace(out) != "net" {
		t.Errorf("pod hostname %q, want net", strings.TrimSpace(out))
	}

	h.deletePod(pod)
	h.deletePod(hn)
	h.eventually("pods terminated", func() bool {
		return h.rep.terminations(pod.UID) == 1 && h.rep.terminations(hn.UID) == 1
	})
	sbs, err := h.client.ListPodSandbox(context.Background(), nil)
	if err != nil || len(sbs) != 0 {
		t.Errorf("sandboxes after deletion: %d, %v", len(sbs), err)
	}
	cs, err := h.client.ListContainers(context.Background(), nil)
	if err != nil || len(cs) != 0 {
		t.Errorf("containers after deletion: %d, %v", len(cs), err)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID))); !os.IsNotExist(err) {
		t.Errorf("pod directory remains (%v)", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", h.cfg.CgroupRoot, "kubepods/besteffort/pod"+string(pod.UID))); !os.IsNotExist(err) {
		t.Errorf("pod cgroup remains (%v)", err)
	}
}

// TestRealVolumesEnvInitAndLogs checks, inside real containers, configMap
// and secret volumes and env, a live configmap update, init containers in
// order, emptyDir sharing, and the container log file layout.
func TestRealVolumesEnvInitAndLogs(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"}, Data: map[string]string{"greeting": "hello", "mode": "edge"}})
	h.putSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"}, Data: map[string][]byte{"password": []byte("s3cr3t")}})
	main := busybox("main", "sh", "-c", "echo started-$GREETING; exec sleep 3600")
	main.Env = []corev1.EnvVar{
		{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "greeting"}}},
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
		{Name: "MY_POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	}
	main.VolumeMounts = []corev1.VolumeMount{
		{Name: "cfg", MountPath: "/etc/app"}, {Name: "sec", MountPath: "/etc/creds"}, {Name: "work", MountPath: "/work"},
		{Name: "cfg", MountPath: "/etc/mode", SubPath: "mode"},
		{Name: "mem", MountPath: "/mem"},
	}
	init1 := busybox("init1", "sh", "-c", "echo init1 >> /work/order")
	init1.VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	init2 := busybox("init2", "sh", "-c", "grep -q init1 /work/order && echo init2 >> /work/order")
	init2.VolumeMounts = init1.VolumeMounts
	pod := testPod("vols", main)
	pod.Spec.InitContainers = []corev1.Container{init1, init2}
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
	h.putPod(pod)
	st := h.waitStatus(pod, "running", running("main"))
	if condition(st, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("Initialized %s", condition(st, corev1.PodInitialized))
	}
	for cmd, want := range map[string]string{
		"cat /work/order":                         "init1\ninit2\n",
		"cat /etc/app/greeting":                   "hello",
		"cat /etc/creds/password":                 "s3cr3t",
		"cat /etc/mode":                           "edge",
		"echo $GREETING $PASSWORD $MY_POD $MY_IP": "hello s3cr3t vols " + st.PodIP + "\n",
		"touch /etc/app/x 2>&1 || echo read-only": "touch: /etc/app/x: Read-only file system\nread-only\n",
		"grep -c ' /mem tmpfs ' /proc/mounts":     "1\n",
		"echo x > /mem/f && cat /mem/f":           "x\n",
	} {
		if out, _ := h.exec(pod, "main", "sh", "-c", cmd); out != want {
			t.Errorf("%s: %q, want %q", cmd, out, want)
		}
	}
	logFile := filepath.Join(h.cfg.PodLogsDirectory, "default_vols_uid-vols", "main", "0.log")
	data, err := os.ReadFile(logFile)
	if err != nil || !strings.Contains(string(data), " stdout F started-hello") {
		t.Errorf("log file %s: %q, %v", logFile, data, err)
	}
	// A configmap update reaches the mounted files; the container is not
	// restarted.
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"}, Data: map[string]string{"greeting": "bonjour", "mode": "edge"}})
	h.eventually("updated configmap file in the container", func() bool {
		out, _ := h.exec(pod, "main", "cat", "/etc/app/greeting")
		return out == "bonjour"
	})
	st, _ = h.rep.latest(pod.UID)
	if cs := findStatus(st.ContainerStatuses, "main"); cs.RestartCount != 0 {
		t.Errorf("restartCount %d after a configmap update", cs.RestartCount)
	}
}

// TestRealProbesAndRestarts: a failing liveness probe restarts a container
// (restartCount grows, the previous log stays), a crashing container enters
// CrashLoopBackOff, an HTTP readiness probe drives Ready, and a probe on a
// closed port reports Unhealthy without touching the other pods.
func TestRealProbesAndRestarts(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	live := busybox("main", "sh", "-c", "echo run; touch /tmp/healthy; exec sleep 3600")
	live.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/healthy"}}}, PeriodSeconds: 1, FailureThreshold: 1}
	livePod := testPod("live", live)
	livePod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))

	crashPod := testPod("crash", busybox("main", "sh", "-c", "echo crashing; exit 3"))

	web := busybox("web", "httpd", "-f", "-p", "8080", "-h", "/www")
	web.Command = []string{"sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"}
	web.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 1, FailureThreshold: 1}
	webPod := testPod("web", web)
	webPod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))

	closed := busybox("main", "sleep", "3600")
	closed.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9999)}}, PeriodSeconds: 1}
	closedPod := testPod("closed", closed)
	closedPod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))

	for _, p := range []*corev1.Pod{livePod, crashPod, webPod, closedPod} {
		h.putPod(p)
	}
	h.waitStatus(livePod, "liveness pod running", running("main"))
	h.exec(livePod, "main", "rm", "/tmp/healthy")
	st := h.waitStatus(livePod, "restarted after the liveness probe failed", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.RestartCount >= 1 && cs.State.Running != nil
	})
	if cs := findStatus(st.ContainerStatuses, "main"); cs.LastTerminationState.Terminated == nil {
		t.Errorf("no last termination state: %+v", cs)
	}
	if !h.rep.hasEvent(livePod.UID, reasonKilling, "failed liveness probe, will be restarted") {
		t.Errorf("no Killing event:\n%s", h.rep.eventList(livePod.UID))
	}
	logDir := filepath.Join(h.cfg.PodLogsDirectory, "default_live_uid-live", "main")
	for _, f := range []string{"0.log", "1.log"} {
		if data, err := os.ReadFile(filepath.Join(logDir, f)); err != nil || !strings.Contains(string(data), "stdout F run") {
			t.Errorf("log %s (the previous instance's must stay): %q, %v", f, data, err)
		}
	}

	st = h.waitStatus(crashPod, "CrashLoopBackOff", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == waitingCrashLoopBackOff && cs.RestartCount >= 1
	})
	if lt := findStatus(st.ContainerStatuses, "main").LastTerminationState.Terminated; lt == nil || lt.ExitCode != 3 {
		t.Errorf("last termination %+v, want exit 3", lt)
	}

	st = h.waitStatus(webPod, "web running, not ready", func(st corev1.PodStatus) bool {
		return running("web")(st) && h.rep.hasEvent(webPod.UID, reasonUnhealthy, "Readiness probe failed: HTTP probe failed with statuscode: 404")
	})
	if condition(st, corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("Ready before /ready exists")
	}
	h.exec(webPod, "web", "sh", "-c", "echo ok > /www/ready")
	h.waitStatus(webPod, "Ready once /ready answers", func(st corev1.PodStatus) bool { return condition(st, corev1.PodReady) == corev1.ConditionTrue })

	h.eventually("Unhealthy event for the closed port", func() bool {
		return h.rep.hasEvent(closedPod.UID, reasonUnhealthy, "Readiness probe failed: dial tcp")
	})
	st, _ = h.rep.latest(closedPod.UID)
	if !running("main")(st) || condition(st, corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("closed-port pod: %s", dumpStatus(st))
	}
	// The web pod stayed ready throughout.
	if st, _ := h.rep.latest(webPod.UID); condition(st, corev1.PodReady) != corev1.ConditionTrue {
		t.Errorf("web pod lost readiness")
	}
}

// TestRealGracefulDeletionAndScaleToZero: a container that handles SIGTERM
// exits within its grace period, one that ignores it is killed when the
// grace period ends; deleting every pod leaves nothing behind.
func TestRealGracefulDeletionAndScaleToZero(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	polite := testPod("polite", busybox("main", "sh", "-c", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.2; done`))
	polite.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
	stubborn := testPod("stubborn", busybox("main", "sleep", "3600"))
	stubborn.Spec.TerminationGracePeriodSeconds = ptr(int64(2))
	var others []*corev1.Pod
	for i := range 3 {
		p := testPod(fmt.Sprintf("replica-%d", i), busybox("main", "sleep", "3600"))
		p.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
		others = append(others, p)
	}
	for _, p := range append([]*corev1.Pod{polite, stubborn}, others...) {
		h.putPod(p)
	}
	for _, p := range append([]*corev1.Pod{polite, stubborn}, others...) {
		h.waitStatus(p, p.Name+" running", running("main"))
	}
	// Deletion as the API server does it: deletionTimestamp and grace.
	for _, p := range []*corev1.Pod{polite, stubborn} {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
		h.putPod(p)
	}
	start := time.Now()
	h.eventually("both terminated", func() bool {
		return h.rep.terminations(polite.UID) == 1 && h.rep.terminations(stubborn.UID) == 1
	})
	took := time.Since(start)
	pst, _ := h.rep.latest(polite.UID)
	if cs := findStatus(pst.ContainerStatuses, "main"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("polite container final state %+v, want exit 0 from its TERM handler", cs.State)
	}
	sst, _ := h.rep.latest(stubborn.UID)
	if cs := findStatus(sst.ContainerStatuses, "main"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 137 {
		t.Errorf("stubborn container final state %+v, want 137 (SIGKILL after the grace period)", cs.State)
	}
	if took > 25*time.Second {
		t.Errorf("termination took %s: the polite pod waited for its full grace period", took)
	}
	// Scale the rest to zero.
	for _, p := range append([]*corev1.Pod{polite, stubborn}, others...) {
		h.deletePod(p)
	}
	h.eventually("every worker gone", func() bool { return h.e.RunningPods() == 0 && h.workerCount() == 0 })
	sbs, _ := h.client.ListPodSandbox(context.Background(), nil)
	cs, _ := h.client.ListContainers(context.Background(), nil)
	if len(sbs) != 0 || len(cs) != 0 {
		t.Errorf("after scaling to zero: %d sandboxes, %d containers", len(sbs), len(cs))
	}
	if entries, _ := os.ReadDir(filepath.Join(h.cfg.RootDirectory, "pods")); len(entries) != 0 {
		t.Errorf("pod directories left: %v", entries)
	}
	if entries, _ := os.ReadDir(h.cfg.PodLogsDirectory); len(entries) != 0 {
		t.Errorf("pod log directories left: %v", entries)
	}
	for _, q := range []string{"besteffort"} {
		if entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup/memory", h.cfg.CgroupRoot, "kubepods", q)); len(entries) > 0 {
			for _, e := range entries {
				if e.IsDir() {
					t.Errorf("pod cgroup left: %s", e.Name())
				}
			}
		}
	}
}

// TestRealBadInputs: a missing image, an unsupported volume and a bad env
// reference give clear statuses and events while another pod runs on.
func TestRealBadInputs(t *testing.T) {
	h := newRealHarness(t, nil)
	h.start()
	good := testPod("good", busybox("main", "sleep", "3600"))
	good.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	noImage := testPod("noimage", corev1.Container{Name: "main", Image: "localhost/kubeedge/does-not-exist:1"})
	badVol := testPod("badvol", busybox("main", "sleep", "3600"))
	badVol.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "x"}}}}
	for _, p := range []*corev1.Pod{good, noImage, badVol} {
		h.putPod(p)
	}
	h.waitStatus(good, "good pod running", running("main"))
	st := h.waitStatus(noImage, "image pull failure", func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, "main")
		return cs != nil && cs.State.Waiting != nil && (cs.State.Waiting.Reason == waitingErrImagePull || cs.State.Waiting.Reason == waitingImagePullBackOff)
	})
	if cs := findStatus(st.ContainerStatuses, "main"); !strings.Contains(cs.State.Waiting.Message, "does-not-exist") {
		t.Errorf("pull failure message %q", cs.State.Waiting.Message)
	}
	if !h.rep.hasEvent(noImage.UID, reasonFailed, `Failed to pull image "localhost/kubeedge/does-not-exist:1"`) {
		t.Errorf("no pull failure event:\n%s", h.rep.eventList(noImage.UID))
	}
	h.eventually("FailedMount for the PVC", func() bool {
		return h.rep.hasEvent(badVol.UID, reasonFailedMount, `volume "data" : volume type persistentVolumeClaim is not supported by edged`)
	})
	if st, _ := h.rep.latest(good.UID); !running("main")(st) {
		t.Errorf("good pod affected: %s", dumpStatus(st))
	}
}

// TestRealOfflineRestart: edged and containerd stop (containerd and its
// shims killed, as by a power cut); both start again from the same SQLite
// store with no cloud: every pod runs again with new containers, and its
// configmap volume is intact.
func TestRealOfflineRestart(t *testing.T) {
	h := newRealHarness(t, nil)
	dbDir, err := os.MkdirTemp("", "kedb")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dbDir)
	db, err := store.Open(context.Background(), filepath.Join(dbDir, "edge.db"))
	if err != nil {
		t.Fatal(err)
	}
	h.useStore(db)
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"}, Data: map[string]string{"k": "v1"}})
	var pods []*corev1.Pod
	for i := range 3 {
		c := busybox("main", "sleep", "3600")
		c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
		p := testPod(fmt.Sprintf("p%d", i), c)
		p.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
		p.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}}}
		if i == 2 {
			p.Spec.HostNetwork = true
		}
		pods = append(pods, p)
		h.putPod(p)
	}
	before := map[string]string{}
	for _, p := range pods {
		st := h.waitStatus(p, p.Name+" running", running("main"))
		before[p.Name] = findStatus(st.ContainerStatuses, "main").ContainerID
	}
	h.stop()
	if err := h.ctd.StopDaemon(true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.ctd.StartDaemon(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(context.Background(), filepath.Join(dbDir, "edge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h.useStore(db)
	h.rep = newFakeReporter()
	start := time.Now()
	h.start()
	for _, p := range pods {
		st := h.waitStatus(p, p.Name+" running again", func(st corev1.PodStatus) bool {
			cs := findStatus(st.ContainerStatuses, "main")
			return running("main")(st) && cs.ContainerID != before[p.Name]
		})
		if cs := findStatus(st.ContainerStatuses, "main"); cs.RestartCount < 1 {
			t.Errorf("%s restartCount %d after the restart", p.Name, cs.RestartCount)
		}
		if out, _ := h.exec(p, "main", "cat", "/cfg/k"); out != "v1" {
			t.Errorf("%s configmap volume after the restart: %q", p.Name, out)
		}
	}
	t.Logf("3 pods running again %s after edged started", time.Since(start).Round(time.Millisecond))
}
