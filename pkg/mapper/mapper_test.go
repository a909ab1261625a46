package mapper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

const wait = 20 * time.Second

// testMapper runs a mapper for drv against edgecore until the test ends.
func testMapper(t *testing.T, dir string, ec *mappertest.Edgecore, drv Driver, tweak func(*Config)) *Mapper {
	t.Helper()
	cfg := Default("fake")
	cfg.SocketPath = filepath.Join(dir, "fake.sock")
	cfg.EdgecoreSocket = ec.Socket
	cfg.DefaultCollectCycle = 20 * time.Millisecond
	cfg.DefaultReportCycle = 20 * time.Millisecond
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.CallTimeout = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := New(cfg, drv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var thermoProps = []mappertest.Prop{
	{Name: "temperature", Type: "DOUBLE", Access: "ReadOnly", Visitor: map[string]any{"reg": "t"}},
	{Name: "setpoint", Type: "INT", Minimum: "0", Maximum: "100", Visitor: map[string]any{"reg": "sp"}, Desired: "5"},
}

func reportedIs(ec *mappertest.Edgecore, name, prop, want string) func() (bool, string) {
	return func() (bool, string) {
		v, e := ec.Reported("default", name, prop)
		return v == want && e == "", fmt.Sprintf("%s.%s reported %q (error %q), want %q", name, prop, v, e, want)
	}
}

func stateIs(ec *mappertest.Edgecore, name string, want State) func() (bool, string) {
	return func() (bool, string) {
		s := ec.State("default", name)
		return s == string(want), fmt.Sprintf("%s state %q, want %q (log %v)", name, s, want, ec.StateLog("default", name))
	}
}

func TestCollectReportAndDesired(t *testing.T) {
	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	drv.set("a", "t", 21.5)
	drv.set("a", "sp", int64(0))
	dev := mappertest.MustDevice(t, "default", "thermo", "thermo-model", "fake", map[string]any{"addr": "a"}, thermoProps...)
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "thermo-model", thermoProps...)}, []*pb.Device{dev})
	m := testMapper(t, dir, ec, drv, nil)

	mappertest.Eventually(t, wait, reportedIs(ec, "thermo", "temperature", "21.5"))
	// The desired value from the registration reached the device...
	mappertest.Eventually(t, wait, func() (bool, string) {
		v := drv.get("a", "sp")
		return v == int64(5), fmt.Sprintf("device setpoint %v, want 5", v)
	})
	// ...and comes back as reported and observedDesired.
	mappertest.Eventually(t, wait, reportedIs(ec, "thermo", "setpoint", "5"))
	tw, _ := ec.Twin("default", "thermo", "setpoint")
	if tw.GetObservedDesired().GetValue() != "5" || tw.GetReported().GetMetadata()["type"] != "int" || tw.GetReported().GetMetadata()["timestamp"] == "" {
		t.Errorf("setpoint twin %v", tw)
	}
	mappertest.Eventually(t, wait, stateIs(ec, "thermo", StateOK))

	// Values track the device.
	drv.set("a", "t", 22.25)
	mappertest.Eventually(t, wait, reportedIs(ec, "thermo", "temperature", "22.25"))

	// A desired value changed through UpdateDevice reaches the device
	// without a reconnect.
	connects := drv.connects("a")
	upd, err := mappertest.WithDesired(dev, "setpoint", "42")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		v := drv.get("a", "sp")
		return v == int64(42), fmt.Sprintf("device setpoint %v, want 42", v)
	})
	mappertest.Eventually(t, wait, reportedIs(ec, "thermo", "setpoint", "42"))
	if n := drv.connects("a"); n != connects {
		t.Errorf("a desired-only update reconnected the device (%d -> %d connects)", connects, n)
	}

	// Out of the model's range: not written, error on observedDesired.
	upd, _ = mappertest.WithDesired(dev, "setpoint", "101")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		tw, _ := ec.Twin("default", "thermo", "setpoint")
		e := tw.GetObservedDesired().GetMetadata()["error"]
		return strings.Contains(e, "above the maximum 100"), fmt.Sprintf("observedDesired error %q", e)
	})
	if v := drv.get("a", "sp"); v != int64(42) {
		t.Errorf("out-of-range desired value was written: %v", v)
	}

	// GetDevice returns the twins.
	resp, err := ec.Mapper(t).GetDevice(context.Background(), &pb.GetDeviceRequest{DeviceName: "thermo", DeviceNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetDevice().GetStatus().GetTwins()) != 2 {
		t.Errorf("GetDevice twins: %v", resp.GetDevice().GetStatus())
	}
	if _, err := ec.Mapper(t).GetDevice(context.Background(), &pb.GetDeviceRequest{DeviceName: "nope"}); err == nil {
		t.Error("GetDevice of an unknown device succeeded")
	}
	if s := m.Stats(); s.Registrations != 1 || s.Devices != 1 || s.ReportsSent == 0 {
		t.Errorf("stats %+v", s)
	}
	if regs := ec.Registrations(); regs[0].GetProtocol() != "fake" || string(regs[0].GetAddress()) != filepath.Join(dir, "fake.sock") || regs[0].GetState() != "ok" {
		t.Errorf("registration %v", regs[0])
	}
}

func TestBadConfigIsolated(t *testing.T) {
	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	drv.set("good", "t", 1.0)
	props := []mappertest.Prop{{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"reg": "t"}}}
	model := mappertest.Model("default", "m", props...)
	good := mappertest.MustDevice(t, "default", "good", "m", "fake", map[string]any{"addr": "good"}, props...)
	typo := mappertest.MustDevice(t, "default", "typo", "m", "fake", map[string]any{"adr": "good"}, props...)
	badVisitor := mappertest.MustDevice(t, "default", "badvisitor", "m", "fake", map[string]any{"addr": "good"},
		mappertest.Prop{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"reg": 5}})
	noModel := mappertest.MustDevice(t, "default", "nomodel", "missing", "fake", map[string]any{"addr": "good"}, props...)
	otherProto := mappertest.MustDevice(t, "default", "other", "m", "modbus", map[string]any{"addr": "good"}, props...)
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{good, typo, badVisitor, noModel, otherProto})
	testMapper(t, dir, ec, drv, nil)

	mappertest.Eventually(t, wait, reportedIs(ec, "good", "temperature", "1"))
	mappertest.Eventually(t, wait, stateIs(ec, "good", StateOK))
	for _, c := range []struct {
		name, want string
		state      State
	}{
		{"typo", `protocol configData key "addr": convert: missing key`, StateUnknown},
		{"typo", `protocol configData key "adr": convert: unknown key`, StateUnknown},
		{"badvisitor", `visitor configData of property "temperature" key "reg": convert: wrong type`, StateUnhealthy},
		{"nomodel", `device model "missing" of device default/nomodel is unknown`, StateUnknown},
		{"other", `uses protocol "modbus" but this mapper serves "fake"`, StateUnknown},
	} {
		mappertest.Eventually(t, wait, func() (bool, string) {
			_, e := ec.Reported("default", c.name, "temperature")
			return strings.Contains(e, c.want), fmt.Sprintf("%s error %q, want it to contain %q", c.name, e, c.want)
		})
		mappertest.Eventually(t, wait, stateIs(ec, c.name, c.state))
	}

	// The model arriving later starts the device that waited for it.
	if _, err := ec.Mapper(t).CreateDeviceModel(context.Background(), &pb.CreateDeviceModelRequest{Model: mappertest.Model("default", "missing", props...)}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reportedIs(ec, "nomodel", "temperature", "1"))
}

func TestReconnectAndErrors(t *testing.T) {
	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	drv.set("a", "t", 1.0)
	drv.set("a", "sp", int64(0))
	drv.down["a"] = true
	dev := mappertest.MustDevice(t, "default", "d", "thermo-model", "fake", map[string]any{"addr": "a"}, thermoProps...)
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "thermo-model", thermoProps...)}, []*pb.Device{dev})
	testMapper(t, dir, ec, drv, nil)

	// Unreachable: offline, with the reason on the twins.
	mappertest.Eventually(t, wait, stateIs(ec, "d", StateOffline))
	mappertest.Eventually(t, wait, func() (bool, string) {
		_, e := ec.Reported("default", "d", "temperature")
		return strings.Contains(e, "connection refused"), "temperature error " + e
	})
	drv.mu.Lock()
	drv.down["a"] = false
	drv.mu.Unlock()
	mappertest.Eventually(t, wait, stateIs(ec, "d", StateOK))
	mappertest.Eventually(t, wait, reportedIs(ec, "d", "temperature", "1"))
	mappertest.Eventually(t, wait, func() (bool, string) { return drv.get("a", "sp") == int64(5), "desired after reconnect" })

	// A lost connection that does not come back at once: the device is
	// reported disconnected or offline (reports coalesce, so a quick
	// reconnect may hide the transition), then ok after a reconnect.
	before := drv.connects("a")
	drv.mu.Lock()
	drv.drop["a"], drv.down["a"] = true, true
	drv.mu.Unlock()
	mappertest.Eventually(t, wait, func() (bool, string) {
		s := ec.State("default", "d")
		return s == string(StateDisconnected) || s == string(StateOffline), "state " + s
	})
	drv.mu.Lock()
	drv.down["a"] = false
	drv.mu.Unlock()
	mappertest.Eventually(t, wait, func() (bool, string) {
		return drv.connects("a") > before, "no reconnect after a lost connection"
	})
	mappertest.Eventually(t, wait, stateIs(ec, "d", StateOK))

	// A property error (not a connection loss): unhealthy, others still
	// collected.
	drv.mu.Lock()
	drv.broken["sp"] = errors.New("exception 2: illegal data address")
	drv.mu.Unlock()
	drv.set("a", "t", 2.0)
	mappertest.Eventually(t, wait, stateIs(ec, "d", StateUnhealthy))
	mappertest.Eventually(t, wait, reportedIs(ec, "d", "temperature", "2"))
	mappertest.Eventually(t, wait, func() (bool, string) {
		_, e := ec.Reported("default", "d", "setpoint")
		return strings.Contains(e, "illegal data address"), "setpoint error " + e
	})
	drv.mu.Lock()
	delete(drv.broken, "sp")
	drv.ro["sp"] = true
	drv.mu.Unlock()
	mappertest.Eventually(t, wait, stateIs(ec, "d", StateOK))

	// A write the device refuses: reported on observedDesired, not retried.
	upd, _ := mappertest.WithDesired(dev, "setpoint", "7")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		tw, _ := ec.Twin("default", "d", "setpoint")
		e := tw.GetObservedDesired().GetMetadata()["error"]
		return strings.Contains(e, `write desired value "7"`) && strings.Contains(e, "not writable"), "observedDesired error " + e
	})

	// A desired value on a ReadOnly property is refused by the SDK.
	upd, _ = mappertest.WithDesired(dev, "temperature", "3")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		tw, _ := ec.Twin("default", "d", "temperature")
		e := tw.GetObservedDesired().GetMetadata()["error"]
		return strings.Contains(e, "ReadOnly"), "observedDesired error " + e
	})
}

func TestEdgecoreAbsentThenRestarted(t *testing.T) {
	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	ec.Stop()
	drv := newFakeDriver()
	drv.set("a", "t", 1.0)
	drv.set("b", "t", 2.0)
	props := []mappertest.Prop{{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"reg": "t"}}}
	model := mappertest.Model("default", "m", props...)
	a := mappertest.MustDevice(t, "default", "a", "m", "fake", map[string]any{"addr": "a"}, props...)
	b := mappertest.MustDevice(t, "default", "b", "m", "fake", map[string]any{"addr": "b"}, props...)
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{a})
	m := testMapper(t, dir, ec, drv, nil)

	// edgecore is absent: the mapper keeps retrying (a few attempts pass).
	select {
	case <-m.Ready():
		t.Fatal("ready without edgecore")
	case <-time.After(150 * time.Millisecond):
	}
	if err := ec.Start(); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reportedIs(ec, "a", "temperature", "1"))

	// edgecore restarts with another device list: the mapper registers
	// again and follows the new list.
	ec.Stop()
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{b})
	if err := ec.Start(); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reportedIs(ec, "b", "temperature", "2"))
	mappertest.Eventually(t, wait, func() (bool, string) {
		n := len(m.Devices())
		return n == 1 && m.Devices()[0].Name == "b", fmt.Sprintf("mapper has %d devices, want only b", n)
	})
	if n := len(ec.Registrations()); n < 2 {
		t.Errorf("%d registrations, want at least 2", n)
	}

	// Registering the same device twice (and RegisterDevice after the
	// registration listed it) is harmless.
	for range 2 {
		if _, err := ec.Mapper(t).RegisterDevice(context.Background(), &pb.RegisterDeviceRequest{Device: b}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.Devices()); n != 1 {
		t.Errorf("%d devices after registering b twice", n)
	}
	if _, err := ec.Mapper(t).RemoveDevice(context.Background(), &pb.RemoveDeviceRequest{DeviceName: "b", DeviceNamespace: "default"}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Devices()); n != 0 {
		t.Errorf("%d devices after RemoveDevice", n)
	}
}

func TestSubscription(t *testing.T) {
	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	props := []mappertest.Prop{{Name: "level", Type: "INT", Visitor: map[string]any{"reg": "lvl", "subscribe": true}, CollectCycle: time.Hour}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "s", "m", "fake", map[string]any{"addr": "a"}, props...)})
	testMapper(t, dir, ec, drv, nil)
	mappertest.Eventually(t, wait, func() (bool, string) {
		drv.notify("lvl", int64(7))
		v, _ := ec.Reported("default", "s", "level")
		return v == "7", "level " + v
	})
	drv.notify("lvl", int64(8))
	mappertest.Eventually(t, wait, reportedIs(ec, "s", "level", "8"))
}

func TestPushHTTPAndHealth(t *testing.T) {
	var mu sync.Mutex
	var got []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, r.PostForm)
		mu.Unlock()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	var port int64
	fmt.Sscan(u.Port(), &port)

	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	drv.set("a", "t", 3.5)
	props := []mappertest.Prop{{Name: "temperature", Type: "FLOAT", Visitor: map[string]any{"reg": "t"},
		PushMethod: &pb.PushMethod{Http: &pb.PushMethodHTTP{Hostname: "http://127.0.0.1", Port: port, Requestpath: "/ingest"}}}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "p", "m", "fake", map[string]any{"addr": "a"}, props...)})
	m := testMapper(t, dir, ec, drv, func(c *Config) { c.HealthAddr = "127.0.0.1:0" })
	mappertest.Eventually(t, wait, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[0].Get("temperature") == "3.5" && got[0].Get("time") != "", fmt.Sprintf("posts %v", got)
	})
	if s := m.Stats(); s.PushSent == 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Default("modbus")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.SocketPath = strings.Repeat("x", 200)
	c.ReportQPS = 0
	c.RetryMax = time.Millisecond
	err := c.Validate()
	for _, want := range []string{"SocketPath", "ReportQPS", "RetryMax"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not name %s", err, want)
		}
	}
	if _, err := New(Default("x"), nil); err == nil {
		t.Error("New accepted a nil driver")
	}
}

func TestPushMQTT(t *testing.T) {
	broker := devicepeers.StartMosquitto(t)
	got := make(chan []byte, 16)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("push-test"))
	if tok := sub.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("factory/line1", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	dir := mappertest.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	drv := newFakeDriver()
	drv.set("a", "t", 19.25)
	props := []mappertest.Prop{{Name: "temperature", Type: "DOUBLE", Visitor: map[string]any{"reg": "t"},
		PushMethod: &pb.PushMethod{Mqtt: &pb.PushMethodMQTT{Address: broker.URL(), Topic: "factory/line1", Qos: 1}}}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "q", "m", "fake", map[string]any{"addr": "a"}, props...)})
	testMapper(t, dir, ec, drv, nil)
	select {
	case b := <-got:
		var dm dataModel
		if err := json.Unmarshal(b, &dm); err != nil {
			t.Fatalf("payload %s: %v", b, err)
		}
		if dm.DeviceName != "q" || dm.Namespace != "default" || dm.PropertyName != "temperature" || dm.Value != "19.25" || dm.Type != "double" || dm.TimeStamp == 0 {
			t.Errorf("payload %s", b)
		}
	case <-time.After(wait):
		t.Fatal("nothing published")
	}
}
