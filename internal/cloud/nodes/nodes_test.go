package nodes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestRegisterCreatesLabelledNode(t *testing.T) {
	h := newHarness(t, Config{})
	n := edgeNode("edge-a", 110, t0)
	delete(n.Labels, LabelEdgeRole) // forced on even when the edge leaves it out
	if err := h.m.Register(t.Context(), "edge-a", n); err != nil {
		t.Fatal(err)
	}
	got := h.node("edge-a")
	wantLabels := map[string]string{
		"kubernetes.io/hostname": "edge-a", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		LabelEdgeRole: "", "zone": "z1",
	}
	if diff := cmp.Diff(wantLabels, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	ready := condition(got, corev1.NodeReady)
	if ready.Status != corev1.ConditionTrue || ready.Reason != "EdgeReady" || !ready.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("Ready condition %+v, want True/EdgeReady at %v", ready, t0)
	}
	if got.Status.Capacity.Pods().Value() != 110 || got.Status.NodeInfo.MachineID != "m1" || len(got.Status.Addresses) != 2 {
		t.Errorf("status not written: %+v", got.Status)
	}
	if got.UID == "" {
		t.Error("node has no UID")
	}
	st := h.m.Stats()
	if st.Registrations != 1 || st.NodeCreates != 1 {
		t.Errorf("stats %+v, want 1 registration and 1 create", st)
	}
}

func TestRegisterIsIdempotent(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	c0, u0, p0, _ := h.writes("nodes")
	before := h.node("edge-a")

	// Same node again, later but within the resync period: nothing to write.
	h.clk.SetTime(t0.Add(30 * time.Second))
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0.Add(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	if c, u, p, _ := h.writes("nodes"); c != c0 || u != u0 || p != p0 {
		t.Errorf("re-register wrote: creates %d→%d, updates %d→%d, patches %d→%d", c0, c, u0, u, p0, p)
	}
	if diff := cmp.Diff(before, h.node("edge-a")); diff != "" {
		t.Errorf("node changed on re-register (-before +after):\n%s", diff)
	}
	if st := h.m.Stats(); st.Registrations != 2 || st.StatusSkips == 0 {
		t.Errorf("stats %+v, want 2 registrations and a skipped status", st)
	}

	// Past the resync period the status is written again: the heartbeat
	// moves, the transition time stays.
	t2 := t0.Add(61 * time.Second)
	h.clk.SetTime(t2)
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t2)); err != nil {
		t.Fatal(err)
	}
	ready := condition(h.node("edge-a"), corev1.NodeReady)
	if !ready.LastHeartbeatTime.Time.Equal(t2) || !ready.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("Ready %+v: want heartbeat %v, transition kept at %v", ready, t2, t0)
	}
}

func TestRegisterExistingNode(t *testing.T) {
	old := metav1.NewTime(t0.Add(-time.Hour))
	existing := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "edge-a", UID: "uid-existing", ResourceVersion: "5", Labels: map[string]string{
			"zone": "admin-set", "kubernetes.io/hostname": "stale",
		}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", LastHeartbeatTime: old, LastTransitionTime: old},
				{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "RouteCreated", LastHeartbeatTime: old, LastTransitionTime: old},
			},
			VolumesAttached: []corev1.AttachedVolume{{Name: "vol-1", DevicePath: "/dev/x"}},
		},
	}
	h := newHarness(t, Config{}, existing)
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	got := h.node("edge-a")
	wantLabels := map[string]string{
		"kubernetes.io/hostname": "edge-a", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		LabelEdgeRole: "", "zone": "admin-set",
	}
	if diff := cmp.Diff(wantLabels, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	ready := condition(got, corev1.NodeReady)
	if ready.Status != corev1.ConditionTrue || !ready.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("Ready %+v, want True since %v", ready, t0)
	}
	if c := condition(got, corev1.NodeNetworkUnavailable); c.Reason != "RouteCreated" {
		t.Errorf("NetworkUnavailable condition lost: %+v", got.Status.Conditions)
	}
	if len(got.Status.VolumesAttached) != 1 {
		t.Errorf("volumesAttached lost: %+v", got.Status.VolumesAttached)
	}
	if c, _, p, _ := h.writes("nodes"); c != 0 || p != 1 {
		t.Errorf("creates %d, patches %d; want 0 and 1", c, p)
	}
	if st := h.m.Stats(); st.NodeCreates != 0 || st.LabelPatches != 1 || st.StatusWrites != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRegisterNameMismatch(t *testing.T) {
	h := newHarness(t, Config{})
	err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-b", 110, t0))
	if !errors.Is(err, ErrNameMismatch) {
		t.Fatalf("error %v, want ErrNameMismatch", err)
	}
	if want := `node object names "edge-b" but the session is node "edge-a"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if c, u, p, _ := h.writes("nodes"); c+u+p != 0 {
		t.Errorf("refused registration wrote to the apiserver")
	}
	if err := h.m.Register(t.Context(), "edge-a", nil); err == nil || !strings.Contains(err.Error(), "no node object") {
		t.Errorf("nil node: error %v", err)
	}
}

func TestRegisterWrapsAPIError(t *testing.T) {
	h := newHarness(t, Config{})
	h.cs.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcd is down")
	})
	err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0))
	if err == nil || !strings.Contains(err.Error(), `nodes: register "edge-a": create node: etcd is down`) {
		t.Fatalf("error %v", err)
	}
}

func TestUpdateStatusCoalesces(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	puts0 := h.statusPutCount()
	blocked, release := h.holdStatusWrites()
	h.m.UpdateStatus("edge-a", edgeNode("edge-a", 1, t0).Status)
	<-blocked // a worker took status 1 and is writing it
	for i := int64(2); i <= 10; i++ {
		h.m.UpdateStatus("edge-a", edgeNode("edge-a", i, t0).Status)
	}
	release()
	h.waitFor("pods=10 written", func() bool { return h.node("edge-a").Status.Capacity.Pods().Value() == 10 })
	if puts := h.statusPutCount() - puts0; puts != 2 {
		t.Errorf("%d status writes for 10 updates, want 2 (the first in flight, then the newest)", puts)
	}
}

func TestUpdateStatusWritesOnlyWhenNeeded(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	puts0 := h.statusPutCount()
	skips0 := h.m.Stats().StatusSkips

	// Unchanged but for condition times: skipped.
	h.clk.SetTime(t0.Add(10 * time.Second))
	h.m.UpdateStatus("edge-a", edgeNode("edge-a", 110, t0.Add(10*time.Second)).Status)
	h.waitFor("skip", func() bool { return h.m.Stats().StatusSkips > skips0 })
	if h.statusPutCount() != puts0 {
		t.Fatal("unchanged status was written")
	}

	// The node-lifecycle-controller marks the node Unknown while the edge
	// is away; the edge's next status must flip it back.
	n := h.node("edge-a")
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = corev1.ConditionUnknown
			n.Status.Conditions[i].Reason = "NodeStatusUnknown"
			n.Status.Conditions[i].LastTransitionTime = metav1.NewTime(t0.Add(15 * time.Second))
		}
	}
	if _, err := h.cs.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("lister sees Unknown", func() bool {
		l, err := h.m.lister.Get("edge-a")
		return err == nil && !isReady(l)
	})
	t2 := t0.Add(20 * time.Second)
	h.clk.SetTime(t2)
	h.m.UpdateStatus("edge-a", edgeNode("edge-a", 110, t2).Status)
	h.waitFor("Ready again", func() bool { return isReady(h.node("edge-a")) })
	if ready := condition(h.node("edge-a"), corev1.NodeReady); !ready.LastTransitionTime.Time.Equal(t2) || ready.Reason != "EdgeReady" {
		t.Errorf("Ready %+v, want EdgeReady with transition %v", ready, t2)
	}

	// Unchanged, but older than StatusResync: written, transition kept.
	t3 := t2.Add(61 * time.Second)
	h.clk.SetTime(t3)
	h.m.UpdateStatus("edge-a", edgeNode("edge-a", 110, t3).Status)
	h.waitFor("resync write", func() bool {
		return condition(h.node("edge-a"), corev1.NodeReady).LastHeartbeatTime.Time.Equal(t3)
	})
	if ready := condition(h.node("edge-a"), corev1.NodeReady); !ready.LastTransitionTime.Time.Equal(t2) {
		t.Errorf("transition time %v, want it kept at %v", ready.LastTransitionTime, t2)
	}
}

func TestUpdateStatusUnknownNodeDropped(t *testing.T) {
	h := newHarness(t, Config{Workers: 1})
	h.m.UpdateStatus("ghost", edgeNode("ghost", 1, t0).Status)
	h.waitFor("get attempted", func() bool { _, _, _, g := h.writes("nodes"); return g > 0 })
	// Queue an update for a real node behind it: once that is written, the
	// ghost's has been processed too (one worker takes keys in order).
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	h.m.UpdateStatus("edge-a", edgeNode("edge-a", 7, t0).Status)
	h.waitFor("edge-a written", func() bool { return h.node("edge-a").Status.Capacity.Pods().Value() == 7 })
	if _, err := h.cs.CoreV1().Nodes().Get(t.Context(), "ghost", metav1.GetOptions{}); err == nil {
		t.Error("status for an unregistered node created it")
	}
	if st := h.m.Stats(); st.WriteErrors != 0 {
		t.Errorf("a missing node was retried as an error: %+v", st)
	}
}

func lease(t *testing.T, h *harness, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := h.cs.CoordinationV1().Leases(LeaseNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLeaseCreatedThenRenewed(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	uid := h.node("edge-a").UID
	h.m.Heartbeat("edge-a")
	h.waitFor("lease created", func() bool { return h.m.Stats().LeaseWrites == 1 })
	l := lease(t, h, "edge-a")
	want := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr("edge-a"),
		LeaseDurationSeconds: ptr(int32(40)),
		RenewTime:            ptr(metav1.NewMicroTime(t0)),
	}
	if diff := cmp.Diff(want, l.Spec); diff != "" {
		t.Errorf("lease spec (-want +got):\n%s", diff)
	}
	wantRefs := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "edge-a", UID: uid}}
	if diff := cmp.Diff(wantRefs, l.OwnerReferences); diff != "" {
		t.Errorf("owner references (-want +got):\n%s", diff)
	}

	t1 := t0.Add(11 * time.Second)
	h.clk.SetTime(t1)
	h.m.Heartbeat("edge-a")
	h.waitFor("lease renewed", func() bool { return h.m.Stats().LeaseWrites == 2 })
	if got := lease(t, h, "edge-a").Spec.RenewTime; !got.Time.Equal(t1) {
		t.Errorf("renewTime %v, want %v", got, t1)
	}
	c, u, _, g := h.writes("leases")
	if c != 1 || u != 1 || g != 2 { // the two gets are this test's own
		t.Errorf("lease calls: %d creates, %d updates, %d gets; want 1, 1 and no GET by the manager", c, u, g-2)
	}
}

func TestHeartbeatThrottled(t *testing.T) {
	h := newHarness(t, Config{LeaseDurationSeconds: 40})
	h.m.Heartbeat("edge-a")
	h.waitFor("lease created", func() bool { return h.m.Stats().LeaseWrites == 1 })
	for _, d := range []time.Duration{0, 5 * time.Second, 10*time.Second - time.Millisecond} {
		h.clk.SetTime(t0.Add(d))
		h.m.Heartbeat("edge-a") // decided synchronously: renewed < 10 s ago
	}
	if st := h.m.Stats(); st.LeaseSkips != 3 || st.LeaseWrites != 1 {
		t.Errorf("stats %+v, want 3 skips and 1 write", st)
	}
	h.clk.SetTime(t0.Add(10 * time.Second))
	h.m.Heartbeat("edge-a")
	h.waitFor("renewed at 1/4 of the duration", func() bool { return h.m.Stats().LeaseWrites == 2 })
}

func TestLeaseOwnerAddedOnceNodeKnown(t *testing.T) {
	h := newHarness(t, Config{})
	h.m.Heartbeat("edge-a") // before the node exists
	h.waitFor("lease created", func() bool { return h.m.Stats().LeaseWrites == 1 })
	if refs := lease(t, h, "edge-a").OwnerReferences; len(refs) != 0 {
		t.Fatalf("owner references %+v for a node that does not exist", refs)
	}
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	h.clk.SetTime(t0.Add(20 * time.Second))
	h.m.Heartbeat("edge-a")
	h.waitFor("lease renewed", func() bool { return h.m.Stats().LeaseWrites == 2 })
	refs := lease(t, h, "edge-a").OwnerReferences
	if len(refs) != 1 || refs[0].UID != h.node("edge-a").UID {
		t.Errorf("owner references %+v, want the node", refs)
	}
}

func TestLeaseConflictAndExistingLease(t *testing.T) {
	h := newHarness(t, Config{})
	h.m.Heartbeat("edge-a")
	h.waitFor("lease created", func() bool { return h.m.Stats().LeaseWrites == 1 })

	// Someone else writes the lease: the cached resourceVersion is stale.
	l := lease(t, h, "edge-a")
	l.Annotations = map[string]string{"touched": "yes"}
	if _, err := h.cs.CoordinationV1().Leases(LeaseNamespace).Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, _, g0 := h.writes("leases")
	h.clk.SetTime(t0.Add(15 * time.Second))
	h.m.Heartbeat("edge-a")
	h.waitFor("renewed after conflict", func() bool { return h.m.Stats().LeaseWrites == 2 })
	if _, _, _, g := h.writes("leases"); g != g0+1 {
		t.Errorf("%d GETs after the conflict, want 1", g-g0)
	}
	if got := lease(t, h, "edge-a"); !got.Spec.RenewTime.Time.Equal(t0.Add(15*time.Second)) || got.Annotations["touched"] != "yes" {
		t.Errorf("lease after conflict: %+v", got)
	}

	// A new session knows nothing: create fails, GET + Update renews.
	h.m.Forget("edge-a")
	h.clk.SetTime(t0.Add(16 * time.Second)) // not throttled: the state is gone
	h.m.Heartbeat("edge-a")
	h.waitFor("renewed in a new session", func() bool { return h.m.Stats().LeaseWrites == 3 })
	if got := lease(t, h, "edge-a").Spec.RenewTime; !got.Time.Equal(t0.Add(16 * time.Second)) {
		t.Errorf("renewTime %v", got)
	}
}

func TestForgetLeavesNodeAlone(t *testing.T) {
	h := newHarness(t, Config{})
	if err := h.m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	before := h.node("edge-a")
	c0, u0, p0, _ := h.writes("nodes")
	h.m.Forget("edge-a")
	h.m.mu.Lock()
	_, kept := h.m.nodes["edge-a"]
	h.m.mu.Unlock()
	if kept {
		t.Error("state kept after Forget")
	}
	if c, u, p, _ := h.writes("nodes"); c != c0 || u != u0 || p != p0 {
		t.Error("Forget wrote to the node")
	}
	if diff := cmp.Diff(before, h.node("edge-a")); diff != "" {
		t.Errorf("node changed (-before +after):\n%s", diff)
	}
}

func TestMergeStatus(t *testing.T) {
	t1 := t0.Add(time.Minute)
	base := edgeNode("n", 10, t0)
	base.Status.Conditions = append(base.Status.Conditions, corev1.NodeCondition{Type: "Custom", Status: corev1.ConditionTrue})
	st := edgeNode("n", 10, t1).Status
	st.Conditions[1].Status = corev1.ConditionTrue // MemoryPressure flips
	st.Capacity = nil                              // not reported: kept
	got := mergeStatus(base, st, t1)
	if got.Status.Capacity.Pods().Value() != 10 {
		t.Errorf("capacity dropped: %v", got.Status.Capacity)
	}
	ready, mem := condition(got, corev1.NodeReady), condition(got, corev1.NodeMemoryPressure)
	if !ready.LastTransitionTime.Time.Equal(t0) || !ready.LastHeartbeatTime.Time.Equal(t1) {
		t.Errorf("Ready %+v: transition should stay %v, heartbeat be %v", ready, t0, t1)
	}
	if !mem.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("MemoryPressure %+v: transition should be %v", mem, t1)
	}
	if condition(got, "Custom").Status != corev1.ConditionTrue {
		t.Error("condition the edge does not report was dropped")
	}
	if statusEqual(base.Status, got.Status) {
		t.Error("statusEqual ignores a condition status change")
	}
	same := mergeStatus(base, edgeNode("n", 10, t1).Status, t1.Add(time.Hour))
	if !statusEqual(base.Status, same.Status) {
		t.Error("statusEqual compares condition times")
	}
	more := edgeNode("n", 10, t1).Status
	more.Capacity[corev1.ResourcePods] = resource.MustParse("11")
	if statusEqual(base.Status, mergeStatus(base, more, t1).Status) {
		t.Error("statusEqual ignores capacity")
	}
	// The kubelet endpoint CloudStream routes by is taken and compared; an
	// edge that reports none keeps what is there.
	withPort := edgeNode("n", 10, t1).Status
	withPort.DaemonEndpoints.KubeletEndpoint.Port = 10350
	merged := mergeStatus(base, withPort, t1)
	if merged.Status.DaemonEndpoints.KubeletEndpoint.Port != 10350 || statusEqual(base.Status, merged.Status) {
		t.Errorf("kubelet endpoint not merged: %+v", merged.Status.DaemonEndpoints)
	}
	if kept := mergeStatus(merged, edgeNode("n", 10, t1).Status, t1); kept.Status.DaemonEndpoints.KubeletEndpoint.Port != 10350 {
		t.Errorf("kubelet endpoint dropped: %+v", kept.Status.DaemonEndpoints)
	}
}

func TestNewValidates(t *testing.T) {
	cs := fake.NewClientset()
	for _, tc := range []struct {
		cfg  Config
		deps Deps
		want string
	}{
		{Config{LeaseDurationSeconds: -1}, Deps{Client: cs}, "LeaseDurationSeconds -1 is negative"},
		{Config{StatusResync: -time.Second}, Deps{Client: cs}, "StatusResync -1s is negative"},
		{Config{Workers: -2}, Deps{Client: cs}, "Workers -2 is negative"},
		{Config{}, Deps{}, "Deps.Client is nil"},
	} {
		_, err := New(tc.cfg, tc.deps)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	m, err := New(Config{}, Deps{Client: cs})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg != DefaultConfig() {
		t.Errorf("zero config became %+v, want the defaults %+v", m.cfg, DefaultConfig())
	}
}

func TestWorkBeforeRun(t *testing.T) {
	cs := fake.NewClientset()
	clk := clocktesting.NewFakePassiveClock(t0)
	m, err := New(Config{}, Deps{Client: cs, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// Registration does not need Run; heartbeats and status wait for it.
	if err := m.Register(t.Context(), "edge-a", edgeNode("edge-a", 110, t0)); err != nil {
		t.Fatal(err)
	}
	m.Heartbeat("edge-a")
	m.UpdateStatus("edge-a", edgeNode("edge-a", 3, t0).Status)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for st := m.Stats(); st.LeaseWrites != 1 || st.StatusWrites != 1; st = m.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("work queued before Run was not done: %+v", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
