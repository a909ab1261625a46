package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	modbusclient "github.com/simonvetter/modbus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/mappers/modbus"
	"github.com/kubeedge-go/kubeedge/internal/mappers/opcua"
	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// runMapper runs a real mapper (the SDK with a real protocol driver, as the
// mapper binary does) registered with edge e's DMI server.
func runMapper(t *testing.T, e *edge, protocol string, driver mapper.Driver) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kemp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mapper.Default(protocol)
	cfg.SocketPath = filepath.Join(dir, protocol+".sock")
	cfg.EdgecoreSocket = e.cfg.Modules.DMI.Socket
	cfg.Logger = testLogger(t, protocol+"-mapper")
	m, err := mapper.New(cfg, driver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s mapper: %v", protocol, err)
		}
		os.RemoveAll(dir)
	})
}

func cv(kv ...any) *v1beta1.CustomizedValue {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return &v1beta1.CustomizedValue{Data: m}
}

func twinOf(st v1beta1.DeviceStatus, prop string) *v1beta1.Twin {
	for i := range st.Twins {
		if st.Twins[i].PropertyName == prop {
			return &st.Twins[i]
		}
	}
	return nil
}

// modbusDevice is a thermometer on input register 3 (read-only, scaled by
// 0.1) and a setpoint on holding register 5 (read-write).
func modbusDevice(ns, name, node string, protocol *v1beta1.CustomizedValue, desired string) *v1beta1.Device {
	return &v1beta1.Device{
		TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1beta1.DeviceSpec{
			NodeName: node, DeviceModelRef: &corev1.LocalObjectReference{Name: "modbus-thermo"},
			Protocol: v1beta1.ProtocolConfig{ProtocolName: "modbus", ConfigData: protocol},
			Properties: []v1beta1.DeviceProperty{
				{Name: "temp", ReportToCloud: true, CollectCycle: 2e8, ReportCycle: 2e8,
					Visitors: v1beta1.VisitorConfig{ProtocolName: "modbus", ConfigData: cv("register", "InputRegister", "offset", float64(3), "limit", float64(1), "scale", 0.1)}},
				{Name: "setpoint", Desired: v1beta1.TwinProperty{Value: desired}, ReportToCloud: true, CollectCycle: 2e8, ReportCycle: 2e8,
					Visitors: v1beta1.VisitorConfig{ProtocolName: "modbus", ConfigData: cv("register", "HoldingRegister", "offset", float64(5), "limit", float64(1))}},
			},
		},
	}
}

func modbusModel(ns string) *v1beta1.DeviceModel {
	return &v1beta1.DeviceModel{
		TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "DeviceModel"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "modbus-thermo"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "modbus", Properties: []v1beta1.ModelProperty{
			{Name: "temp", Type: v1beta1.PropertyTypeFloat, AccessMode: v1beta1.ReadOnly, Unit: "Celsius"},
			{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite, Minimum: "1", Maximum: "2000"},
		}},
	}
}

// TestRealMappersEndToEnd: cloudcore, edgecore and real mappers against
// real devices — a libmodbus slave over TCP and over a socat serial pair,
// and a node-opcua server. Values reported by the devices reach
// Device.status in the real apiserver and follow the devices; desired
// values patched in the cloud are written to the devices; a write to a
// read-only OPC-UA node fails clearly in the status.
func TestRealMappersEndToEnd(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	ns, node := "real-devices", "real-dev"
	mustCreateNS(t, cp.Client, ns)
	e := startEdge(t, edgeConfig(t, t.TempDir(), node, c.ports, token(t, cp.Client), "websocket"))
	waitFor(t, 30*time.Second, "Ready", func() (bool, error) { return nodeReady(cp.Client, node) })
	runMapper(t, e, "modbus", modbus.New())
	createDeviceObj(t, c.Dynamic, modbusModel(ns))

	check := func(t *testing.T, name string, client *modbusclient.ModbusClient) {
		// The slave's input register 3 holds 2003: 200.3 after scaling.
		waitFor(t, 60*time.Second, name+"'s reported temperature", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, name), "temp")
			return tw != nil && strings.HasPrefix(tw.Reported.Value, "200.3"), fmt.Errorf("twin %+v", tw)
		})
		// The desired setpoint of the manifest was written to the slave.
		readHolding := func() (uint16, error) { return client.ReadRegister(5, modbusclient.HOLDING_REGISTER) }
		waitFor(t, 30*time.Second, name+"'s initial desired setpoint at the slave", func() (bool, error) {
			v, err := readHolding()
			return err == nil && v == 30, err
		})
		// The slave's value changes (another master writes it): the twin follows.
		if err := client.WriteRegister(5, 777); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, name+"'s reported setpoint following the slave", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, name), "setpoint")
			return tw != nil && tw.Reported.Value == "777" || tw != nil && tw.Reported.Value == "30", fmt.Errorf("twin %+v", tw)
		})
		// A desired value patched in the cloud reaches the register.
		patchDesired(t, c.Dynamic, ns, name, "1234")
		waitFor(t, 30*time.Second, name+"'s patched desired value at the slave", func() (bool, error) {
			v, err := readHolding()
			return err == nil && v == 1234, err
		})
		waitFor(t, 30*time.Second, name+"'s reported setpoint", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, name), "setpoint")
			return tw != nil && tw.Reported.Value == "1234", fmt.Errorf("twin %+v", tw)
		})
	}

	t.Run("modbus-tcp", func(t *testing.T) {
		slave := devicepeers.StartModbusTCP(t)
		createDeviceObj(t, c.Dynamic, modbusDevice(ns, "tcp-thermo", node,
			cv("ip", slave.Host, "port", float64(slave.Port), "slaveID", float64(1)), "30"))
		client, err := modbusclient.NewClient(&modbusclient.ClientConfiguration{URL: fmt.Sprintf("tcp://%s:%d", slave.Host, slave.Port), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Open(); err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		check(t, "tcp-thermo", client)
	})

	t.Run("modbus-rtu", func(t *testing.T) {
		slave := devicepeers.StartModbusRTU(t)
		createDeviceObj(t, c.Dynamic, modbusDevice(ns, "rtu-thermo", node,
			cv("serialPort", slave.Port, "baudRate", float64(slave.Baud), "dataBits", float64(8), "parity", "none",
				"stopBits", float64(1), "slaveID", float64(slave.Unit)), "30"))
		// The serial line has one master: check the slave through the
		// mapper's view only, by the status (the register is the device's).
		waitFor(t, 60*time.Second, "rtu-thermo's reported temperature", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "rtu-thermo"), "temp")
			return tw != nil && strings.HasPrefix(tw.Reported.Value, "200.3"), fmt.Errorf("twin %+v", tw)
		})
		waitFor(t, 60*time.Second, "rtu-thermo's setpoint read back from the slave", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "rtu-thermo"), "setpoint")
			return tw != nil && tw.Reported.Value == "30", fmt.Errorf("twin %+v", tw)
		})
		patchDesired(t, c.Dynamic, ns, "rtu-thermo", "1500")
		waitFor(t, 60*time.Second, "rtu-thermo's patched setpoint read back from the slave", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "rtu-thermo"), "setpoint")
			return tw != nil && tw.Reported.Value == "1500", fmt.Errorf("twin %+v", tw)
		})
	})

	t.Run("opcua", func(t *testing.T) {
		srv := devicepeers.StartOPCUA(t)
		runMapper(t, e, "opcua", opcua.New())
		model := &v1beta1.DeviceModel{
			TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "DeviceModel"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opcua-pump"},
			Spec: v1beta1.DeviceModelSpec{Protocol: "opcua", Properties: []v1beta1.ModelProperty{
				{Name: "temperature", Type: v1beta1.PropertyTypeDouble, AccessMode: v1beta1.ReadOnly},
				{Name: "setpoint", Type: v1beta1.PropertyTypeInt, AccessMode: v1beta1.ReadWrite},
				// Declared writable here, but the server's node is read-only.
				{Name: "name", Type: v1beta1.PropertyTypeString, AccessMode: v1beta1.ReadWrite},
			}},
		}
		createDeviceObj(t, c.Dynamic, model)
		prop := func(name, nodeID, desired string) v1beta1.DeviceProperty {
			return v1beta1.DeviceProperty{Name: name, Desired: v1beta1.TwinProperty{Value: desired}, ReportToCloud: true,
				CollectCycle: 2e8, ReportCycle: 2e8,
				Visitors: v1beta1.VisitorConfig{ProtocolName: "opcua", ConfigData: cv("nodeID", nodeID)}}
		}
		createDeviceObj(t, c.Dynamic, &v1beta1.Device{
			TypeMeta:   metav1.TypeMeta{APIVersion: "devices.kubeedge.io/v1beta1", Kind: "Device"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pump"},
			Spec: v1beta1.DeviceSpec{
				NodeName: node, DeviceModelRef: &corev1.LocalObjectReference{Name: "opcua-pump"},
				Protocol: v1beta1.ProtocolConfig{ProtocolName: "opcua", ConfigData: cv("url", srv.URL(), "securityPolicy", "None", "securityMode", "None")},
				Properties: []v1beta1.DeviceProperty{
					prop("temperature", "ns=1;s=Temperature", ""),
					prop("setpoint", "ns=1;s=Setpoint", "42"),
					prop("name", "ns=1;s=Name", "renamed"),
				},
			},
		})
		waitFor(t, 90*time.Second, "the pump's temperature", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "pump"), "temperature")
			if tw == nil {
				return false, nil
			}
			v, err := strconv.ParseFloat(tw.Reported.Value, 64)
			return err == nil && v > 21 && v < 30, fmt.Errorf("twin %+v", tw)
		})
		waitFor(t, 60*time.Second, "the desired setpoint written and read back", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "pump"), "setpoint")
			return tw != nil && tw.Reported.Value == "42", fmt.Errorf("twin %+v", tw)
		})
		waitFor(t, 60*time.Second, "a clear error for the read-only node", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "pump"), "name")
			if tw == nil {
				return false, nil
			}
			msg := fmt.Sprint(tw.ObservedDesired.Metadata, tw.Reported.Metadata)
			return strings.Contains(msg, "BadNotWritable") || strings.Contains(msg, "not writable"), fmt.Errorf("twin %+v", tw)
		})
		if tw := twinOf(deviceStatus(t, c.Dynamic, ns, "pump"), "name"); tw.Reported.Value != "pump-1" {
			t.Errorf("the read-only node reads %q, want the server's pump-1", tw.Reported.Value)
		}
		patchDesired(t, c.Dynamic, ns, "pump", "7") // property 1: setpoint
		waitFor(t, 60*time.Second, "the patched setpoint", func() (bool, error) {
			tw := twinOf(deviceStatus(t, c.Dynamic, ns, "pump"), "setpoint")
			return tw != nil && tw.Reported.Value == "7", fmt.Errorf("twin %+v", tw)
		})
	})
}
