package eventbus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

func seed(t testing.TB, s store.Store) {
	t.Helper()
	model := &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "thermo", Namespace: "default"}, Spec: v1beta1.DeviceModelSpec{
		Protocol: "modbus", Properties: []v1beta1.ModelProperty{
			{Name: "temp", Type: v1beta1.PropertyTypeFloat, AccessMode: v1beta1.ReadOnly},
			{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite, Minimum: "1", Maximum: "100"},
		}}}
	objs := []struct {
		typ string
		m   metav1.Object
		v   any
	}{{devicetwin.TypeDeviceModel, model, model}}
	for _, name := range []string{"t1", "t2"} {
		d := &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: v1beta1.DeviceSpec{
			NodeName: "node-a", DeviceModelRef: &corev1.LocalObjectReference{Name: "thermo"},
			Properties: []v1beta1.DeviceProperty{{Name: "setpoint", Desired: v1beta1.TwinProperty{Value: "20"}}},
		}}
		objs = append(objs, struct {
			typ string
			m   metav1.Object
			v   any
		}{devicetwin.TypeDevice, d, d})
	}
	for _, o := range objs {
		b, _ := json.Marshal(o.v)
		if err := s.Apply(context.Background(), []store.Change{{Op: store.OpPut, Object: store.Object{Type: o.typ, Namespace: o.m.GetNamespace(), Name: o.m.GetName(), ResourceVersion: "1", Value: b}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// rig is a DeviceTwin on a memory store behind an EventBus.
type rig struct {
	dt  *devicetwin.DeviceTwin
	bus *EventBus
}

func startRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	s := store.NewMemory()
	seed(t, s)
	r := &rig{}
	var err error
	r.dt, err = devicetwin.New(devicetwin.Config{NodeName: "node-a"}, devicetwin.Deps{
		Store: s, Clock: clock.RealClock{}, Publish: func(p devicetwin.Publication) { r.bus.Publish(p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeName = "node-a"
	if r.bus, err = New(cfg, Deps{Handler: r.dt}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.dt.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := r.bus.Run(ctx); err != nil {
			t.Errorf("eventbus: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-r.bus.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("eventbus not ready")
	}
	return r
}

// app is a device app: a paho client that collects what it receives.
type app struct {
	c   paho.Client
	mu  sync.Mutex
	got map[string][][]byte
}

func connectApp(t *testing.T, url string) *app {
	t.Helper()
	a := &app{got: map[string][][]byte{}}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("app-%d", time.Now().UnixNano())).SetAutoReconnect(false)
	a.c = paho.NewClient(opts)
	if tok := a.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device app cannot connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { a.c.Disconnect(100) })
	tok := a.c.Subscribe("$hw/events/#", 0, func(_ paho.Client, m paho.Message) {
		a.mu.Lock()
		a.got[m.Topic()] = append(a.got[m.Topic()], append([]byte(nil), m.Payload()...))
		a.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return a
}

func (a *app) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := a.c.Publish(topic, 0, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// await waits for a message on topic whose payload contains sub.
func (a *app) await(t *testing.T, topic, sub string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a.mu.Lock()
		for _, p := range a.got[topic] {
			if strings.Contains(string(p), sub) {
				a.mu.Unlock()
				return p
			}
		}
		a.mu.Unlock()
		if time.Now().After(deadline) {
			a.mu.Lock()
			defer a.mu.Unlock()
			t.Fatalf("nothing on %s containing %q; got %q", topic, sub, a.got[topic])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exercise runs the device-app conversation against url.
func exercise(t *testing.T, url, temp string) {
	a := connectApp(t, url)
	// Retry the first request: with an external broker the bus may still
	// be subscribing.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.publish(t, "$hw/events/device/default/t1/twin/get", `{"event_id":"g0"}`)
		time.Sleep(50 * time.Millisecond)
		a.mu.Lock()
		n := len(a.got["$hw/events/device/default/t1/twin/get/result"])
		a.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no twin/get/result: the bus is not subscribed")
		}
	}
	a.publish(t, "$hw/events/device/default/t1/twin/update", `{"event_id":"u1","twin":{"temp":{"actual":{"value":"`+temp+`"}}}}`)
	res := a.await(t, "$hw/events/device/default/t1/twin/update/result", `"u1"`)
	if !strings.Contains(string(res), `"`+temp+`"`) {
		t.Errorf("result %s", res)
	}
	delta := a.await(t, "$hw/events/device/default/t1/twin/update/delta", `"setpoint":"20"`)
	_ = delta
	a.await(t, "$hw/events/device/default/t1/twin/update/document", `"temp"`)
	a.publish(t, "$hw/events/device/default/t1/twin/get", `{"event_id":"g1"}`)
	get := a.await(t, "$hw/events/device/default/t1/twin/get/result", `"g1"`)
	if !strings.Contains(string(get), `"`+temp+`"`) || !strings.Contains(string(get), `"expected_version":{"cloud":1,"edge":0}`) {
		t.Errorf("twin/get/result %s", get)
	}
	// Bad input gets clear error results; t2 is unaffected.
	a.publish(t, "$hw/events/device/default/t1/twin/update", `{"event_id":"bad1","twin":{"setpoint":{"expected":{"value":"hot"}}}}`)
	a.await(t, "$hw/events/device/default/t1/twin/update/result", `"reason":"expected: property \"setpoint\" is INT: \"hot\" is not an integer"`)
	a.publish(t, "$hw/events/device/default/t1/twin/update", `{"event_id":"bad2","twin":`)
	a.await(t, "$hw/events/device/default/t1/twin/update/result", `"code":400`)
	a.publish(t, "$hw/events/device/default/ghost/twin/update", `{"event_id":"bad3","twin":{"temp":{"actual":{"value":"1"}}}}`)
	a.await(t, "$hw/events/device/default/ghost/twin/update/result", `"code":404`)
	a.publish(t, "$hw/events/device/t2/twin/update", `{"event_id":"short","twin":{"temp":{"actual":{"value":"7"}}}}`)
	a.await(t, "$hw/events/device/t2/twin/update/result", `"short"`)
	a.publish(t, "$hw/events/device/default/t2/state/update", `{"event_id":"s1","state":"online"}`)
	a.await(t, "$hw/events/device/default/t2/state/update/result", `"state":"online"`)
	a.publish(t, "$hw/events/node/node-a/membership/get", `{"event_id":"m1"}`)
	m := a.await(t, "$hw/events/node/node-a/membership/get/result", `"m1"`)
	if !strings.Contains(string(m), `"default/t1"`) || !strings.Contains(string(m), `"default/t2"`) {
		t.Errorf("membership %s", m)
	}
}

func TestInternal(t *testing.T) {
	r := startRig(t, Config{Mode: ModeInternal, InternalAddr: "127.0.0.1:0"})
	exercise(t, "tcp://"+r.bus.InternalAddr(), "21.5")
	if s := r.bus.Stats(); s.Rejected < 3 {
		t.Errorf("stats %+v: rejections not counted", s)
	}
}

func TestExternalMosquitto(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	r := startRig(t, Config{Mode: ModeExternal, ExternalURL: mq.URL})
	exercise(t, mq.URL, "21.5")
	// The broker restarts: the bus reconnects and resubscribes by itself.
	mq.Stop()
	if err := mq.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.bus.Stats().ExternalConnects < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the bus did not reconnect to mosquitto")
		}
		time.Sleep(20 * time.Millisecond)
	}
	exercise(t, mq.URL, "22.5")
}

func TestBoth(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	r := startRig(t, Config{Mode: ModeBoth, InternalAddr: "127.0.0.1:0", ExternalURL: mq.URL})
	exercise(t, "tcp://"+r.bus.InternalAddr(), "21.5")
	exercise(t, mq.URL, "22.5")
}
