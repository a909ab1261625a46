package ble

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

const wait = 30 * time.Second

const (
	envService  = "0000181a-0000-1000-8000-00805f9b34fb" // Environmental Sensing
	tempChar    = "00002a6e-0000-1000-8000-00805f9b34fb" // Temperature
	batteryChar = "00002a19-0000-1000-8000-00805f9b34fb" // Battery Level
	ledChar     = "7e57ab1e-0000-4000-8000-00000000a001"
	serialChar  = "7e57ab1e-0000-4000-8000-00000000a002"
)

func runMapper(t *testing.T, ec *mappertest.Edgecore, dir string) {
	t.Helper()
	cfg := mapper.Default(Protocol)
	cfg.SocketPath = filepath.Join(dir, "ble.sock")
	cfg.EdgecoreSocket = ec.Socket
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.DefaultCollectCycle, cfg.DefaultReportCycle = 100*time.Millisecond, 100*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := mapper.New(cfg, New())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mapper: %v", err)
		}
	})
}

func reported(ec *mappertest.Edgecore, dev, prop, want string) func() (bool, string) {
	return func() (bool, string) {
		v, e := ec.Reported("default", dev, prop)
		return v == want && e == "", fmt.Sprintf("%s.%s = %q (error %q), want %q", dev, prop, v, e, want)
	}
}

func stateIn(ec *mappertest.Edgecore, dev string, want ...mapper.State) func() (bool, string) {
	return func() (bool, string) {
		s := ec.State("default", dev)
		for _, w := range want {
			if s == string(w) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s state %q, want %v", dev, s, want)
	}
}

// TestSimulatedBlueZ runs the BLE mapper against the simulated BlueZ on a
// private dbus-daemon (no Bluetooth in this kernel; see devicepeers.BlueZ).
func TestSimulatedBlueZ(t *testing.T) {
	bz := devicepeers.StartBlueZ(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bz.Address)
	temp := &devicepeers.FakeChar{UUID: tempChar, Flags: []string{"read", "notify"}, Init: []byte{0x66, 0x08}} // 21.50 °C
	battery := &devicepeers.FakeChar{UUID: batteryChar, Flags: []string{"read"}, Init: []byte{87}}
	led := &devicepeers.FakeChar{UUID: ledChar, Flags: []string{"read", "write"}, Init: []byte{0}}
	serial := &devicepeers.FakeChar{UUID: serialChar, Flags: []string{"read"}, Init: []byte("SN-0042")}
	sensor := bz.AddDevice("C0:FF:EE:00:00:01", "sensor", false,
		devicepeers.FakeService{UUID: envService, Chars: []*devicepeers.FakeChar{temp, battery}},
		devicepeers.FakeService{UUID: "7e57ab1e-0000-4000-8000-00000000a000", Chars: []*devicepeers.FakeChar{led, serial}})
	hiddenBattery := &devicepeers.FakeChar{UUID: batteryChar, Flags: []string{"read"}, Init: []byte{12}}
	bz.AddDevice("C0:FF:EE:00:00:02", "far-away", true, devicepeers.FakeService{UUID: "0000180f-0000-1000-8000-00805f9b34fb", Chars: []*devicepeers.FakeChar{hiddenBattery}})

	props := []mappertest.Prop{
		{Name: "temperature", Type: "DOUBLE", Access: "ReadOnly", CollectCycle: time.Hour,
			Visitor: map[string]any{"characteristicUUID": tempChar, "serviceUUID": envService, "dataFormat": "int16le", "scale": 0.01, "notify": true}},
		{Name: "battery", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"characteristicUUID": "2a19"}},
		{Name: "led", Type: "BOOLEAN", Visitor: map[string]any{"characteristicUUID": ledChar}, Desired: "true"},
		{Name: "serial", Type: "STRING", Visitor: map[string]any{"characteristicUUID": serialChar}, Desired: "SN-9999"},
	}
	model := mappertest.Model("default", "sensor", props...)
	dev := mappertest.MustDevice(t, "default", "sensor1", "sensor", Protocol, map[string]any{"macAddress": "c0:ff:ee:00:00:01", "timeout": 5000.0}, props...)
	far := mappertest.MustDevice(t, "default", "far", "sensor", Protocol, map[string]any{"macAddress": "C0:FF:EE:00:00:02"}, props[1])
	missing := mappertest.MustDevice(t, "default", "missing", "sensor", Protocol, map[string]any{"macAddress": "C0:FF:EE:00:00:99", "timeout": 300.0}, props[1])
	ec := mappertest.StartEdgecore(t, devicepeers.ShortDir(t))
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{dev, far, missing})
	runMapper(t, ec, devicepeers.ShortDir(t))

	mappertest.Eventually(t, wait, reported(ec, "sensor1", "temperature", "21.5"))
	mappertest.Eventually(t, wait, reported(ec, "sensor1", "battery", "87"))
	// The desired value was written to the characteristic.
	mappertest.Eventually(t, wait, func() (bool, string) {
		v := led.Value()
		return len(v) == 1 && v[0] == 1, fmt.Sprintf("led characteristic %v", v)
	})
	mappertest.Eventually(t, wait, reported(ec, "sensor1", "led", "true"))
	// A characteristic without the write flag refuses: clear error.
	mappertest.Eventually(t, wait, func() (bool, string) {
		tw, _ := ec.Twin("default", "sensor1", "serial")
		e := tw.GetObservedDesired().GetMetadata()["error"]
		return strings.Contains(e, "Write not permitted") && strings.Contains(e, serialChar), "serial write error " + e
	})
	// Notifications update the twin without polling (collectCycle 1h).
	temp.SetValue([]byte{0x2c, 0x09}) // 23.48
	mappertest.Eventually(t, wait, reported(ec, "sensor1", "temperature", "23.48"))
	// The hidden device is found by discovery; the absent one is offline.
	mappertest.Eventually(t, wait, reported(ec, "far", "battery", "12"))
	mappertest.Eventually(t, wait, stateIn(ec, "missing", mapper.StateOffline))
	mappertest.Eventually(t, wait, func() (bool, string) {
		_, e := ec.Reported("default", "missing", "battery")
		return strings.Contains(e, "not found by hci0"), "missing error " + e
	})
	mappertest.Eventually(t, wait, stateIn(ec, "sensor1", mapper.StateOK))

	// UpdateDevice changes the desired value.
	upd, _ := mappertest.WithDesired(dev, "led", "false")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		v := led.Value()
		return len(v) == 1 && v[0] == 0, fmt.Sprintf("led characteristic %v", v)
	})

	// The link drops: disconnected, then reconnected with notifications
	// re-enabled.
	before := sensor.Connects()
	sensor.Drop()
	mappertest.Eventually(t, wait, func() (bool, string) { return sensor.Connects() > before, "no reconnect" })
	mappertest.Eventually(t, wait, func() (bool, string) {
		for _, s := range ec.StateLog("default", "sensor1") {
			if s == string(mapper.StateDisconnected) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("states %v", ec.StateLog("default", "sensor1"))
	})
	mappertest.Eventually(t, wait, stateIn(ec, "sensor1", mapper.StateOK))
	temp.SetValue([]byte{0x00, 0x0a}) // 25.60
	mappertest.Eventually(t, wait, reported(ec, "sensor1", "temperature", "25.6"))
}

// TestRealAdapter needs Bluetooth hardware: set KUBEEDGE_BLE_DEVICE to the
// MAC address of a peripheral with a readable Battery Level characteristic.
func TestRealAdapter(t *testing.T) {
	mac := os.Getenv("KUBEEDGE_BLE_DEVICE")
	if mac == "" {
		t.Skip("needs Bluetooth hardware (an adapter and a peripheral): set KUBEEDGE_BLE_DEVICE=MAC; this machine's kernel has no Bluetooth")
	}
	ec := mappertest.StartEdgecore(t, devicepeers.ShortDir(t))
	props := []mappertest.Prop{{Name: "battery", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"characteristicUUID": "2a19"}}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "real", "m", Protocol, map[string]any{"macAddress": mac}, props...)})
	runMapper(t, ec, devicepeers.ShortDir(t))
	mappertest.Eventually(t, time.Minute, func() (bool, string) {
		v, e := ec.Reported("default", "real", "battery")
		return v != "", "battery " + e
	})
}
