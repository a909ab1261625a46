package edged

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/store"
)

func TestBackoffProgression(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1000, 0))
	b := newBackoff(clk, 10*time.Second, 300*time.Second)
	// First failure: no entry yet, so the restart is immediate.
	fail := clk.Now()
	if in, _ := b.inBackoff("k", fail); in {
		t.Fatal("in back-off before any failure was recorded")
	}
	var delays []time.Duration
	for range 8 {
		delays = append(delays, b.next("k", fail))
		// The container runs a moment and fails again.
		clk.Step(time.Second)
		fail = clk.Now()
		if in, left := b.inBackoff("k", fail); !in || left != delays[len(delays)-1] {
			t.Fatalf("after failure %d: inBackoff = %v, %s; want true, %s", len(delays), in, left, delays[len(delays)-1])
		}
		clk.Step(delays[len(delays)-1])
		if in, _ := b.inBackoff("k", fail); in {
			t.Fatalf("still in back-off after the delay")
		}
	}
	want := []time.Duration{10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, delays); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
	// A container that ran for more than 10 minutes starts over.
	clk.Step(11 * time.Minute)
	if d := b.next("k", clk.Now()); d != 10*time.Second {
		t.Errorf("delay after a long run = %s, want 10s", d)
	}
	b.forgetPrefix("k")
	if b.delay("k") != 0 {
		t.Error("forgetPrefix kept the entry")
	}
}

func res(req, lim map[corev1.ResourceName]string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{}
	if req != nil {
		r.Requests = corev1.ResourceList{}
		for k, v := range req {
			r.Requests[k] = resource.MustParse(v)
		}
	}
	if lim != nil {
		r.Limits = corev1.ResourceList{}
		for k, v := range lim {
			r.Limits[k] = resource.MustParse(v)
		}
	}
	return r
}

func TestQOSAndResources(t *testing.T) {
	cpu, mem := corev1.ResourceCPU, corev1.ResourceMemory
	for _, tc := range []struct {
		name string
		r    corev1.ResourceRequirements
		qos  corev1.PodQOSClass
		want *runtimeapi.LinuxContainerResources
	}{
		{"none", res(nil, nil), corev1.PodQOSBestEffort, &runtimeapi.LinuxContainerResources{CpuShares: 2}},
		{"limits only", res(nil, map[corev1.ResourceName]string{cpu: "1", mem: "128Mi"}), corev1.PodQOSGuaranteed,
			&runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuPeriod: 100000, CpuQuota: 100000, MemoryLimitInBytes: 128 << 20}},
		{"equal", res(map[corev1.ResourceName]string{cpu: "100m", mem: "1Gi"}, map[corev1.ResourceName]string{cpu: "100m", mem: "1Gi"}), corev1.PodQOSGuaranteed,
			&runtimeapi.LinuxContainerResources{CpuShares: 102, CpuPeriod: 100000, CpuQuota: 10000, MemoryLimitInBytes: 1 << 30}},
		{"request only", res(map[corev1.ResourceName]string{cpu: "1m"}, nil), corev1.PodQOSBurstable, &runtimeapi.LinuxContainerResources{CpuShares: 2}},
		{"tiny limit", res(nil, map[corev1.ResourceName]string{cpu: "1m"}), corev1.PodQOSBurstable,
			&runtimeapi.LinuxContainerResources{CpuShares: 2, CpuPeriod: 100000, CpuQuota: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := corev1.Container{Name: "c", Resources: tc.r}
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
			if got := qosClass(pod); got != tc.qos {
				t.Errorf("qos = %s, want %s", got, tc.qos)
			}
			if diff := cmp.Diff(tc.want, containerResources(&c), cmp.Comparer(func(a, b *runtimeapi.LinuxContainerResources) bool {
				return a.CpuShares == b.CpuShares && a.CpuPeriod == b.CpuPeriod && a.CpuQuota == b.CpuQuota && a.MemoryLimitInBytes == b.MemoryLimitInBytes
			})); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: res(map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"}, map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"})}}}}
	if got := cgroupParent("/", pod); got != "/kubepods/podu" {
		t.Errorf("guaranteed cgroup parent %s", got)
	}
}

func TestPullPolicyDefaults(t *testing.T) {
	for img, want := range map[string]corev1.PullPolicy{
		"busybox":                     corev1.PullAlways,
		"busybox:latest":              corev1.PullAlways,
		"busybox:1":                   corev1.PullIfNotPresent,
		"localhost:5000/a/b":          corev1.PullAlways,
		"localhost:5000/a/b:2":        corev1.PullIfNotPresent,
		"busybox@sha256:" + zeros(64): corev1.PullIfNotPresent,
	} {
		if got := pullPolicy(&corev1.Container{Image: img}); got != want {
			t.Errorf("pullPolicy(%q) = %s, want %s", img, got, want)
		}
	}
	if got := pullPolicy(&corev1.Container{Image: "x:latest", ImagePullPolicy: corev1.PullNever}); got != corev1.PullNever {
		t.Errorf("explicit policy overridden: %s", got)
	}
	for img, want := range map[string]string{"busybox": "docker.io", "library/busybox:1": "docker.io", "localhost/x": "localhost", "reg.example:5000/x": "reg.example:5000", "a.b/c/d": "a.b"} {
		if got := imageRegistry(img); got != want {
			t.Errorf("imageRegistry(%q) = %q, want %q", img, got, want)
		}
	}
}

func zeros(n int) string { return strings.Repeat("0", n) }

// memObjects is an objectSource over maps.
type memObjects struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

func (m memObjects) configMap(ns, name string) (*corev1.ConfigMap, error) {
	if c, ok := m.cms[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: configmap %s", store.ErrNotFound, name)
}

func (m memObjects) secret(ns, name string) (*corev1.Secret, error) {
	if s, ok := m.secrets[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%w: secret %s", store.ErrNotFound, name)
}

func TestMakeEnv(t *testing.T) {
	src := memObjects{
		cms:     map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"A": "from-cm", "bad=key": "x", "B": "b"}}},
		secrets: map[string]*corev1.Secret{"s": {Data: map[string][]byte{"TOKEN": []byte("t0k")}}},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
	}
	opt := true
	c := &corev1.Container{
		Name: "c",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &opt}},
		},
		Env: []corev1.EnvVar{
			{Name: "A", Value: "override-$(B)"},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOST", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "URL", Value: "http://$(HOST):80/$(POD)/$(LATER)"},
			{Name: "LATER", Value: "l"},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "nokey", Optional: &opt}}},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		},
		Resources: res(nil, map[corev1.ResourceName]string{corev1.ResourceMemory: "64Mi"}),
	}
	env, err := makeEnv(pod, c, podAddrs{podIPs: []string{"10.0.0.5"}, hostIPs: []string{"192.0.2.9"}}, src)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	for _, v := range env {
		got[v.name] = v.value
		order = append(order, v.name)
	}
	want := map[string]string{
		"A": "override-b", "B": "b", "S_TOKEN": "t0k", "POD": "p", "NS": "ns", "UID": "u1", "NODE": "n1", "SA": "sa",
		"IP": "10.0.0.5", "HOST": "192.0.2.9", "APP": "x", "URL": "http://192.0.2.9:80/p/$(LATER)", "LATER": "l", "MEM": "64",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if order[0] != "A" || order[1] != "B" {
		t.Errorf("envFrom order not kept: %v", order)
	}
	for _, tc := range []struct {
		env  corev1.EnvVar
		want string
	}{
		{corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "nokey"}}}, "couldn't find key nokey in ConfigMap ns/cm"},
		{corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nos"}, Key: "k"}}}, `secret "nos" not found`},
		{corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.bogus"}}}, `fieldRef "spec.bogus" is not supported`},
	} {
		_, err := makeEnv(pod, &corev1.Container{Env: []corev1.EnvVar{tc.env}}, podAddrs{}, src)
		if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("makeEnv(%v): %v; want config error %q", tc.env.Name, err, tc.want)
		}
	}
}

func TestAtomicWriter(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1700000000, 0)
	payload := map[string]fileEntry{"a": {data: []byte("1"), mode: 0o644}, "sub/b": {data: []byte("2"), mode: 0o600}}
	changed, err := writeAtomic(dir, payload, now)
	if err != nil || !changed {
		t.Fatalf("first write: %v, %v", changed, err)
	}
	target, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(target, "..2023_11_14_22_13_20.") {
		t.Fatalf("..data -> %q, %v", target, err)
	}
	for link, want := range map[string]string{"a": "..data/a", "sub": "..data/sub"} {
		if got, err := os.Readlink(filepath.Join(dir, link)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "sub", "b")); string(data) != "2" {
		t.Errorf("sub/b = %q", data)
	}
	if st, _ := os.Stat(filepath.Join(dir, "sub", "b")); st.Mode().Perm() != 0o600 {
		t.Errorf("sub/b mode %v", st.Mode())
	}
	if changed, err := writeAtomic(dir, payload, now.Add(time.Minute)); err != nil || changed {
		t.Errorf("unchanged payload rewritten: %v, %v", changed, err)
	}
	changed, err = writeAtomic(dir, map[string]fileEntry{"c": {data: []byte("3"), mode: 0o644}}, now.Add(time.Hour))
	if err != nil || !changed {
		t.Fatalf("update: %v, %v", changed, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 || !strings.HasPrefix(names[0], "..2023_11_14_23_13_20.") || names[1] != "..data" || names[2] != "c" {
		t.Errorf("entries after update: %v (want the new timestamp dir, ..data, c)", names)
	}
	for _, gone := range []string{"a", "sub"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still present after removal from the payload", gone)
		}
	}
	for _, bad := range []string{"../x", "/abs", "..data", "a/../../b", ""} {
		if _, err := writeAtomic(dir, map[string]fileEntry{bad: {}}, now); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func TestHostPathTypesAndSubPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ty := func(t corev1.HostPathType) *corev1.HostPathType { return &t }
	for _, tc := range []struct {
		path string
		typ  *corev1.HostPathType
		ok   bool
	}{
		{dir, nil, true},
		{dir, ty(corev1.HostPathDirectory), true},
		{file, ty(corev1.HostPathDirectory), false},
		{file, ty(corev1.HostPathFile), true},
		{filepath.Join(dir, "new"), ty(corev1.HostPathDirectoryOrCreate), true},
		{filepath.Join(dir, "nf"), ty(corev1.HostPathFileOrCreate), true},
		{filepath.Join(dir, "missing"), ty(corev1.HostPathFile), false},
		{"/dev/null", ty(corev1.HostPathCharDev), true},
		{"/dev/null", ty(corev1.HostPathBlockDev), false},
		{dir, ty(corev1.HostPathSocket), false},
		{"relative", nil, false},
	} {
		err := checkHostPath(&corev1.HostPathVolumeSource{Path: tc.path, Type: tc.typ})
		if (err == nil) != tc.ok {
			t.Errorf("checkHostPath(%s, %v) = %v, want ok=%v", tc.path, tc.typ, err, tc.ok)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "nf")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("FileOrCreate did not create a file: %v", err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	v := mountedVolume{path: dir}
	if _, err := resolveSubPath(v, "escape"); err == nil || !strings.Contains(err.Error(), "outside the volume") {
		t.Errorf("symlink escape: %v", err)
	}
	if _, err := resolveSubPath(v, "../x"); err == nil {
		t.Error("'..' accepted")
	}
	if p, err := resolveSubPath(v, "made/here"); err != nil || !strings.HasSuffix(p, "made/here") {
		t.Errorf("missing subPath of a writable volume: %q, %v", p, err)
	}
	if _, err := resolveSubPath(mountedVolume{path: dir, readOnly: true}, "nope"); err == nil {
		t.Error("missing subPath of a read-only volume accepted")
	}
}

func jwt(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".sig"
}

func TestJWTTimesAndRefresh(t *testing.T) {
	iat, exp, ok := jwtTimes(jwt(`{"iat":1000,"exp":2000,"sub":"x"}`))
	if !ok || iat.Unix() != 1000 || exp.Unix() != 2000 {
		t.Fatalf("jwtTimes = %v %v %v", iat, exp, ok)
	}
	if got := refreshTime([]byte(jwt(`{"iat":1000,"exp":2000}`)), time.Time{}, &corev1.ServiceAccountTokenProjection{}); got.Unix() != 1800 {
		t.Errorf("refresh at %d, want 1800 (80%%)", got.Unix())
	}
	written := time.Unix(5000, 0)
	if got := refreshTime([]byte("opaque"), written, &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr(int64(1000))}); got.Unix() != 5800 {
		t.Errorf("opaque token refresh at %d, want 5800", got.Unix())
	}
	for _, bad := range []string{"", "a.b", "a.!!.c", jwt(`{"iat":1}`), jwt(`[]`), jwt(`{"exp":"x","iat":1}`)} {
		if _, _, ok := jwtTimes(bad); ok {
			t.Errorf("jwtTimes(%q) accepted", bad)
		}
	}
}

func FuzzJWTTimes(f *testing.F) {
	f.Add(jwt(`{"iat":1000,"exp":2000}`))
	f.Add(jwt(`{"nbf":1,"exp":1e3}`))
	f.Add("x.y.z")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		iat, exp, ok := jwtTimes(s)
		if ok && (iat.Unix() < 0 || exp.Unix() < 0) {
			t.Fatalf("negative times from %q", s)
		}
	})
}

func TestParseCRILogLine(t *testing.T) {
	for _, tc := range []struct {
		in      string
		msg     string
		partial bool
		ok      bool
	}{
		{"2026-01-02T03:04:05.123456789Z stdout F hello world", "hello world", false, true},
		{"2026-01-02T03:04:05Z stderr P part", "part", true, true},
		{"2026-01-02T03:04:05Z stdout F", "", false, true},
		{"garbage", "", false, false},
		{"2026-01-02T03:04:05Z other F x", "", false, false},
		{"notatime stdout F x", "", false, false},
	} {
		msg, partial, ok := parseCRILogLine([]byte(tc.in))
		if string(msg) != tc.msg || partial != tc.partial || ok != tc.ok {
			t.Errorf("parseCRILogLine(%q) = %q %v %v", tc.in, msg, partial, ok)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "0.log")
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "2026-01-02T03:04:05Z stdout F line %d\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := logTail(p, 3, 2048)
	if tail != "line 97\nline 98\nline 99\n" {
		t.Errorf("logTail = %q", tail)
	}
}

func FuzzParseCRILogLine(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.1Z stdout F hello"))
	f.Add([]byte("2026-01-02T03:04:05Z stderr P "))
	f.Add([]byte(" "))
	f.Fuzz(func(t *testing.T, l []byte) {
		msg, _, ok := parseCRILogLine(l)
		if ok && len(msg) > len(l) {
			t.Fatal("message longer than the line")
		}
	})
}

func TestParseDockerConfig(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("bob:pw"))
	s := &corev1.Secret{Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth + `"},"reg.example:5000":{"username":"u","password":"p"}}}`)}}
	got, err := parseDockerConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if a := got["docker.io"]; a == nil || a.Username != "bob" || a.Password != "pw" {
		t.Errorf("docker.io auth %+v", a)
	}
	if a := got["reg.example:5000"]; a == nil || a.Username != "u" {
		t.Errorf("reg auth %+v", a)
	}
	if _, err := parseDockerConfig(&corev1.Secret{Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("{")}}); err == nil {
		t.Error("bad JSON accepted")
	}
	if _, err := parseDockerConfig(&corev1.Secret{}); err == nil {
		t.Error("empty secret accepted")
	}
}

func FuzzParseDockerConfig(f *testing.F) {
	f.Add([]byte(`{"auths":{"r":{"auth":"dTpw"}}}`), false)
	f.Add([]byte(`{"r":{"username":"u"}}`), true)
	f.Add([]byte(`null`), false)
	f.Fuzz(func(t *testing.T, data []byte, legacy bool) {
		key := corev1.DockerConfigJsonKey
		if legacy {
			key = corev1.DockerConfigKey
		}
		auths, err := parseDockerConfig(&corev1.Secret{Data: map[string][]byte{key: data}})
		if err == nil && auths == nil {
			t.Fatal("nil map without an error")
		}
	})
}

func TestPodTerminal(t *testing.T) {
	exited := func(name string, code int32) *containerInstance {
		return &containerInstance{id: name, name: name, state: runtimeapi.ContainerState_CONTAINER_EXITED, exitCode: code}
	}
	runningC := &containerInstance{id: "a", name: "a", state: runtimeapi.ContainerState_CONTAINER_RUNNING}
	pod := func(policy corev1.RestartPolicy) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy, Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
	}
	ready := []*sandboxInstance{{id: "s", ready: true}}
	dead := []*sandboxInstance{{id: "s", ready: false}}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		rt       *podRuntime
		terminal bool
		phase    corev1.PodPhase
	}{
		{"always never terminal", pod(corev1.RestartPolicyAlways), &podRuntime{sandboxes: ready, containers: []*containerInstance{exited("a", 0), exited("b", 0)}}, false, ""},
		{"never all ok", pod(corev1.RestartPolicyNever), &podRuntime{sandboxes: ready, containers: []*containerInstance{exited("a", 0), exited("b", 0)}}, true, corev1.PodSucceeded},
		{"never one failed", pod(corev1.RestartPolicyNever), &podRuntime{sandboxes: ready, containers: []*containerInstance{exited("a", 0), exited("b", 1)}}, true, corev1.PodFailed},
		{"never one running", pod(corev1.RestartPolicyNever), &podRuntime{sandboxes: ready, containers: []*containerInstance{runningC, exited("b", 1)}}, false, ""},
		{"onfailure one failed", pod(corev1.RestartPolicyOnFailure), &podRuntime{sandboxes: ready, containers: []*containerInstance{exited("a", 0), exited("b", 1)}}, false, ""},
		{"never after reboot", pod(corev1.RestartPolicyNever), &podRuntime{sandboxes: dead, containers: []*containerInstance{exited("a", 137)}}, true, corev1.PodFailed},
		{"never not started", pod(corev1.RestartPolicyNever), &podRuntime{}, false, ""},
	} {
		terminal, phase := podTerminal(tc.pod, tc.rt)
		if terminal != tc.terminal || phase != tc.phase {
			t.Errorf("%s: podTerminal = %v %s, want %v %s", tc.name, terminal, phase, tc.terminal, tc.phase)
		}
	}
}

func TestPLEGDiff(t *testing.T) {
	prev := map[string]plegEntry{"c/1": {"u1", 1}, "c/2": {"u2", 1}, "s/3": {"u3", 0}}
	cur := map[string]plegEntry{"c/1": {"u1", 2}, "s/3": {"u3", 0}, "c/4": {"u4", 0}, "c/5": {"", 0}}
	got := plegDiff(prev, cur)
	want := map[types.UID]bool{"u1": true, "u2": true, "u4": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plegDiff (-want +got):\n%s", diff)
	}
}

func TestDNSConfig(t *testing.T) {
	e := &Edged{cfg: Default()}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}}
	if got := e.dnsConfig(pod); got != nil {
		t.Errorf("no clusterDNS: %v, want nil (node resolv.conf)", got)
	}
	e.cfg.ClusterDNS = []string{"169.254.96.16"}
	got := e.dnsConfig(pod)
	if got == nil || got.Servers[0] != "169.254.96.16" || got.Searches[0] != "ns.svc.cluster.local" || got.Options[0] != "ndots:5" {
		t.Errorf("ClusterFirst: %v", got)
	}
	pod.Spec.HostNetwork = true
	if got := e.dnsConfig(pod); got != nil {
		t.Errorf("ClusterFirst on the host network: %v, want nil", got)
	}
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("2")}}}
	if got := e.dnsConfig(pod); got == nil || len(got.Servers) != 1 || got.Options[0] != "ndots:2" {
		t.Errorf("None: %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Default()
	c.NodeName = "n"
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c.CgroupDriver = "systemd"
	c.RemoteRuntimeEndpoint = "tcp://x"
	c.ImageGCLowThresholdPercent = 90
	c.MaxPods = 0
	c.NodeIP = "nope"
	err := c.Validate()
	for _, want := range []string{`cgroupDriver "systemd" is not supported`, "remoteRuntimeEndpoint", "imageGCLowThreshold 90 is above imageGCHighThreshold 85", "maxPods 0", `nodeIP "nope"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to mention %q", err, want)
		}
	}
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Error("New accepted an empty config")
	}
}

func TestSandboxConfigSecurity(t *testing.T) {
	e := &Edged{cfg: Default()}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("n", 70), Namespace: "ns", UID: "u"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000)), Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}},
			Containers: []corev1.Container{{Name: "c", SecurityContext: &corev1.SecurityContext{
				Privileged: ptr(true), ReadOnlyRootFilesystem: ptr(true), RunAsUser: ptr(int64(0)), AllowPrivilegeEscalation: ptr(false),
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
			}, Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}}},
			ShareProcessNamespace: ptr(true),
		},
	}
	sb := e.sandboxConfig(pod, 2)
	if len(sb.Hostname) != 63 || !sb.Linux.SecurityContext.Privileged || sb.Linux.SecurityContext.RunAsUser.Value != 1000 ||
		sb.Linux.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" || sb.Metadata.Attempt != 2 || len(sb.PortMappings) != 1 ||
		sb.Linux.SecurityContext.NamespaceOptions.Pid != runtimeapi.NamespaceMode_POD {
		t.Errorf("sandbox config %+v", sb)
	}
	sc := containerSecurity(pod, &pod.Spec.Containers[0])
	if !sc.Privileged || !sc.ReadonlyRootfs || sc.RunAsUser.Value != 0 || !sc.NoNewPrivs || sc.Capabilities.AddCapabilities[0] != "NET_ADMIN" ||
		sc.SupplementalGroups[0] != 2000 {
		t.Errorf("container security %+v", sc)
	}
	pod.Spec.Containers[0].SecurityContext.RunAsNonRoot = ptr(true)
	if err := runAsNonRootViolation(pod, &pod.Spec.Containers[0], nil); err == nil || !strings.Contains(err.Error(), "runAsUser breaks non-root policy") {
		t.Errorf("runAsNonRoot with uid 0: %v", err)
	}
	pod.Spec.Containers[0].SecurityContext.RunAsUser = nil
	pod.Spec.SecurityContext.RunAsUser = nil
	if err := runAsNonRootViolation(pod, &pod.Spec.Containers[0], &runtimeapi.Image{Uid: &runtimeapi.Int64Value{Value: 0}}); err == nil {
		t.Error("runAsNonRoot with a root image accepted")
	}
	if err := runAsNonRootViolation(pod, &pod.Spec.Containers[0], &runtimeapi.Image{Uid: &runtimeapi.Int64Value{Value: 65534}}); err != nil {
		t.Errorf("runAsNonRoot with uid 65534: %v", err)
	}
}
