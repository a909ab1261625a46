package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Mosquitto is a running Mosquitto broker on 127.0.0.1.
type Mosquitto struct {
	// URL is tcp://127.0.0.1:PORT, for paho.
	URL  string
	Addr string
	proc *process
	dir  string
	conf string
	bin  string
}

// StartMosquitto starts Mosquitto (Debian package mosquitto, see
// hack/install-deps.sh) on a free port on 127.0.0.1 and stops it by PID when
// the test ends. Without the binary the test is skipped (failed under
// KUBEEDGE_REQUIRE_ALL=1).
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	Require(t, err == nil, "mosquitto is not installed (hack/install-deps.sh installs the Debian package)")
	dir, err := os.MkdirTemp("", "kemq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	m := &Mosquitto{URL: "tcp://127.0.0.1:" + strconv.Itoa(port), Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, bin: bin,
		conf: filepath.Join(dir, "mosquitto.conf")}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n", port)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// Start (re)starts the broker on the same port and waits until it accepts
// connections.
func (m *Mosquitto) Start() error {
	p, err := startProcess("mosquitto", m.bin, []string{"-c", m.conf}, filepath.Join(m.dir, "mosquitto.log"), false)
	if err != nil {
		return err
	}
	m.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.Addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if p.exited() {
			log, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			return fmt.Errorf("mosquitto exited: %v\n%s", p.err, log)
		}
		if time.Now().After(deadline) {
			m.Stop()
			return fmt.Errorf("mosquitto not accepting on %s within 15 s", m.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the broker (SIGTERM, then SIGKILL) and waits for it.
func (m *Mosquitto) Stop() {
	if m.proc != nil {
		m.proc.stop(5 * time.Second)
	}
}
