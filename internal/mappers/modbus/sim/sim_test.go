package sim

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"
	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestThermostatDrifts(t *testing.T) {
	c := clocktesting.NewFakeClock(time.Unix(0, 0))
	th := New(c)
	read := func() []uint16 {
		r, err := th.HandleHoldingRegisters(&mb.HoldingRegistersRequest{Addr: 0, Quantity: 2})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := read(); r[0] != 180 || r[1] != 21 {
		t.Fatalf("initial %v", r)
	}
	c.Step(5 * time.Second)
	if r := read(); r[0] != 185 {
		t.Errorf("after 5 s %v", r)
	}
	if _, err := th.HandleHoldingRegisters(&mb.HoldingRegistersRequest{Addr: 1, Quantity: 1, IsWrite: true, Args: []uint16{18}}); err != nil {
		t.Fatal(err)
	}
	c.Step(10 * time.Second)
	if r := read(); r[0] != 180 {
		t.Errorf("cooling to 18 °C: %v", r)
	}
	if _, err := th.HandleHoldingRegisters(&mb.HoldingRegistersRequest{Addr: 0, Quantity: 1, IsWrite: true, Args: []uint16{1}}); err != mb.ErrIllegalDataAddress {
		t.Errorf("writing the temperature: %v", err)
	}
	if _, err := th.HandleHoldingRegisters(&mb.HoldingRegistersRequest{Addr: 1, Quantity: 1, IsWrite: true, Args: []uint16{99}}); err != mb.ErrIllegalDataValue {
		t.Errorf("setpoint 99: %v", err)
	}
}

// TestServeWithMbpoll checks the simulator with an independent client.
func TestServeWithMbpoll(t *testing.T) {
	mbpoll, err := exec.LookPath("mbpoll")
	testenv.Require(t, err == nil, "mbpoll not found (Debian package mbpoll; hack/install-deps.sh installs it)")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, fmt.Sprintf("127.0.0.1:%d", port), New(nil)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var out []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = exec.Command(mbpoll, "-m", "tcp", "-p", fmt.Sprint(port), "-a", "1", "-r", "1", "-c", "2", "-t", "4", "-1", "127.0.0.1").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(out), "[2]: \t21") {
		t.Fatalf("mbpoll: %v\n%s", err, out)
	}
}
