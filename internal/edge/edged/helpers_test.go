package edged

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/edge/cri/fakecri"
	"github.com/kubeedge-go/kubeedge/internal/store"
)

const testNode = "edge-1"

// fakeReporter records what edged reports.
type fakeReporter struct {
	mu         sync.Mutex
	statuses   map[types.UID][]corev1.PodStatus
	events     []*corev1.Event
	terminated map[types.UID]int
	// onStatus, if set, sees every status as it is reported (benchmarks).
	onStatus func(uid types.UID, st corev1.PodStatus)
}

func newFakeReporter() *fakeReporter {
	return &fakeReporter{statuses: map[types.UID][]corev1.PodStatus{}, terminated: map[types.UID]int{}}
}

func (r *fakeReporter) PodStatus(_, _ string, uid types.UID, st corev1.PodStatus) {
	r.mu.Lock()
	r.statuses[uid] = append(r.statuses[uid], *st.DeepCopy())
	hook := r.onStatus
	r.mu.Unlock()
	if hook != nil {
		hook(uid, st)
	}
}

func (r *fakeReporter) Event(ev *corev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *fakeReporter) PodTerminated(_, _ string, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.terminated[uid]++
}

func (r *fakeReporter) latest(uid types.UID) (corev1.PodStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.statuses[uid]
	if len(s) == 0 {
		return corev1.PodStatus{}, false
	}
	return s[len(s)-1], true
}

func (r *fakeReporter) terminations(uid types.UID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminated[uid]
}

// hasEvent reports whether an event with reason and a message containing
// msg was reported for uid.
func (r *fakeReporter) hasEvent(uid types.UID, reason, msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.InvolvedObject.UID == uid && ev.Reason == reason && strings.Contains(ev.Message, msg) {
			return true
		}
	}
	return false
}

func (r *fakeReporter) eventList(uid types.UID) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	last := map[string]*corev1.Event{}
	var order []string
	for _, ev := range r.events {
		if ev.InvolvedObject.UID != uid {
			continue
		}
		if _, ok := last[ev.Name]; !ok {
			order = append(order, ev.Name)
		}
		last[ev.Name] = ev
	}
	for _, n := range order {
		ev := last[n]
		fmt.Fprintf(&b, "  %s %s: %s (x%d)\n", ev.Type, ev.Reason, ev.Message, ev.Count)
	}
	return b.String()
}

// fakeTokens serves tokens and can be switched off (cloud unreachable).
type fakeTokens struct {
	mu    sync.Mutex
	n     int
	down  bool
	clk   *testingclock.FakeClock
	calls []string
}

func (f *fakeTokens) Token(_ context.Context, pod *corev1.Pod, sa string, aud []string, exp int64) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s/%s:%v:%d", pod.Name, sa, aud, exp))
	if f.down {
		return "", time.Time{}, errors.New("cloud unreachable")
	}
	f.n++
	return fmt.Sprintf("token-%d", f.n), f.clk.Now().Add(time.Duration(exp) * time.Second), nil
}

type harness struct {
	t      testing.TB
	e      *Edged
	rt     *fakecri.Runtime
	st     store.Store
	rep    *fakeReporter
	clk    *testingclock.FakeClock
	tokens *fakeTokens
	cfg    Config
	// runtime replaces the fake (integration tests); noKick leaves waking
	// workers to the PLEG and probes.
	runtime cri.Runtime
	noKick  bool
	logger  *slog.Logger
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := &harness{t: t, rt: fakecri.New(clk), st: store.NewMemory(), rep: newFakeReporter(), clk: clk, tokens: &fakeTokens{clk: clk}}
	h.rt.AddImage("localhost/kubeedge/busybox:1", 1<<20)
	h.rt.AddImage(DefaultPodSandboxImage, 1<<19)
	dir := t.TempDir()
	cfg := Default()
	cfg.NodeName = testNode
	cfg.NodeIP = "127.0.0.1"
	cfg.RootDirectory = dir + "/root"
	cfg.PodLogsDirectory = dir + "/logs"
	cfg.CgroupFS = dir + "/cgroup"
	cfg.CgroupRoot = "/test"
	if mutate != nil {
		mutate(&cfg)
	}
	h.cfg = cfg
	t.Cleanup(func() { h.st.Close() })
	return h
}

// useStore replaces the in-memory store (the caller closes it).
func (h *harness) useStore(s store.Store) { h.st = s }

func (h *harness) start() {
	h.t.Helper()
	logger := h.logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if os.Getenv("EDGED_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	deps := Deps{Store: h.st, Reporter: h.rep, Tokens: h.tokens, Runtime: h.rt, Clock: h.clk, Logger: logger}
	if h.runtime != nil {
		deps.Runtime, deps.Clock = h.runtime, clock.RealClock{}
	}
	e, err := New(h.cfg, deps)
	if err != nil {
		h.t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- e.Run(ctx) }()
	h.t.Cleanup(h.stop)
	select {
	case <-e.Started():
	case err := <-h.done:
		h.t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("edged did not start")
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return")
	}
}

func (h *harness) put(typ string, obj metav1.Object, v any) {
	h.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	ch := store.Change{Op: store.OpPut, Object: store.Object{Type: typ, Namespace: obj.GetNamespace(), Name: obj.GetName(), ResourceVersion: "1", Value: data}}
	if err := h.st.Apply(context.Background(), []store.Change{ch}); err != nil {
		h.t.Fatal(err)
	}
	if h.e != nil {
		h.e.Notify(ch)
	}
}

func (h *harness) putPod(p *corev1.Pod)             { h.put("pod", p, p) }
func (h *harness) putConfigMap(c *corev1.ConfigMap) { h.put("configmap", c, c) }
func (h *harness) putSecret(s *corev1.Secret)       { h.put("secret", s, s) }

func (h *harness) deletePod(p *corev1.Pod) {
	h.t.Helper()
	ch := store.Change{Op: store.OpDelete, Object: store.Object{Type: "pod", Namespace: p.Namespace, Name: p.Name}}
	if err := h.st.Apply(context.Background(), []store.Change{ch}); err != nil {
		h.t.Fatal(err)
	}
	h.e.Notify(ch)
}

// eventually polls cond (waking every worker each round, standing in for
// the PLEG whose ticker runs on the fake clock) until it holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	h.eventuallyf(func() string {
		if cond() {
			return ""
		}
		return what
	})
}

func (h *harness) workerCount() int {
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	return len(h.e.workers)
}

func (h *harness) wakeAll() {
	if h.e == nil || h.noKick {
		return
	}
	h.e.mu.Lock()
	for _, w := range h.e.workers {
		w.wake()
	}
	h.e.mu.Unlock()
}

// waitStatus waits until the pod's latest reported status satisfies cond.
func (h *harness) waitStatus(p *corev1.Pod, what string, cond func(corev1.PodStatus) bool) corev1.PodStatus {
	h.t.Helper()
	var last corev1.PodStatus
	h.eventuallyf(func() string {
		st, _ := h.rep.latest(p.UID)
		last = st
		if cond(st) {
			return ""
		}
		return fmt.Sprintf("%s; last status:\n%s\nevents:\n%s", what, dumpStatus(st), h.rep.eventList(p.UID))
	})
	return last
}

func (h *harness) eventuallyf(check func() string) {
	h.t.Helper()
	limit := 20 * time.Second
	if h.runtime != nil {
		limit = 2 * time.Minute // a loaded machine and a real runtime
	}
	deadline := time.Now().Add(limit)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", msg)
		}
		h.wakeAll()
		time.Sleep(10 * time.Millisecond)
	}
}

func dumpStatus(st corev1.PodStatus) string {
	data, _ := json.MarshalIndent(st, "", "  ")
	return string(data)
}

func testPod(name string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "main", Image: "localhost/kubeedge/busybox:1", Command: []string{"sleep", "3600"}}}
	}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.Now()},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: containers},
	}
}

func running(name string) func(corev1.PodStatus) bool {
	return func(st corev1.PodStatus) bool {
		cs := findStatus(st.ContainerStatuses, name)
		return st.Phase == corev1.PodRunning && cs != nil && cs.State.Running != nil
	}
}

func findStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func condition(st corev1.PodStatus, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
