package dmi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/edge/dmi/dmitest"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

func put(t testing.TB, s store.Store, dt *devicetwin.DeviceTwin, typ string, m metav1.Object, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	ch := store.Change{Op: store.OpPut, Object: store.Object{Type: typ, Namespace: m.GetNamespace(), Name: m.GetName(), ResourceVersion: "1", Value: b}}
	if err := s.Apply(context.Background(), []store.Change{ch}); err != nil {
		t.Fatal(err)
	}
	if dt != nil {
		dt.Notify(ch)
	}
}

func dev(name, protocol, desired string) *v1beta1.Device {
	d := &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: v1beta1.DeviceSpec{
		NodeName: "node-a", DeviceModelRef: &corev1.LocalObjectReference{Name: "thermo"},
		Protocol: v1beta1.ProtocolConfig{ProtocolName: protocol, ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"ip": "127.0.0.1", "port": float64(1502), "slaveID": float64(1)}}},
		Properties: []v1beta1.DeviceProperty{
			{Name: "setpoint", Desired: v1beta1.TwinProperty{Value: desired}, CollectCycle: 1e9,
				Visitors: v1beta1.VisitorConfig{ProtocolName: protocol, ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"register": "HoldingRegister", "offset": float64(2), "scale": 0.1}}}},
			{Name: "temp"},
		},
	}}
	return d
}

var model = &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "thermo", Namespace: "default"}, Spec: v1beta1.DeviceModelSpec{
	Protocol: "modbus", Properties: []v1beta1.ModelProperty{
		{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite, Minimum: "1", Maximum: "100"},
		{Name: "temp", Type: v1beta1.PropertyTypeFloat, AccessMode: v1beta1.ReadOnly},
	}}}

func register(t *testing.T, c pb.DeviceManagerServiceClient, name, protocol, addr string) *pb.MapperRegisterResponse {
	t.Helper()
	resp, err := dmitest.Register(context.Background(), c, name, protocol, addr, true)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDMI(t *testing.T) {
	dir, err := os.MkdirTemp("", "kedmi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := store.NewMemory()
	put(t, s, nil, devicetwin.TypeDeviceModel, model, model)
	put(t, s, nil, devicetwin.TypeDevice, dev("m1", "modbus", "20"), dev("m1", "modbus", "20"))
	put(t, s, nil, devicetwin.TypeDevice, dev("o1", "opcua", "30"), dev("o1", "opcua", "30"))

	var srv *Server
	dt, err := devicetwin.New(devicetwin.Config{NodeName: "node-a"}, devicetwin.Deps{Store: s, Clock: clock.RealClock{},
		Changed: func(id string) { srv.DeviceChanged(id) }})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "dmi.sock")
	srv, err = New(Config{Socket: sock, ReportQPS: 5, ReportBurst: 5, RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}, Deps{Twin: dt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = dt.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx); err != nil {
			t.Errorf("dmi: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	<-srv.Ready()
	c := dmitest.Dial(t, sock)

	// Registration returns only the devices of the mapper's protocol.
	mb := dmitest.Start(t, filepath.Join(dir, "modbus.sock"))
	resp := register(t, c, "modbus-mapper", "modbus", mb.Socket)
	if len(resp.DeviceList) != 1 || resp.DeviceList[0].Name != "m1" || len(resp.ModelList) != 1 || dmitest.Desired(resp.DeviceList[0]) != "setpoint=20" {
		t.Fatalf("register response %v", resp)
	}
	cd := resp.DeviceList[0].Spec.Protocol.ConfigData.Data
	if cd["ip"] == nil || cd["port"] == nil {
		t.Errorf("protocol configData %v", cd)
	}
	// Bad registrations.
	for _, info := range []*pb.MapperInfo{nil, {Protocol: "x", Address: []byte("/a")}, {Name: "x", Address: []byte("/a")}, {Name: "x", Protocol: "p", Address: []byte("relative")}} {
		if _, err := c.MapperRegister(ctx, &pb.MapperRegisterRequest{Mapper: info}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("register %v: %v", info, err)
		}
	}

	// A new device reaches the mapper; so does a cloud desired change.
	put(t, s, dt, devicetwin.TypeDevice, dev("m2", "modbus", "40"), dev("m2", "modbus", "40"))
	mb.Await(t, "RegisterDevice default/m2 setpoint=40")
	put(t, s, dt, devicetwin.TypeDevice, dev("m1", "modbus", "25"), dev("m1", "modbus", "25"))
	mb.Await(t, "UpdateDevice default/m1 setpoint=25")
	for _, call := range mb.Calls() {
		if strings.Contains(call, "o1") {
			t.Errorf("the modbus mapper got an opcua device: %s", call)
		}
	}

	// Reports become twin values; bad ones are refused clearly.
	rep := func(name string, tw ...*pb.Twin) error {
		_, err := c.ReportDeviceStatus(ctx, &pb.ReportDeviceStatusRequest{DeviceName: name, DeviceNamespace: "default", ReportedDevice: &pb.DeviceStatus{Twins: tw}})
		return err
	}
	if err := rep("m1", &pb.Twin{PropertyName: "temp", Reported: &pb.TwinProperty{Value: "21.5", Metadata: map[string]string{"timestamp": "1"}}},
		&pb.Twin{PropertyName: "setpoint", Reported: &pb.TwinProperty{Value: "25"}, ObservedDesired: &pb.TwinProperty{Value: "25"}}); err != nil {
		t.Fatal(err)
	}
	res := dt.TwinGet(ctx, "default/m1", nil)
	if !strings.Contains(string(res[0].Payload), `"21.5"`) {
		t.Errorf("twin after the report: %s", res[0].Payload)
	}
	for _, tc := range []struct {
		name string
		tw   []*pb.Twin
		code codes.Code
		msg  string
	}{
		{"ghost", []*pb.Twin{{PropertyName: "temp", Reported: &pb.TwinProperty{Value: "1"}}}, codes.NotFound, "not bound to node"},
		{"m1", []*pb.Twin{{PropertyName: "setpoint", Reported: &pb.TwinProperty{Value: "hot"}}}, codes.InvalidArgument, "not an integer"},
		{"m1", []*pb.Twin{{PropertyName: "setpoint", Reported: &pb.TwinProperty{Value: "500"}}}, codes.InvalidArgument, "above the maximum"},
		{"m1", nil, codes.InvalidArgument, "no twins"},
		{"", []*pb.Twin{{PropertyName: "temp", Reported: &pb.TwinProperty{Value: "1"}}}, codes.InvalidArgument, "not a valid device name"},
	} {
		err := rep(tc.name, tc.tw...)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("report %s %v: %v, want %v %q", tc.name, tc.tw, err, tc.code, tc.msg)
		}
	}
	if _, err := c.ReportDeviceStates(ctx, &pb.ReportDeviceStatesRequest{DeviceName: "m2", DeviceNamespace: "default", State: "online"}); err != nil {
		t.Fatal(err)
	}

	// Per-mapper rate limit: the modbus mapper's burst is used up (5), the
	// opcua device's reports (no mapper yet) are unaffected.
	limited := 0
	for range 10 {
		if err := rep("m2", &pb.Twin{PropertyName: "temp", Reported: &pb.TwinProperty{Value: "1"}}); status.Code(err) == codes.ResourceExhausted {
			limited++
		}
	}
	if limited == 0 {
		t.Error("no report was rate limited")
	}
	for i := range 10 {
		if err := rep("o1", &pb.Twin{PropertyName: "temp", Reported: &pb.TwinProperty{Value: fmt.Sprint(i)}}); err != nil {
			t.Fatalf("o1 report %d: %v", i, err)
		}
	}

	// The mapper dies: a desired change is retried until it is back.
	mb.Stop()
	put(t, s, dt, devicetwin.TypeDevice, dev("m1", "modbus", "60"), dev("m1", "modbus", "60"))
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().PushFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no push failure while the mapper was down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mb2 := dmitest.Start(t, mb.Socket)
	mb2.Await(t, "UpdateDevice default/m1 setpoint=60")

	// Registering again replaces the registration: the new one gets the pushes.
	mb3 := dmitest.Start(t, filepath.Join(dir, "modbus3.sock"))
	resp = register(t, c, "modbus-mapper", "modbus", mb3.Socket)
	if len(resp.DeviceList) != 2 {
		t.Fatalf("second registration got %d devices", len(resp.DeviceList))
	}
	put(t, s, dt, devicetwin.TypeDevice, dev("m2", "modbus", "41"), dev("m2", "modbus", "41"))
	mb3.Await(t, "UpdateDevice default/m2 setpoint=41")
	for _, call := range mb2.Calls() {
		if strings.Contains(call, "setpoint=41") {
			t.Errorf("the replaced registration still got pushes: %s", call)
		}
	}

	// Removing a device removes it, and then its unused model, from the mapper.
	for _, name := range []string{"m1", "m2"} {
		if err := s.Apply(ctx, []store.Change{{Op: store.OpDelete, Object: store.Object{Type: devicetwin.TypeDevice, Namespace: "default", Name: name}}}); err != nil {
			t.Fatal(err)
		}
		dt.Notify(store.Change{Op: store.OpDelete, Object: store.Object{Type: devicetwin.TypeDevice, Namespace: "default", Name: name}})
	}
	mb3.Await(t, "RemoveDevice default/m1")
	mb3.Await(t, "RemoveDevice default/m2")
	mb3.Await(t, "RemoveDeviceModel default/thermo")
}

// FuzzReportsFromDMI checks the mapper report conversion never panics and
// that what it accepts is bounded.
func FuzzReportsFromDMI(f *testing.F) {
	f.Add("temp", "21.5", "21", true, 1)
	f.Add("", "x", "", false, 0)
	f.Add("p", strings.Repeat("v", 70000), "", true, 300)
	f.Fuzz(func(t *testing.T, prop, reported, observed string, withReported bool, n int) {
		n = n % 300
		st := &pb.DeviceStatus{}
		for i := range n {
			tw := &pb.Twin{PropertyName: fmt.Sprintf("%s%d", prop, i%3), ObservedDesired: &pb.TwinProperty{Value: observed}}
			if withReported {
				tw.Reported = &pb.TwinProperty{Value: reported}
			}
			st.Twins = append(st.Twins, tw)
		}
		reps, err := reportsFromDMI(st)
		if err != nil {
			return
		}
		// Twins present but still empty (nothing read yet) are skipped, not refused.
		hasValue := (withReported && reported != "") || observed != ""
		if (hasValue && len(reps) == 0) || (!hasValue && len(reps) != 0) || len(reps) > maxTwinsPerReport {
			t.Fatalf("%d reports accepted from %d twins (values present: %v)", len(reps), n, hasValue)
		}
		for _, r := range reps {
			if r.Reported == nil && r.ObservedDesired == nil {
				t.Fatal("an empty report was accepted")
			}
		}
	})
}

// FuzzCustomized checks configData conversion to DMI never panics.
func FuzzCustomized(f *testing.F) {
	f.Add([]byte(`{"ip":"127.0.0.1","port":1502,"slaveID":1,"scale":0.1,"isSwap":true,"nested":{"a":[1,2]}}`))
	f.Add([]byte(`{"x":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cv v1beta1.CustomizedValue
		if err := json.Unmarshal(raw, &cv); err != nil {
			return
		}
		out, err := customized(&cv)
		if err == nil && cv.Data != nil && len(out.GetData()) != len(cv.Data) {
			t.Fatalf("%d keys in, %d out", len(cv.Data), len(out.GetData()))
		}
	})
}
