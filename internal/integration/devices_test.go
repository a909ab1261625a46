package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kubeedge-go/kubeedge/internal/edge/dmi/dmitest"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

func createDeviceObj(t testing.TB, dyn dynamic.Interface, obj any) {
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

func testModel(ns string) *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{
		TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "DeviceModel"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "thermo"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "modbus", Properties: []v1beta1.ModelProperty{
			{Name: "temp", Type: v1beta1.PropertyTypeFloat, AccessMode: v1beta1.ReadOnly},
			{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite, Minimum: "1", Maximum: "100"},
		}},
	}
}

func testDevice(ns, name, node, desired string) *v1beta1.Device {
	return &v1beta1.Device{
		TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1beta1.DeviceSpec{
			NodeName: node, DeviceModelRef: &corev1.LocalObjectReference{Name: "thermo"},
			Protocol: v1beta1.ProtocolConfig{ProtocolName: "modbus", ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"ip": "127.0.0.1", "port": float64(1502), "slaveID": float64(1)}}},
			Properties: []v1beta1.DeviceProperty{
				{Name: "temp", ReportToCloud: true, CollectCycle: 1e9, ReportCycle: 1e9,
					Visitors: v1beta1.VisitorConfig{ProtocolName: "modbus", ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"register": "InputRegister", "offset": float64(0), "limit": float64(1)}}}},
				{Name: "setpoint", Desired: v1beta1.TwinProperty{Value: desired}, ReportToCloud: true,
					Visitors: v1beta1.VisitorConfig{ProtocolName: "modbus", ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"register": "HoldingRegister", "offset": float64(1), "limit": float64(1)}}}},
			},
		},
	}
}

func patchDesired(t testing.TB, dyn dynamic.Interface, ns, name, value string) {
	t.Helper()
	// A JSON patch of the desired value of property 1 (setpoint).
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/properties/1/desired/value","value":%q}]`, value)
	if _, err := dyn.Resource(v1beta1.DevicesResource).Namespace(ns).Patch(context.Background(), name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deviceStatus(t testing.TB, dyn dynamic.Interface, ns, name string) v1beta1.DeviceStatus {
	t.Helper()
	u, err := dyn.Resource(v1beta1.DevicesResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var d v1beta1.Device
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return d.Status
}

func reported(st v1beta1.DeviceStatus, prop string) string {
	for _, tw := range st.Twins {
		if tw.PropertyName == prop {
			return tw.Reported.Value
		}
	}
	return ""
}

func hasObject(s store.Store, typ, ns, name string) bool {
	_, err := s.Get(context.Background(), typ, ns, name)
	return err == nil
}

func report(t testing.TB, c pb.DeviceManagerServiceClient, ns, name, prop, value string) error {
	t.Helper()
	_, err := c.ReportDeviceStatus(context.Background(), &pb.ReportDeviceStatusRequest{DeviceName: name, DeviceNamespace: ns,
		ReportedDevice: &pb.DeviceStatus{Twins: []*pb.Twin{{PropertyName: prop, Reported: &pb.TwinProperty{Value: value}}}}})
	return err
}

// TestDevicesEndToEnd runs cloudcore and two edgecores against the real
// apiserver with a fake mapper on edge A: devices reach only their node,
// the mapper gets them and their desired values, reports reach
// Device.status, and a cloudcore outage loses nothing.
func TestDevicesEndToEnd(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	ns := "devices-e2e"
	mustCreateNS(t, cp.Client, ns)
	tok := token(t, cp.Client)
	a := startEdge(t, edgeConfig(t, t.TempDir(), "dev-a", c.ports, tok, "websocket"))
	b := startEdge(t, edgeConfig(t, t.TempDir(), "dev-b", c.ports, tok, "websocket"))
	sa, sb := a.store(t), b.store(t)

	// A fake mapper registers with edge A before any device exists.
	dir, err := os.MkdirTemp("", "kemap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mapper := dmitest.Start(t, filepath.Join(dir, "modbus.sock"))
	dmiA := dmitest.Dial(t, a.cfg.Modules.DMI.Socket)
	waitFor(t, 30*time.Second, "edge A's DMI server", func() (bool, error) {
		_, err := dmitest.Register(context.Background(), dmiA, "modbus-mapper", "modbus", mapper.Socket, true)
		return err == nil, err
	})

	createDeviceObj(t, c.Dynamic, testModel(ns))
	createDeviceObj(t, c.Dynamic, testDevice(ns, "sensor-a", "dev-a", "20"))
	createDeviceObj(t, c.Dynamic, testDevice(ns, "sensor-b", "dev-b", "30"))

	waitFor(t, 30*time.Second, "devices in their nodes' stores", func() (bool, error) {
		return hasObject(sa, "device", ns, "sensor-a") && hasObject(sa, "devicemodel", ns, "thermo") &&
			hasObject(sb, "device", ns, "sensor-b") && hasObject(sb, "devicemodel", ns, "thermo"), nil
	})
	mapper.Await(t, "CreateDeviceModel "+ns+"/thermo")
	mapper.Await(t, "RegisterDevice "+ns+"/sensor-a setpoint=20")
	if hasObject(sa, "device", ns, "sensor-b") || hasObject(sb, "device", ns, "sensor-a") {
		t.Fatal("a device reached a node it is not bound to")
	}
	for _, call := range mapper.Calls() {
		if strings.Contains(call, "sensor-b") {
			t.Errorf("edge A's mapper got node B's device: %s", call)
		}
	}

	// The mapper reports; the value reaches Device.status in the apiserver.
	if err := report(t, dmiA, ns, "sensor-a", "temp", "21.5"); err != nil {
		t.Fatal(err)
	}
	if _, err := dmiA.ReportDeviceStates(context.Background(), &pb.ReportDeviceStatesRequest{DeviceName: "sensor-a", DeviceNamespace: ns, State: "online"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the reported value in Device.status", func() (bool, error) {
		st := deviceStatus(t, c.Dynamic, ns, "sensor-a")
		return reported(st, "temp") == "21.5" && st.State == "online", nil
	})
	// Edge A cannot report for node B's device (it is not its member).
	if err := report(t, dmiA, ns, "sensor-b", "temp", "1"); err == nil || !strings.Contains(err.Error(), "not bound to node") {
		t.Errorf("report for another node's device: %v", err)
	}

	// A desired change in the cloud reaches the mapper.
	patchDesired(t, c.Dynamic, ns, "sensor-a", "25")
	mapper.Await(t, "UpdateDevice "+ns+"/sensor-a setpoint=25")

	// cloudcore goes away: reports continue locally, MQTT twin/get is
	// answered, and a desired change made meanwhile arrives afterwards.
	c.stop()
	waitFor(t, 30*time.Second, "edge A to notice the outage", func() (bool, error) { return !a.Hub.IsConnected(), nil })
	if err := report(t, dmiA, ns, "sensor-a", "temp", "19.0"); err != nil {
		t.Fatalf("report while the cloud is down: %v", err)
	}
	got := mqttTwinGet(t, "tcp://"+a.Devices.Bus.InternalAddr(), ns+"/sensor-a")
	if !strings.Contains(got, `"19.0"`) {
		t.Errorf("twin/get with the cloud down: %s", got)
	}
	dyn, err := dynamic.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	patchDesired(t, dyn, ns, "sensor-a", "33")
	c2 := startCloud(t, cp, c.ports)
	mapper.Await(t, "UpdateDevice "+ns+"/sensor-a setpoint=33")
	waitFor(t, 60*time.Second, "the outage's report in Device.status", func() (bool, error) {
		return reported(deviceStatus(t, c2.Dynamic, ns, "sensor-a"), "temp") == "19.0", nil
	})
	if s := c2.Devices.Stats(); s.Writes == 0 {
		t.Errorf("device controller stats %+v", s)
	}
}

// mqttTwinGet asks the edge's broker for a device twin as a device app would.
func mqttTwinGet(t testing.TB, url, id string) string {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("it-app"))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	defer cl.Disconnect(100)
	got := make(chan string, 1)
	if tok := cl.Subscribe("$hw/events/device/"+id+"/twin/get/result", 0, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	b, _ := json.Marshal(map[string]string{"event_id": "it"})
	cl.Publish("$hw/events/device/"+id+"/twin/get", 0, false, b).WaitTimeout(10 * time.Second)
	select {
	case s := <-got:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("no twin/get/result")
		return ""
	}
}
