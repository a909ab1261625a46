package devicepeers

import (
	"os"
	"testing"
)

func TestModbusPeers(t *testing.T) {
	tcp := StartModbusTCP(t)
	if tcp.Port == 0 || tcp.PID() == 0 {
		t.Fatalf("%+v", tcp)
	}
	rtu := StartModbusRTU(t)
	if _, err := os.Stat(rtu.Port); err != nil {
		t.Fatal(err)
	}
}

func TestOPCUAPeer(t *testing.T) {
	s := StartOPCUA(t)
	if s.PID() == 0 {
		t.Fatal("no pid")
	}
	s.Restart()
	if s.Exited() {
		t.Fatal(s.Output())
	}
}
