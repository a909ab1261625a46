package devicecontroller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/wire"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

func create(t *testing.T, dyn dynamic.Interface, obj any) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	res := v1beta1.DevicesResource
	if u.GetKind() == "DeviceModel" {
		res = v1beta1.DeviceModelsResource
	}
	if _, err := dyn.Resource(res).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newDevice(ns, name, node, model string) *v1beta1.Device {
	return &v1beta1.Device{
		TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1beta1.DeviceSpec{NodeName: node, DeviceModelRef: &corev1.LocalObjectReference{Name: model},
			Properties: []v1beta1.DeviceProperty{{Name: "temp"}}},
	}
}

type enqueued struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (e *enqueued) add(node string, key wire.Resource) {
	e.mu.Lock()
	e.keys[node+" "+key.String()] = true
	e.mu.Unlock()
}

func (e *enqueued) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[s]
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reportMsg(t *testing.T, node string, reps ...wire.DeviceReport) wire.Message {
	t.Helper()
	m, err := wire.New(time.Now(), "devicetwin", wire.GroupResource, wire.OpUpdate, wire.TwinReportResource(node), wire.DeviceReportBatch{Devices: reps})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rep(name string, seq int64, value string) wire.DeviceReport {
	return wire.DeviceReport{Namespace: "default", Name: name, Seq: seq, State: "online",
		Twins: []wire.TwinReport{{PropertyName: "temp", Reported: &wire.TwinValue{Value: value, Metadata: map[string]string{"type": "INT"}}}}}
}

// TestControllerAgainstAPIServer covers delivery lookups, node ownership of
// reports and coalesced, rate-limited status writes against a real apiserver.
func TestControllerAgainstAPIServer(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{})
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := InstallCRDs(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	create(t, dyn, &v1beta1.DeviceModel{TypeMeta: metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "DeviceModel"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "thermo"},
		Spec:       v1beta1.DeviceModelSpec{Protocol: "modbus", Properties: []v1beta1.ModelProperty{{Name: "temp", Type: "INT", AccessMode: "ReadOnly"}}}})
	create(t, dyn, newDevice("default", "dx", "node-x", "thermo"))
	create(t, dyn, newDevice("default", "dy", "node-y", "thermo"))

	clk := clocktesting.NewFakeClock(time.Now())
	enq := &enqueued{keys: map[string]bool{}}
	c, err := New(Config{StatusQPS: 1000, StatusBurst: 1000, StatusInterval: 10 * time.Second, Workers: 2},
		Deps{Dynamic: dyn, Enqueue: enq.add, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	poll(t, "caches synced", c.HasSynced)

	// Downstream: each node gets only its device and the model.
	got := fmt.Sprint(c.Desired("node-x"))
	if got != "[default/device/dx default/devicemodel/thermo]" {
		t.Errorf("Desired(node-x) = %s", got)
	}
	if _, ok := c.Lookup("node-y", wire.Resource{Namespace: "default", Type: wire.TypeDevice, Name: "dx"}); ok {
		t.Error("node-y may look up node-x's device")
	}
	obj, ok := c.Lookup("node-x", wire.Resource{Namespace: "default", Type: wire.TypeDevice, Name: "dx"})
	if !ok || obj.ResourceVersion != "g1" || obj.Kind != "Device" || !strings.Contains(string(obj.Content), `"nodeName":"node-x"`) {
		t.Fatalf("Lookup = %+v %v", obj, ok)
	}
	if !enq.has("node-x default/device/dx") || !enq.has("node-y default/devicemodel/thermo") {
		t.Errorf("informer events not enqueued: %v", enq.keys)
	}

	// Upstream: node-y may not write node-x's device; unknown devices are refused.
	replies := make(chan string, 100)
	reply := func(content json.RawMessage) { replies <- string(content) }
	if err := c.HandleReport("node-y", reportMsg(t, "node-y", rep("dx", 1, "5"), rep("ghost", 1, "5")), reply); err != nil {
		t.Fatal(err)
	}
	r := <-replies
	if !strings.Contains(r, `bound to node \"node-x\"; node \"node-y\" may not report for it`) || !strings.Contains(r, "ghost does not exist") {
		t.Errorf("reply %s", r)
	}
	if err := c.HandleReport("node-y", reportMsg(t, "node-x", rep("dy", 1, "5")), reply); err == nil {
		t.Error("node-y may send on node-x's report resource")
	}
	if err := c.HandleReport("node-x", wire.Message{Resource: wire.TwinReportResource("node-x"), Content: []byte(`{"devices":[{"name":"x"}]}`)}, reply); err == nil {
		t.Error("a malformed batch was accepted")
	}

	// The first report is written at once.
	if err := c.HandleReport("node-x", reportMsg(t, "node-x", rep("dx", 1, "20")), reply); err != nil {
		t.Fatal(err)
	}
	if r := <-replies; r != `"OK"` {
		t.Fatalf("reply %s", r)
	}
	status := func() v1beta1.DeviceStatus {
		u, err := dyn.Resource(v1beta1.DevicesResource).Namespace("default").Get(ctx, "dx", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := deviceFrom(u)
		if err != nil {
			t.Fatal(err)
		}
		if d.Generation != 1 {
			t.Errorf("a status write bumped generation to %d", d.Generation)
		}
		return d.Status
	}
	if st := status(); len(st.Twins) != 1 || st.Twins[0].Reported.Value != "20" || st.State != "online" {
		t.Fatalf("status %+v", st)
	}
	// A chatty device: 100 reports within the interval cause no write
	// until the interval has passed, then one, with the newest value.
	for i := int64(2); i <= 101; i++ {
		if err := c.HandleReport("node-x", reportMsg(t, "node-x", rep("dx", i, fmt.Sprint(i))), reply); err != nil {
			t.Fatal(err)
		}
	}
	if w := c.Stats().Writes; w != 1 {
		t.Fatalf("writes = %d before the interval passed, want 1", w)
	}
	poll(t, "the delayed write scheduled", func() bool { return clk.HasWaiters() })
	clk.Step(10 * time.Second)
	for range 100 {
		if r := <-replies; r != `"OK"` {
			t.Fatalf("reply %s", r)
		}
	}
	if st := status(); st.Twins[0].Reported.Value != "101" {
		t.Errorf("status after coalescing: %+v", st)
	}
	s := c.Stats()
	if s.Writes != 2 || s.Coalesced != 99 {
		t.Errorf("stats %+v: want 2 writes and 99 coalesced reports", s)
	}
}
