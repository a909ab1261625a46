package edged

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSimplePodRuns(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	pod := testPod("web", corev1.Container{
		Name: "main", Image: "localhost/kubeedge/busybox:1",
		Command: []string{"sh", "-c", "echo $(GREETING) $(MISSING) $$(GREETING)"},
		Env:     []corev1.EnvVar{{Name: "GREETING", Value: "hello"}, {Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		WorkingDir: "/tmp",
	})
	h.putPod(pod)
	st := h.waitStatus(pod, "pod running and ready", func(st corev1.PodStatus) bool {
		return running("main")(st) && condition(st, corev1.PodReady) == corev1.ConditionTrue
	})

	sbs := h.rt.Sandboxes()
	if len(sbs) != 1 {
		t.Fatalf("%d sandboxes, want 1", len(sbs))
	}
	sb := sbs[0].Config
	if sb.Hostname != "web" || sb.Linux.CgroupParent != "/test/kubepods/burstable/poduid-web" ||
		sb.LogDirectory != filepath.Join(h.cfg.PodLogsDirectory, "default_web_uid-web") ||
		sb.Labels[labelPodUID] != "uid-web" || sb.Metadata.Attempt != 0 {
		t.Errorf("unexpected sandbox config: %+v", sb)
	}
	cs := h.rt.Containers()
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	c := cs[0].Config
	if diff := cmp.Diff([]string{"sh", "-c", "echo hello $(MISSING) $(GREETING)"}, c.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	env := map[string]string{}
	for _, kv := range c.Envs {
		env[kv.Key] = kv.Value
	}
	if env["GREETING"] != "hello" || env["NAME"] != "web" {
		t.Errorf("env = %v", env)
	}
	if r := c.Linux.Resources; r.CpuShares != 256 || r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != 64<<20 {
		t.Errorf("resources = %+v", r)
	}
	if c.LogPath != "main/0.log" || c.WorkingDir != "/tmp" || c.Metadata.Attempt != 0 {
		t.Errorf("container config: log %q wd %q attempt %d", c.LogPath, c.WorkingDir, c.Metadata.Attempt)
	}

	if st.PodIP == "" || st.PodIP != sbs[0].IP || st.HostIP != "127.0.0.1" || st.QOSClass != corev1.PodQOSBurstable || st.StartTime == nil {
		t.Errorf("status addresses/qos/start: %s", dumpStatus(st))
	}
	ms := findStatus(st.ContainerStatuses, "main")
	if ms.ContainerID != "containerd://"+cs[0].ID || !ms.Ready || ms.Started == nil || !*ms.Started || ms.RestartCount != 0 || ms.ImageID == "" || ms.Image != "localhost/kubeedge/busybox:1" {
		t.Errorf("container status: %+v", ms)
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if condition(st, typ) != corev1.ConditionTrue {
			t.Errorf("condition %s = %q, want True", typ, condition(st, typ))
		}
	}
	for _, want := range []struct{ reason, msg string }{
		{reasonPulled, `Container image "localhost/kubeedge/busybox:1" already present on machine`},
		{reasonCreated, "Created container: main"},
		{reasonStarted, "Started container main"},
	} {
		if !h.rep.hasEvent(pod.UID, want.reason, want.msg) {
			t.Errorf("no %s event %q; events:\n%s", want.reason, want.msg, h.rep.eventList(pod.UID))
		}
	}
	if n := h.e.RunningPods(); n != 1 {
		t.Errorf("RunningPods = %d, want 1", n)
	}
	id, err := h.e.ContainerID(t.Context(), "default", "web", "main", false)
	if err != nil || id != cs[0].ID {
		t.Errorf("ContainerID = %q, %v; want %q", id, err, cs[0].ID)
	}
	imgs, err := h.e.Images(t.Context())
	if err != nil || len(imgs) != 2 || imgs[0].SizeBytes < imgs[1].SizeBytes {
		t.Errorf("Images = %+v, %v", imgs, err)
	}

	// Syncing again changes nothing and reports nothing new.
	h.rep.mu.Lock()
	n := len(h.rep.statuses[pod.UID])
	h.rep.mu.Unlock()
	h.e.kickUID(pod.UID)
	h.e.kickUID(pod.UID)
	h.eventually("no new containers", func() bool { return len(h.rt.Containers()) == 1 })
	h.rep.mu.Lock()
	n2 := len(h.rep.statuses[pod.UID])
	h.rep.mu.Unlock()
	if n2 != n {
		t.Errorf("status reported %d more times without a change", n2-n)
	}
}

func TestHostNetworkPod(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	pod := testPod("hn")
	pod.Spec.HostNetwork = true
	h.putPod(pod)
	st := h.waitStatus(pod, "running", running("main"))
	sb := h.rt.Sandboxes()[0].Config
	if sb.Hostname != "" || sb.Linux.SecurityContext.NamespaceOptions.Network != runtimeapi.NamespaceMode_NODE {
		t.Errorf("host-network sandbox: hostname %q, network %v", sb.Hostname, sb.Linux.SecurityContext.NamespaceOptions.Network)
	}
	if st.PodIP != "127.0.0.1" || len(st.PodIPs) != 1 {
		t.Errorf("podIP %q podIPs %v, want the node IP", st.PodIP, st.PodIPs)
	}
	if st.QOSClass != corev1.PodQOSBestEffort || !strings.Contains(sb.Linux.CgroupParent, "/besteffort/") {
		t.Errorf("qos %s cgroup %s", st.QOSClass, sb.Linux.CgroupParent)
	}
}

func TestConfigAndSecretEnvAndVolumes(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"color": "blue", "size": "L"}})
	h.putSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "default"}, Data: map[string][]byte{"password": []byte("s3cr3t")}})
	pod := testPod("vols", corev1.Container{
		Name: "main", Image: "localhost/kubeedge/busybox:1",
		Env: []corev1.EnvVar{
			{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
			{Name: "PASS", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
		},
		EnvFrom:      []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "c", MountPath: "/etc/cfg"}, {Name: "s", MountPath: "/etc/sec"}, {Name: "scratch", MountPath: "/scratch"}},
	})
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr(int32(0o400))}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	h.putPod(pod)
	h.waitStatus(pod, "running", running("main"))
	c := h.rt.Containers()[0].Config
	env := map[string]string{}
	for _, kv := range c.Envs {
		env[kv.Key] = kv.Value
	}
	if diff := cmp.Diff(map[string]string{"COLOR": "blue", "PASS": "s3cr3t", "CFG_color": "blue", "CFG_size": "L"}, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	mounts := map[string]*runtimeapi.Mount{}
	for _, m := range c.Mounts {
		mounts[m.ContainerPath] = m
	}
	podDir := filepath.Join(h.cfg.RootDirectory, "pods", string(pod.UID), "volumes")
	if m := mounts["/etc/cfg"]; m == nil || m.HostPath != filepath.Join(podDir, pluginConfigMap, "c") || !m.Readonly {
		t.Errorf("configmap mount %+v", m)
	}
	if m := mounts["/etc/sec"]; m == nil || m.HostPath != filepath.Join(podDir, pluginSecret, "s") || !m.Readonly {
		t.Errorf("secret mount %+v", m)
	}
	if m := mounts["/scratch"]; m == nil || m.Readonly {
		t.Errorf("emptyDir mount %+v", m)
	}
	readVol := func(plugin, vol, file string) string {
		data, err := os.ReadFile(filepath.Join(podDir, plugin, vol, file))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(data)
	}
	if got := readVol(pluginConfigMap, "c", "color"); got != "blue" {
		t.Errorf("color = %q", got)
	}
	if st, err := os.Stat(filepath.Join(podDir, pluginSecret, "s", "..data", "password")); err != nil || st.Mode().Perm() != 0o400 {
		t.Errorf("secret file mode: %v, %v", st, err)
	}

	// An update of the configmap reaches the files; the container stays.
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"color": "green"}})
	h.eventually("configmap file updated", func() bool { return readVol(pluginConfigMap, "c", "color") == "green" })
	if got := readVol(pluginConfigMap, "c", "size"); !strings.Contains(got, "no such file") {
		t.Errorf("removed key still present: %q", got)
	}
	if n := len(h.rt.Containers()); n != 1 {
		t.Errorf("%d containers after configmap update, want 1 (no restart)", n)
	}
}
