package nodes

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// harness runs a Manager against a fake clientset that, unlike the plain
// fake, assigns UIDs and resourceVersions and refuses stale updates with a
// Conflict, as the apiserver does.
type harness struct {
	t   *testing.T
	cs  *fake.Clientset
	clk *clocktesting.FakePassiveClock
	m   *Manager

	mu         sync.Mutex
	gate       chan struct{} // while non-nil, node status writes wait for it to close
	blocked    chan struct{} // receives when a status write starts waiting on gate
	statusPuts int           // node status updates that reached the fake
}

func newHarness(t *testing.T, cfg Config, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, cs: fake.NewClientset(objs...), clk: clocktesting.NewFakePassiveClock(t0)}
	h.addReactors()
	m, err := New(cfg, Deps{Client: h.cs, Clock: h.clk})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h.waitFor("informer synced", m.informer.HasSynced)
	return h
}

func (h *harness) addReactors() {
	var mu sync.Mutex
	rv := 100
	next := func() string { rv++; return strconv.Itoa(rv) }
	tracker := h.cs.Tracker()
	base := k8stesting.ObjectReaction(tracker)
	h.cs.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		switch a := a.(type) {
		case k8stesting.CreateActionImpl:
			a.Object = a.Object.DeepCopyObject()
			acc, err := meta.Accessor(a.Object)
			if err != nil {
				return true, nil, err
			}
			if acc.GetUID() == "" {
				acc.SetUID(types.UID("uid-" + next()))
			}
			acc.SetResourceVersion(next())
			return base(a)
		case k8stesting.UpdateActionImpl:
			a.Object = a.Object.DeepCopyObject()
			acc, err := meta.Accessor(a.Object)
			if err != nil {
				return true, nil, err
			}
			cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), acc.GetName())
			if err != nil {
				return true, nil, err
			}
			curAcc, _ := meta.Accessor(cur)
			if rv := acc.GetResourceVersion(); rv != "" && rv != curAcc.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), acc.GetName(),
					errors.New("the object has been modified"))
			}
			acc.SetUID(curAcc.GetUID())
			acc.SetResourceVersion(next())
			return base(a)
		case k8stesting.PatchActionImpl:
			_, obj, err := base(a)
			if err != nil {
				return true, nil, err
			}
			acc, _ := meta.Accessor(obj)
			acc.SetResourceVersion(next())
			if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, obj, nil
		}
		return false, nil, nil
	})
	// Added last, so it runs first: counts and optionally holds status writes.
	h.cs.PrependReactor("update", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		h.mu.Lock()
		h.statusPuts++
		gate, blocked := h.gate, h.blocked
		h.mu.Unlock()
		if gate != nil {
			blocked <- struct{}{}
			<-gate
		}
		return false, nil, nil
	})
}

// holdStatusWrites makes status writes wait until the returned func is called.
func (h *harness) holdStatusWrites() (blocked <-chan struct{}, release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate = make(chan struct{})
	h.blocked = make(chan struct{}, 16)
	gate := h.gate
	return h.blocked, func() {
		h.mu.Lock()
		h.gate = nil
		h.mu.Unlock()
		close(gate)
	}
}

func (h *harness) statusPutCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.statusPuts
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) node(name string) *corev1.Node {
	h.t.Helper()
	n, err := h.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// writes counts the mutating calls on resource (nodes or leases) so far.
func (h *harness) writes(resource string) (creates, updates, patches, gets int) {
	for _, a := range h.cs.Actions() {
		if a.GetResource().Resource != resource {
			continue
		}
		switch a.GetVerb() {
		case "create":
			creates++
		case "update":
			updates++
		case "patch":
			patches++
		case "get":
			gets++
		}
	}
	return
}

// edgeNode is a Node as edgecore reports it, with pods capacity pods.
func edgeNode(name string, pods int64, now time.Time) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(pods, resource.DecimalSI),
	}
	t := metav1.NewTime(now)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			LabelEdgeRole: "", "zone": "z1",
		}},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res.DeepCopy(),
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeHostName, Address: name}},
			NodeInfo:    corev1.NodeSystemInfo{MachineID: "m1", KernelVersion: "6.1", OSImage: "Debian", OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.35.4-kubeedge"},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "EdgeReady", Message: "edgecore is posting ready status", LastHeartbeatTime: t, LastTransitionTime: t},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "EdgeHasSufficientMemory", LastHeartbeatTime: t, LastTransitionTime: t},
			},
		},
	}
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.NodeCondition{}
}
