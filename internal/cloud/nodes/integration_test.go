package nodes

import (
	"context"
	"log/slog"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/nodestatus"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// poll calls cond every interval until it returns true, failing the test
// after timeout.
func poll(t *testing.T, what string, interval, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// TestIntegrationLifecycle runs the Manager against a real kube-apiserver and
// kube-controller-manager: an edge node registers Ready, its lease is
// renewed, the node-lifecycle-controller marks it Unknown once the session
// ends and heartbeats stop, and it is Ready again when the edge returns.
func TestIntegrationLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane; skipped with -short")
	}
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{
		ControllerManager:      true,
		NodeMonitorGracePeriod: 20 * time.Second,
	})
	log := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	m, err := New(Config{}, Deps{Client: cp.Client, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	collect := func() *corev1.Node {
		t.Helper()
		n, err := nodestatus.Collect(nodestatus.Config{
			NodeName: "edge-a", MaxPods: 110, KubeletVersion: "v1.35.4-kubeedge",
			Labels: map[string]string{"example.com/zone": "z1"},
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	getNode := func() *corev1.Node {
		t.Helper()
		n, err := cp.Client.CoreV1().Nodes().Get(t.Context(), "edge-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	getLease := func() *coordinationv1.Lease {
		l, err := cp.Client.CoordinationV1().Leases(LeaseNamespace).Get(t.Context(), "edge-a", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return l
	}
	readyStatus := func() corev1.ConditionStatus { return condition(getNode(), corev1.NodeReady).Status }

	// Registration: the Node exists, labelled, Ready, when Register returns.
	if err := m.Register(t.Context(), "edge-a", collect()); err != nil {
		t.Fatal(err)
	}
	n := getNode()
	if v, ok := n.Labels[LabelEdgeRole]; !ok || v != "" || n.Labels["example.com/zone"] != "z1" {
		t.Errorf("labels %v: want %s=\"\" and the edge's labels", n.Labels, LabelEdgeRole)
	}
	if ready := condition(n, corev1.NodeReady); ready.Status != corev1.ConditionTrue || ready.Reason != nodestatus.ReasonReady {
		t.Fatalf("Ready condition %+v after Register", ready)
	}
	if n.Status.Capacity.Pods().Value() != 110 || n.Status.NodeInfo.KubeletVersion != "v1.35.4-kubeedge" {
		t.Errorf("status not written: capacity %v, nodeInfo %+v", n.Status.Capacity, n.Status.NodeInfo)
	}

	// Heartbeat: the lease is created, owned by the Node, then renewed once
	// the throttle (a quarter of 40 s) allows.
	m.Heartbeat("edge-a")
	var first *coordinationv1.Lease
	poll(t, "lease created", 100*time.Millisecond, 30*time.Second, func() bool { first = getLease(); return first != nil })
	if refs := first.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].UID != n.UID {
		t.Errorf("lease owner references %+v, want the Node (uid %s)", refs, n.UID)
	}
	if first.Spec.HolderIdentity == nil || *first.Spec.HolderIdentity != "edge-a" {
		t.Errorf("lease holder %v", first.Spec.HolderIdentity)
	}
	poll(t, "lease renewed", time.Second, 40*time.Second, func() bool {
		m.Heartbeat("edge-a") // as keepalives arrive; most are throttled
		l := getLease()
		return l != nil && l.Spec.RenewTime.After(first.Spec.RenewTime.Time)
	})

	// The session ends; no more heartbeats. Forget must not touch the Node:
	// the node-lifecycle-controller marks it Unknown after its grace period.
	m.Forget("edge-a")
	if s := readyStatus(); s != corev1.ConditionTrue {
		t.Fatalf("Ready is %s right after Forget, want it left True", s)
	}
	poll(t, "Ready Unknown from the node-lifecycle-controller", time.Second, 90*time.Second, func() bool {
		return readyStatus() == corev1.ConditionUnknown
	})

	// The edge returns: heartbeat and status make it Ready again.
	m.Heartbeat("edge-a")
	m.UpdateStatus("edge-a", collect().Status)
	poll(t, "Ready True again", 200*time.Millisecond, 30*time.Second, func() bool {
		return readyStatus() == corev1.ConditionTrue
	})
	ready := condition(getNode(), corev1.NodeReady)
	if ready.Reason != nodestatus.ReasonReady || !ready.LastTransitionTime.After(condition(n, corev1.NodeReady).LastTransitionTime.Time) {
		t.Errorf("Ready after return %+v: want EdgeReady with a new transition time", ready)
	}
	// The lease renewal queued by the returning heartbeat runs on its own
	// worker; Ready can be written before it, so wait for it as well.
	poll(t, "lease renewed after the return", 100*time.Millisecond, 30*time.Second, func() bool {
		return m.Stats().LeaseWrites >= 3
	})
	if st := m.Stats(); st.Registrations != 1 || st.StatusWrites < 1 {
		t.Errorf("stats %+v", st)
	} else {
		t.Logf("stats %+v", st)
	}
}
