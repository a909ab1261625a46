package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsageErrors(t *testing.T) {
	var stderr bytes.Buffer
	if err := Main(context.Background(), nil, io.Discard, &stderr); err == nil || !strings.Contains(stderr.String(), "modbus") {
		t.Errorf("no protocol: %v\n%s", err, stderr.String())
	}
	if err := Main(context.Background(), []string{"zigbee"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `unknown protocol "zigbee"`) {
		t.Errorf("unknown protocol: %v", err)
	}
	if err := Main(context.Background(), []string{"modbus", "--socket", ""}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "SocketPath") {
		t.Errorf("bad socket: %v", err)
	}
}

// TestModbusCommand runs the command line as a user would, against a real
// libmodbus slave and a DMI server, and checks the health endpoint.
func TestModbusCommand(t *testing.T) {
	slave := devicepeers.StartModbusTCP(t)
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{{Name: "holding", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 4.0}}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "d", "m", "modbus", map[string]any{"ip": "127.0.0.1", "port": float64(slave.Port)}, props...)})
	health := fmt.Sprintf("127.0.0.1:%d", devicepeers.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"modbus", "--socket", filepath.Join(dir, "modbus.sock"), "--edgecore-socket", ec.Socket, "--health-addr", health, "--log-level", "warn"}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Main: %v", err)
		}
	}()
	mappertest.Eventually(t, 30*time.Second, func() (bool, string) {
		v, e := ec.Reported("default", "d", "holding")
		return v == "1004", fmt.Sprintf("holding %q (%s)", v, e)
	})
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok", "/devices": `"Value":"1004"`} {
		resp, err := http.Get("http://" + health + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s %s", path, resp.Status, body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestSimulatedThermostat: the simulator and the Modbus mapper together, as
// the local try-out runs them.
func TestSimulatedThermostat(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", devicepeers.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- Main(ctx, []string{"simulate-modbus", "--listen", listen}, io.Discard, io.Discard) }()
	defer func() {
		cancel()
		if err := <-simDone; err != nil {
			t.Errorf("simulator: %v", err)
		}
	}()
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{
		{Name: "temperature", Type: "DOUBLE", Access: "ReadOnly", Visitor: map[string]any{"register": "HoldingRegister", "offset": 0.0, "scale": 0.1}},
		{Name: "setpoint", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 1.0}, Desired: "30"},
		{Name: "heating", Type: "BOOLEAN", Access: "ReadOnly", Visitor: map[string]any{"register": "CoilRegister", "offset": 0.0}},
	}
	host, port, _ := strings.Cut(listen, ":")
	var p float64
	fmt.Sscan(port, &p)
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "thermostat", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "thermostat-1", "thermostat", "modbus", map[string]any{"ip": host, "port": p, "slaveID": 1.0}, props...)})
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Main(mctx, []string{"modbus", "--socket", filepath.Join(dir, "modbus.sock"), "--edgecore-socket", ec.Socket, "--health-addr", "", "--log-level", "warn"}, io.Discard, io.Discard)
	}()
	defer func() {
		mcancel()
		if err := <-done; err != nil {
			t.Errorf("mapper: %v", err)
		}
	}()
	for prop, want := range map[string]string{"setpoint": "30", "heating": "true"} {
		mappertest.Eventually(t, 30*time.Second, func() (bool, string) {
			v, e := ec.Reported("default", "thermostat-1", prop)
			return v == want, fmt.Sprintf("%s %q (%s)", prop, v, e)
		})
	}
	mappertest.Eventually(t, 30*time.Second, func() (bool, string) {
		v, e := ec.Reported("default", "thermostat-1", "temperature")
		return strings.HasPrefix(v, "18") || strings.HasPrefix(v, "19"), fmt.Sprintf("temperature %q (%s)", v, e)
	})
}
