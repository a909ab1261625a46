package devicetwin

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// fakeUplink records upstream messages.
type fakeUplink struct {
	mu   sync.Mutex
	msgs []wire.Message
	fail bool
}

func (u *fakeUplink) Send(_ context.Context, m wire.Message) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fail {
		return errors.New("not connected")
	}
	u.msgs = append(u.msgs, m)
	return nil
}

func (u *fakeUplink) take() []wire.Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.msgs
	u.msgs = nil
	return out
}

// pubs records asynchronous publications.
type pubs struct {
	mu  sync.Mutex
	all []Publication
}

func (p *pubs) add(x Publication) {
	p.mu.Lock()
	p.all = append(p.all, x)
	p.mu.Unlock()
}

func (p *pubs) topics() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, x := range p.all {
		out = append(out, x.Topic)
	}
	return out
}

func (p *pubs) has(topic string) bool {
	for _, t := range p.topics() {
		if t == topic {
			return true
		}
	}
	return false
}

func putObject(t testing.TB, s store.Store, typ string, obj metav1.Object, v any) store.Change {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ch := store.Change{Op: store.OpPut, Object: store.Object{Type: typ, Namespace: obj.GetNamespace(), Name: obj.GetName(), ResourceVersion: "1", Value: b}}
	if err := s.Apply(context.Background(), []store.Change{ch}); err != nil {
		t.Fatal(err)
	}
	return ch
}

func testDevice(name, node string, desired map[string]string) *v1beta1.Device {
	d := device(desired)
	d.Name = name
	d.Spec.NodeName = node
	d.Spec.DeviceModelRef = &corev1.LocalObjectReference{Name: "thermo"}
	return d
}

type harness struct {
	t      *testing.T
	s      store.Store
	dt     *DeviceTwin
	up     *fakeUplink
	pubs   *pubs
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	chgd   map[string]int
}

func newHarness(t *testing.T, s store.Store) *harness {
	h := &harness{t: t, s: s, up: &fakeUplink{}, pubs: &pubs{}, chgd: map[string]int{}}
	dt, err := New(Config{NodeName: "node-a", SyncInterval: 10 * time.Millisecond, AckTimeout: time.Second}, Deps{
		Store: s, Uplink: h.up, Publish: h.pubs.add, Clock: clock.RealClock{},
		Changed: func(id string) { h.mu.Lock(); h.chgd[id]++; h.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.dt = dt
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- dt.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decode[T any](t *testing.T, p Publication) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(p.Payload, &v); err != nil {
		t.Fatalf("%s: %v: %s", p.Topic, err, p.Payload)
	}
	return v
}

func TestDeviceTwinEndToEnd(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	model := testModel()
	putObject(t, s, TypeDeviceModel, model, model)
	dev := testDevice("t1", "node-a", map[string]string{"setpoint": "20"})
	putObject(t, s, TypeDevice, dev, dev)
	other := testDevice("t2", "node-b", nil)
	putObject(t, s, TypeDevice, other, other)

	h := newHarness(t, s)
	// Membership comes from the store at start; t2 belongs to another node.
	res := h.dt.MembershipGet(ctx, []byte(`{"event_id":"m1"}`))
	mem := decode[MembershipResult](t, res[0])
	if res[0].Topic != "$hw/events/node/node-a/membership/get/result" || len(mem.Devices) != 1 || mem.Devices[0].ID != "default/t1" || mem.EventID != "m1" {
		t.Fatalf("membership: %s %s", res[0].Topic, res[0].Payload)
	}
	// The cloud's desired value was applied at start.
	res = h.dt.TwinGet(ctx, "default/t1", nil)
	got := decode[TwinUpdate](t, res[0])
	if sp := got.Twin["setpoint"]; sp == nil || *sp.Expected.Value != "20" || sp.ExpectedVersion.CloudVersion != 1 {
		t.Fatalf("twin/get: %s", res[0].Payload)
	}

	// A device app reports and writes.
	res = h.dt.TwinUpdate(ctx, "default/t1", []byte(`{"event_id":"e1","twin":{"temp":{"actual":{"value":"21.5"}},"setpoint":{"actual":{"value":"18"}}}}`))
	var topics []string
	for _, p := range res {
		topics = append(topics, p.Topic)
	}
	want := []string{"$hw/events/device/default/t1/twin/update/result", "$hw/events/device/default/t1/twin/update/delta", "$hw/events/device/default/t1/twin/update/document"}
	if strings.Join(topics, " ") != strings.Join(want, " ") {
		t.Fatalf("publications %v, want %v", topics, want)
	}
	d := decode[TwinUpdate](t, res[1])
	if d.Delta["setpoint"] != "20" {
		t.Errorf("delta %s", res[1].Payload)
	}
	r := decode[TwinUpdate](t, res[0])
	if r.EventID != "e1" || *r.Twin["temp"].Actual.Value != "21.5" {
		t.Errorf("result %s", res[0].Payload)
	}

	// Refusals: wrong type, unknown device, malformed, stale version.
	for _, tc := range []struct {
		id, payload, reason string
		code                int
	}{
		{"default/t1", `{"event_id":"e2","twin":{"setpoint":{"expected":{"value":"hot"}}}}`, "not an integer", CodeBadRequest},
		{"default/t1", `{"event_id":"e3","twin":{"setpoint":{"expected":{"value":"101"}}}}`, "above the maximum", CodeBadRequest},
		{"default/nope", `{"event_id":"e4","twin":{"temp":{"actual":{"value":"1"}}}}`, "not bound to node", CodeNotFound},
		{"default/t2", `{"event_id":"e5","twin":{"temp":{"actual":{"value":"1"}}}}`, "not bound to node", CodeNotFound},
		{"default/t1", `{"event_id":"e6","twin":`, "bad payload", CodeBadRequest},
		{"default/t1", `{"event_id":"e7","twin":{"setpoint":{"expected":{"value":"30"},"expected_version":{"cloud":0,"edge":0}}}}`, "stale", CodeConflict},
	} {
		res := h.dt.TwinUpdate(ctx, tc.id, []byte(tc.payload))
		e := decode[ErrorResult](t, res[0])
		if len(res) != 1 || e.Code != tc.code || !strings.Contains(e.Reason, tc.reason) {
			t.Errorf("%s %s: got %s", tc.id, tc.payload, res[0].Payload)
		}
	}
	res = h.dt.TwinGet(ctx, "default/t1", nil)
	got = decode[TwinUpdate](t, res[0])
	if *got.Twin["setpoint"].Expected.Value != "20" {
		t.Errorf("a refused write was stored: %s", res[0].Payload)
	}

	// Upstream: nothing is sent while offline; after connecting one batch.
	if m := h.up.take(); len(m) != 0 {
		t.Fatalf("sent %d messages while offline", len(m))
	}
	h.dt.SetConnected(true)
	var sent []wire.Message
	waitUntil(t, "an upstream report", func() bool { sent = append(sent, h.up.take()...); return len(sent) > 0 })
	b, err := wire.DecodeDeviceReport(sent[0].Content)
	if err != nil || sent[0].Resource != wire.TwinReportResource("node-a") || len(b.Devices) != 1 || b.Devices[0].Name != "t1" {
		t.Fatalf("report %v %s", err, sent[0].Content)
	}
	if !h.pubs.has(ConnectedTopic("node-a")) {
		t.Error("no connected event published")
	}
	// Unacknowledged, it is resent after the ack timeout; acked, it is not.
	h.dt.HandleAck(wire.NewAck(time.Now(), "cloudhub", sent[0]))
	waitUntil(t, "the ack applied", func() bool { return h.dt.Stats().ReportsAcked == 1 })
	h.up.take()

	// A cloud desired change arrives through MetaManager's hook.
	dev2 := testDevice("t1", "node-a", map[string]string{"setpoint": "35"})
	h.dt.Notify(putObject(t, s, TypeDevice, dev2, dev2))
	waitUntil(t, "a delta for the cloud change", func() bool {
		res := h.dt.TwinGet(ctx, "default/t1", nil)
		return *decode[TwinUpdate](t, res[0]).Twin["setpoint"].Expected.Value == "35"
	})
	v, ok, err := h.dt.Device(ctx, "default/t1")
	if err != nil || !ok || v.Device.Spec.Properties[0].Desired.Value != "35" || v.Model == nil {
		t.Fatalf("mapper view %+v %v %v", v, ok, err)
	}
	// A mapper report, then state.
	if err := h.dt.ReportTwins(ctx, "default/t1", []Report{{Property: "setpoint", Reported: str("35"), ObservedDesired: str("35")}}); err != nil {
		t.Fatal(err)
	}
	var ue *UpdateError
	if err := h.dt.ReportTwins(ctx, "default/t1", []Report{{Property: "temp", Reported: str("x")}}); !errors.As(err, &ue) || !errors.Is(err, ErrInvalid) {
		t.Errorf("bad mapper report: %v", err)
	}
	if err := h.dt.ReportState(ctx, "default/t1", "online"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a report with the new value and state", func() bool {
		for _, m := range h.up.take() {
			b, _ := wire.DecodeDeviceReport(m.Content)
			for _, d := range b.Devices {
				for _, tw := range d.Twins {
					if tw.PropertyName == "setpoint" && tw.Reported.Value == "35" && d.State == "online" {
						return true
					}
				}
			}
		}
		return false
	})

	// Removing the device from the store removes the member and announces it.
	if err := s.Apply(ctx, []store.Change{{Op: store.OpDelete, Object: store.Object{Type: TypeDevice, Namespace: "default", Name: "t1"}}}); err != nil {
		t.Fatal(err)
	}
	h.dt.Notify(store.Change{Op: store.OpDelete, Object: store.Object{Type: TypeDevice, Namespace: "default", Name: "t1"}})
	waitUntil(t, "membership/updated", func() bool { return h.pubs.has(NodeTopic("node-a", SuffixMembershipUpdated)) })
	res = h.dt.TwinGet(ctx, "default/t1", nil)
	if e := decode[ErrorResult](t, res[0]); e.Code != CodeNotFound {
		t.Errorf("twin/get of a removed device: %s", res[0].Payload)
	}
	if _, err := s.Get(ctx, TypeTwinDoc, "default", "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the removed device's twin is still stored: %v", err)
	}
	h.mu.Lock()
	n := h.chgd["default/t1"]
	h.mu.Unlock()
	if n == 0 {
		t.Error("Changed was never called for default/t1")
	}
}

// TestRestartResendsUnacknowledged: reports acknowledged at the edge but not
// by the cloud survive a restart and are sent after reconnecting.
func TestRestartResendsUnacknowledged(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	model := testModel()
	putObject(t, s, TypeDeviceModel, model, model)
	dev := testDevice("t1", "node-a", nil)
	putObject(t, s, TypeDevice, dev, dev)
	h := newHarness(t, s)
	if err := h.dt.ReportTwins(ctx, "default/t1", []Report{{Property: "temp", Reported: str("30.5")}}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h2 := newHarness(t, s)
	// Offline, twin/get is answered from the store.
	res := h2.dt.TwinGet(ctx, "default/t1", nil)
	if v := decode[TwinUpdate](t, res[0]).Twin["temp"].Actual; v == nil || *v.Value != "30.5" {
		t.Fatalf("after restart: %s", res[0].Payload)
	}
	h2.dt.SetConnected(true)
	waitUntil(t, "the report resent", func() bool {
		for _, m := range h2.up.take() {
			if strings.Contains(string(m.Content), `"30.5"`) {
				return true
			}
		}
		return false
	})
}
