package modbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

const wait = 30 * time.Second

// runMapper runs the Modbus mapper against a test edgecore until the test ends.
func runMapper(t *testing.T, ec *mappertest.Edgecore, dir string) *mapper.Mapper {
	t.Helper()
	cfg := mapper.Default(Protocol)
	cfg.SocketPath = filepath.Join(dir, "modbus.sock")
	cfg.EdgecoreSocket = ec.Socket
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
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
	return m
}

// checker is an independent Modbus TCP client, to look at the slave
// without going through the mapper.
func checker(t *testing.T, addr string) *mb.ModbusClient {
	t.Helper()
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 2 * time.Second, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func reported(ec *mappertest.Edgecore, dev, prop, want string) func() (bool, string) {
	return func() (bool, string) {
		v, e := ec.Reported("default", dev, prop)
		return v == want && e == "", fmt.Sprintf("%s.%s = %q (error %q), want %q", dev, prop, v, e, want)
	}
}

func state(ec *mappertest.Edgecore, dev string, want ...mapper.State) func() (bool, string) {
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

func errorContains(ec *mappertest.Edgecore, dev, prop string, observed bool, want ...string) func() (bool, string) {
	return func() (bool, string) {
		tw, _ := ec.Twin("default", dev, prop)
		e := tw.GetReported().GetMetadata()["error"]
		if observed {
			e = tw.GetObservedDesired().GetMetadata()["error"]
		}
		for _, w := range want {
			if !strings.Contains(e, w) {
				return false, fmt.Sprintf("%s.%s error %q lacks %q", dev, prop, e, w)
			}
		}
		return true, ""
	}
}

var tcpProps = []mappertest.Prop{
	{Name: "holding", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"register": "HoldingRegister", "offset": 0.0, "limit": 1.0}},
	{Name: "input", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"register": "InputRegister", "offset": 1.0}},
	{Name: "coil", Type: "BOOLEAN", Visitor: map[string]any{"register": "CoilRegister", "offset": 1.0}},
	{Name: "discrete", Type: "BOOLEAN", Access: "ReadOnly", Visitor: map[string]any{"register": "DiscreteInputRegister", "offset": 0.0}},
	{Name: "scaled", Type: "DOUBLE", Access: "ReadOnly", Visitor: map[string]any{"register": "HoldingRegister", "offset": 2.0, "scale": 0.1}},
	{Name: "wide", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"register": "HoldingRegister", "offset": 20.0, "limit": 2.0, "isRegisterSwap": true}},
	{Name: "setpoint", Type: "INT", Minimum: "0", Maximum: "60000", Visitor: map[string]any{"register": "HoldingRegister", "offset": 10.0}, Desired: "4242"},
	{Name: "inputwrite", Type: "INT", Visitor: map[string]any{"register": "InputRegister", "offset": 3.0}, Desired: "7"},
}

func TestTCPEndToEnd(t *testing.T) {
	slave := devicepeers.StartModbusTCP(t)
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	cfg := map[string]any{"ip": "127.0.0.1", "port": float64(slave.Port), "slaveID": 1.0}
	model := mappertest.Model("default", "plc", tcpProps...)
	good := mappertest.MustDevice(t, "default", "plc1", "plc", Protocol, cfg, tcpProps...)
	exc := mappertest.MustDevice(t, "default", "plc-bad-address", "plc", Protocol, cfg,
		mappertest.Prop{Name: "holding", Visitor: map[string]any{"register": "HoldingRegister", "offset": 150.0}})
	absent := mappertest.MustDevice(t, "default", "plc-absent", "plc", Protocol,
		map[string]any{"ip": "127.0.0.1", "port": float64(devicepeers.FreePort(t)), "slaveID": 1.0}, tcpProps[0])
	typo := mappertest.MustDevice(t, "default", "plc-typo", "plc", Protocol,
		map[string]any{"ip": "127.0.0.1", "prot": float64(slave.Port)}, tcpProps[0])
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{good, exc, absent, typo})
	runMapper(t, ec, dir)

	// Values as the slave holds them (holding 1000+i, input 2000+i,
	// coils i%2, discrete (i+1)%2).
	for prop, want := range map[string]string{"holding": "1000", "input": "2001", "coil": "true", "discrete": "true", "scaled": "100.2", "wide": fmt.Sprint(1021<<16 | 1020)} {
		mappertest.Eventually(t, wait, reported(ec, "plc1", prop, want))
	}
	// The desired value reached the slave: check with an independent client.
	chk := checker(t, slave.Addr())
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := chk.ReadRegister(10, mb.HOLDING_REGISTER)
		return err == nil && v == 4242, fmt.Sprintf("holding 10 = %d, %v", v, err)
	})
	mappertest.Eventually(t, wait, reported(ec, "plc1", "setpoint", "4242"))
	// An input register cannot be written: clear error, nothing else breaks.
	mappertest.Eventually(t, wait, errorContains(ec, "plc1", "inputwrite", true, "InputRegister offset 3", "read-only"))

	// Twins track the slave's registers.
	if err := chk.WriteRegister(0, 1234); err != nil {
		t.Fatal(err)
	}
	if err := chk.WriteCoil(1, false); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reported(ec, "plc1", "holding", "1234"))
	mappertest.Eventually(t, wait, reported(ec, "plc1", "coil", "false"))

	// A desired value changed through UpdateDevice reaches the register.
	upd, _ := mappertest.WithDesired(good, "setpoint", "777")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := chk.ReadRegister(10, mb.HOLDING_REGISTER)
		return err == nil && v == 777, fmt.Sprintf("holding 10 = %d, %v", v, err)
	})
	mbpoll, err := exec.LookPath("mbpoll")
	testenv.Require(t, err == nil, "mbpoll not found (Debian package mbpoll; hack/install-deps.sh installs it)")
	{
		out, err := exec.Command(mbpoll, "-m", "tcp", "-p", fmt.Sprint(slave.Port), "-a", "1", "-r", "11", "-c", "1", "-t", "4", "-1", "127.0.0.1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "[11]: \t777") {
			t.Errorf("mbpoll does not see 777 in holding register 11 (1-based): %v\n%s", err, out)
		}
	}

	// A Modbus exception is the property's error; the device is unhealthy,
	// the others are unaffected.
	mappertest.Eventually(t, wait, errorContains(ec, "plc-bad-address", "holding", false, "illegal data address", "HoldingRegister offset 150"))
	mappertest.Eventually(t, wait, state(ec, "plc-bad-address", mapper.StateUnhealthy))
	mappertest.Eventually(t, wait, state(ec, "plc-absent", mapper.StateOffline))
	mappertest.Eventually(t, wait, errorContains(ec, "plc-absent", "holding", false, "connection refused"))
	mappertest.Eventually(t, wait, errorContains(ec, "plc-typo", "holding", false, `"prot": convert: unknown key`, `"port": convert: missing key`))
	mappertest.Eventually(t, wait, state(ec, "plc-typo", mapper.StateUnknown))
	mappertest.Eventually(t, wait, state(ec, "plc1", mapper.StateOK))

	// A slave that stops answering: requests time out, the device is
	// reported disconnected/offline; when it answers again, ok.
	if err := slave.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, state(ec, "plc1", mapper.StateDisconnected, mapper.StateOffline))
	mappertest.Eventually(t, wait, errorContains(ec, "plc1", "holding", false, "no answer within"))
	if err := slave.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, state(ec, "plc1", mapper.StateOK))
	if err := chk.Close(); err != nil {
		t.Log(err)
	}
	chk = checker(t, slave.Addr())
	if err := chk.WriteRegister(0, 4321); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reported(ec, "plc1", "holding", "4321"))

	// The slave reboots with its initial registers: the mapper reconnects
	// and writes the desired value again.
	slave.Restart(t)
	mappertest.Eventually(t, wait, reported(ec, "plc1", "holding", "1000"))
	chk = checker(t, slave.Addr())
	mappertest.Eventually(t, wait, func() (bool, string) {
		v, err := chk.ReadRegister(10, mb.HOLDING_REGISTER)
		return err == nil && v == 777, fmt.Sprintf("holding 10 = %d, %v after the slave restarted", v, err)
	})
	mappertest.Eventually(t, wait, state(ec, "plc1", mapper.StateOK))
}

func TestRTUEndToEnd(t *testing.T) {
	rtu := devicepeers.StartModbusRTU(t)
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{
		{Name: "holding", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"register": "HoldingRegister", "offset": 5.0}},
		{Name: "setpoint", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 6.0}, Desired: "99"},
		{Name: "float", Type: "FLOAT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 30.0, "limit": 2.0}, Desired: "21.5"},
	}
	cfg := func(slave float64) map[string]any {
		return map[string]any{"serialPort": rtu.Port, "baudRate": float64(rtu.Baud), "dataBits": 8.0, "parity": "none", "stopBits": 1.0, "slaveID": slave, "timeout": 300.0}
	}
	model := mappertest.Model("default", "rtu-model", props...)
	dev := mappertest.MustDevice(t, "default", "rtu1", "rtu-model", Protocol, cfg(1), props...)
	// Same serial port, a unit nobody answers for: only it times out.
	silent := mappertest.MustDevice(t, "default", "rtu-silent", "rtu-model", Protocol, cfg(7), props[0])
	ec.SetDevices([]*pb.DeviceModel{model}, []*pb.Device{dev, silent})
	runMapper(t, ec, dir)

	mappertest.Eventually(t, wait, reported(ec, "rtu1", "holding", "1005"))
	mappertest.Eventually(t, wait, reported(ec, "rtu1", "setpoint", "99"))
	mappertest.Eventually(t, wait, reported(ec, "rtu1", "float", "21.5"))
	mappertest.Eventually(t, wait, state(ec, "rtu-silent", mapper.StateDisconnected, mapper.StateOffline))
	mappertest.Eventually(t, wait, errorContains(ec, "rtu-silent", "holding", false, "slave 7", "no answer within"))
	mappertest.Eventually(t, wait, state(ec, "rtu1", mapper.StateOK))

	upd, _ := mappertest.WithDesired(dev, "setpoint", "123")
	if _, err := ec.Mapper(t).UpdateDevice(context.Background(), &pb.UpdateDeviceRequest{Device: upd}); err != nil {
		t.Fatal(err)
	}
	mappertest.Eventually(t, wait, reported(ec, "rtu1", "setpoint", "123"))
}
