package edged

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// Benchmarks against a real containerd with the local images; each run is
// one measurement, so run them with -benchtime=1x (see docs/bench/edged.md):
//
//	go test -run '^$' -bench . -benchtime=1x ./internal/edge/edged/

// runningTimes records when each pod was first reported Running with all
// containers running.
type runningTimes struct {
	mu   sync.Mutex
	at   map[types.UID]time.Time
	wake chan struct{}
}

func newRunningTimes(rep *fakeReporter) *runningTimes {
	rt := &runningTimes{at: map[types.UID]time.Time{}, wake: make(chan struct{}, 1)}
	rep.mu.Lock()
	rep.onStatus = func(uid types.UID, st corev1.PodStatus) {
		if st.Phase != corev1.PodRunning {
			return
		}
		for _, cs := range st.ContainerStatuses {
			if cs.State.Running == nil {
				return
			}
		}
		now := time.Now()
		rt.mu.Lock()
		if _, ok := rt.at[uid]; !ok {
			rt.at[uid] = now
		}
		rt.mu.Unlock()
		select {
		case rt.wake <- struct{}{}:
		default:
		}
	}
	rep.mu.Unlock()
	return rt
}

// wait blocks until every uid is running and returns the latest time.
func (r *runningTimes) wait(tb testing.TB, uids []types.UID) time.Time {
	tb.Helper()
	deadline := time.After(5 * time.Minute)
	for {
		r.mu.Lock()
		var last time.Time
		all := true
		for _, u := range uids {
			t, ok := r.at[u]
			if !ok {
				all = false
				break
			}
			if t.After(last) {
				last = t
			}
		}
		r.mu.Unlock()
		if all {
			return last
		}
		select {
		case <-r.wake:
		case <-deadline:
			tb.Fatalf("pods not running after 5 minutes")
		}
	}
}

// benchPod is a realistic small pod: busybox with the default
// kube-api-access volume (token, CA, namespace), a configmap volume and a
// tiny grace period.
func benchPod(name string) *corev1.Pod {
	c := busybox("main", "sleep", "3600")
	c.VolumeMounts = []corev1.VolumeMount{
		{Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
		{Name: "cfg", MountPath: "/cfg"},
	}
	p := testPod(name, c)
	p.UID = types.UID(fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	p.Spec.TerminationGracePeriodSeconds = ptr(int64(0))
	p.Spec.Volumes = []corev1.Volume{kubeAPIAccess(), {Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}}}
	return p
}

func newBenchHarness(b *testing.B) *realHarness {
	h := newRealHarness(b, nil)
	h.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return h
}

func (h *realHarness) putBenchObjects() {
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"}, Data: map[string]string{"k": "v"}})
	h.putConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "default"}, Data: map[string]string{"ca.crt": "PEM"}})
}

func (h *realHarness) deleteAll(pods []*corev1.Pod) {
	for _, p := range pods {
		h.deletePod(p)
	}
	h.eventually("all pods torn down", func() bool { return h.workerCount() == 0 })
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkPodStartSequential: 20 pods one after the other, each from its
// store insert to its first Running status report.
func BenchmarkPodStartSequential(b *testing.B) {
	h := newBenchHarness(b)
	h.start()
	h.putBenchObjects()
	rt := newRunningTimes(h.rep)
	var lat []time.Duration
	for range b.N {
		var pods []*corev1.Pod
		for i := range 20 {
			p := benchPod(fmt.Sprintf("seq-%d", i))
			start := time.Now()
			h.putPod(p)
			done := rt.wait(b, []types.UID{p.UID})
			lat = append(lat, done.Sub(start))
			pods = append(pods, p)
		}
		b.StopTimer()
		h.deleteAll(pods)
		b.StartTimer()
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(slices.Max(lat).Milliseconds()), "max-ms")
}

// BenchmarkPodStartBurst: 30 pods inserted at once (one store batch), until
// all are reported Running.
func BenchmarkPodStartBurst(b *testing.B) {
	h := newBenchHarness(b)
	h.start()
	h.putBenchObjects()
	rt := newRunningTimes(h.rep)
	var total []time.Duration
	for range b.N {
		var pods []*corev1.Pod
		var uids []types.UID
		var changes []store.Change
		for i := range 30 {
			p := benchPod(fmt.Sprintf("burst-%d", i))
			pods = append(pods, p)
			uids = append(uids, p.UID)
			changes = append(changes, podChange(b, p))
		}
		cpu0, ctd0 := cpuTicks(os.Getpid()), cpuTicks(h.ctd.PID())
		start := time.Now()
		if err := h.st.Apply(context.Background(), changes); err != nil {
			b.Fatal(err)
		}
		for _, c := range changes {
			h.e.Notify(c)
		}
		total = append(total, rt.wait(b, uids).Sub(start))
		first := time.Duration(1 << 62)
		rt.mu.Lock()
		for _, u := range uids {
			first = min(first, rt.at[u].Sub(start))
		}
		rt.mu.Unlock()
		b.ReportMetric(float64(first.Milliseconds()), "first-running-ms")
		// CPU seconds (user+system) of this process (edged and the test)
		// and of containerd itself (not its shims or runc) during the burst.
		b.ReportMetric(float64(cpuTicks(os.Getpid())-cpu0)/100, "edged-cpu-s")
		b.ReportMetric(float64(cpuTicks(h.ctd.PID())-ctd0)/100, "containerd-cpu-s")
		b.StopTimer()
		h.deleteAll(pods)
		b.StartTimer()
	}
	b.ReportMetric(float64(slices.Max(total).Milliseconds()), "all-running-ms")
}

func podChange(tb testing.TB, p *corev1.Pod) store.Change {
	data, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	return store.Change{Op: store.OpPut, Object: store.Object{Type: "pod", Namespace: p.Namespace, Name: p.Name, ResourceVersion: "1", Value: data}}
}

// BenchmarkMemory reports edged's Go heap and the test process' RSS (edged
// plus the test harness) with 0, 10 and 30 running pods, and containerd's
// RSS with its shims for context.
func BenchmarkMemory(b *testing.B) {
	h := newBenchHarness(b)
	h.start()
	h.putBenchObjects()
	rt := newRunningTimes(h.rep)
	for range b.N {
		var pods []*corev1.Pod
		for _, n := range []int{0, 10, 30} {
			var uids []types.UID
			for len(pods) < n {
				p := benchPod(fmt.Sprintf("mem-%d", len(pods)))
				pods = append(pods, p)
				h.putPod(p)
			}
			for _, p := range pods {
				uids = append(uids, p.UID)
			}
			rt.wait(b, uids)
			// Let a few relists and syncs happen at this size.
			time.Sleep(3 * time.Second)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), fmt.Sprintf("heap-MiB-%dpods", n))
			b.ReportMetric(float64(rssKiB(os.Getpid()))/1024, fmt.Sprintf("rss-MiB-%dpods", n))
			b.ReportMetric(float64(runtime.NumGoroutine()), fmt.Sprintf("goroutines-%dpods", n))
			var shims int
			for _, pid := range shimPIDsFor(h.ctd.Socket) {
				shims += rssKiB(pid)
			}
			b.ReportMetric(float64(rssKiB(h.ctd.PID())+shims)/1024, fmt.Sprintf("containerd+shims-rss-MiB-%dpods", n))
		}
		b.StopTimer()
		h.deleteAll(pods)
		b.StartTimer()
	}
}

// BenchmarkOfflineRecovery: 30 pods stored in SQLite; containerd and its
// shims are killed (a power cut), containerd starts again, then edged
// starts with no cloud: time until every pod is reported Running again.
func BenchmarkOfflineRecovery(b *testing.B) {
	h := newBenchHarness(b)
	dbDir, err := os.MkdirTemp("", "kedb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dbDir)
	dbPath := filepath.Join(dbDir, "edge.db")
	db, err := store.Open(context.Background(), dbPath)
	if err != nil {
		b.Fatal(err)
	}
	h.useStore(db)
	h.start()
	h.putBenchObjects()
	rt := newRunningTimes(h.rep)
	var pods []*corev1.Pod
	var uids []types.UID
	for i := range 30 {
		p := benchPod(fmt.Sprintf("off-%d", i))
		pods = append(pods, p)
		uids = append(uids, p.UID)
		h.putPod(p)
	}
	rt.wait(b, uids)
	var took []time.Duration
	for range b.N {
		b.StopTimer()
		h.stop()
		if err := h.ctd.StopDaemon(true); err != nil {
			b.Fatal(err)
		}
		if err := h.st.Close(); err != nil {
			b.Fatal(err)
		}
		if err := h.ctd.StartDaemon(context.Background()); err != nil {
			b.Fatal(err)
		}
		db, err := store.Open(context.Background(), dbPath)
		if err != nil {
			b.Fatal(err)
		}
		h.useStore(db)
		h.rep = newFakeReporter()
		rt = newRunningTimes(h.rep)
		b.StartTimer()
		start := time.Now()
		h.start()
		took = append(took, rt.wait(b, uids).Sub(start))
	}
	b.ReportMetric(float64(slices.Max(took).Milliseconds()), "all-running-ms")
	b.StopTimer()
	h.deleteAll(pods)
}

// cpuTicks returns utime+stime of pid plus its reaped children, in clock
// ticks (1/100 s on Linux).
func cpuTicks(pid int) int {
	_, ticks, _ := testenv.ProcCPU(pid)
	return int(ticks)
}

func rssKiB(pid int) int {
	kb, _ := testenv.ProcStatusKiB(pid, "VmRSS")
	return int(kb)
}

// shimPIDsFor finds the containerd shims serving sock.
func shimPIDsFor(sock string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(data), "containerd-shim") && strings.Contains(string(data), sock) {
			out = append(out, pid)
		}
	}
	return out
}
