package devicepeers

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

//go:embed peers/modbus_slave.c
var modbusSlaveSource []byte

// ModbusSlaveBinary compiles modbus_slave.c (once per source version) into
// _output/devicepeers and returns its path.
func ModbusSlaveBinary(t testing.TB) string {
	t.Helper()
	gcc := lookPath(t, "gcc", "gcc")
	pkgConfig := lookPath(t, "pkg-config", "pkg-config")
	flags, err := exec.Command(pkgConfig, "--cflags", "--libs", "libmodbus").Output()
	testenv.Require(t, err == nil, "libmodbus not found by pkg-config (Debian package libmodbus-dev; hack/install-deps.sh installs it)")
	dir := outputDir(t, "devicepeers")
	bin := filepath.Join(dir, "modbus_slave-"+hashOf(modbusSlaveSource, flags))
	unlock := lockFile(t, filepath.Join(dir, ".modbus.lock"))
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	src := filepath.Join(dir, "modbus_slave.c")
	if err := os.WriteFile(src, modbusSlaveSource, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-O2", "-o", bin + ".tmp", src}, strings.Fields(string(flags))...)
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("compile modbus slave: %v\n%s", err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// ModbusTCP is a libmodbus slave on 127.0.0.1.
type ModbusTCP struct {
	*Process
	Host string
	Port int
}

// Addr is host:port.
func (m *ModbusTCP) Addr() string { return fmt.Sprintf("%s:%d", m.Host, m.Port) }

// Restart stops the slave and starts a fresh one (initial register values)
// on the same port, as a device that rebooted.
func (m *ModbusTCP) Restart(t testing.TB) {
	t.Helper()
	m.Process.Stop()
	p := startMaybe(t, "modbus slave", "READY", 10*time.Second, ModbusSlaveBinary(t), "tcp", m.Host, strconv.Itoa(m.Port))
	if p == nil {
		t.Fatalf("modbus slave: port %d was taken during the restart", m.Port)
	}
	m.Process = p
}

// StartModbusTCP starts a libmodbus TCP slave on a free port.
func StartModbusTCP(t testing.TB) *ModbusTCP {
	t.Helper()
	bin := ModbusSlaveBinary(t)
	for attempt := 0; ; attempt++ {
		port := FreePort(t)
		p := startMaybe(t, "modbus slave", "READY", 10*time.Second, bin, "tcp", "127.0.0.1", strconv.Itoa(port))
		if p != nil {
			return &ModbusTCP{Process: p, Host: "127.0.0.1", Port: port}
		}
		if attempt == 3 {
			t.Fatal("modbus slave: no free port after 4 attempts")
		}
	}
}

// startMaybe is start, returning nil when the process exits early (a port
// taken between FreePort and bind).
func startMaybe(t testing.TB, name, ready string, timeout time.Duration, bin string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lineWriter{p}, lineWriter{p}
	cmd.SysProcAttr = pdeath()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), ready) {
		if p.Exited() {
			if strings.Contains(p.Output(), "listen") {
				return nil
			}
			t.Fatalf("%s exited before it was ready:\n%s", name, p.Output())
		}
		if time.Now().After(deadline) {
			p.Stop()
			t.Fatalf("%s not ready after %v:\n%s", name, timeout, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(p.Stop)
	return p
}

// SerialPair is a socat virtual null-modem: what is written to Master is
// read on Slave and back.
type SerialPair struct {
	*Process
	Master, Slave string
}

// StartSerialPair starts socat with two linked ptys in dir.
func StartSerialPair(t testing.TB, dir string) *SerialPair {
	t.Helper()
	socat := lookPath(t, "socat", "socat")
	m, s := filepath.Join(dir, "ttyM"), filepath.Join(dir, "ttyS")
	p := start(t, "socat", nil, "starting data transfer loop", 10*time.Second, socat, "-d", "-d",
		"pty,raw,echo=0,link="+m, "pty,raw,echo=0,link="+s)
	return &SerialPair{Process: p, Master: m, Slave: s}
}

// ModbusRTU is a libmodbus RTU slave behind a socat pair; the mapper talks
// to Port.
type ModbusRTU struct {
	Slave  *Process
	Serial *SerialPair
	Port   string
	Baud   int
	Unit   int
}

// StartModbusRTU starts a socat pair and a libmodbus RTU slave (unit 1,
// 19200 8N1) on its slave end.
func StartModbusRTU(t testing.TB) *ModbusRTU {
	t.Helper()
	bin := ModbusSlaveBinary(t)
	pair := StartSerialPair(t, ShortDir(t))
	p := start(t, "modbus rtu slave", nil, "READY", 10*time.Second, bin, "rtu", pair.Slave, "19200", "1")
	return &ModbusRTU{Slave: p, Serial: pair, Port: pair.Master, Baud: 19200, Unit: 1}
}
