package devicepeers

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Mosquitto is an MQTT broker on 127.0.0.1.
type Mosquitto struct {
	*Process
	Port int
}

// URL is the broker address for MQTT clients (tcp://127.0.0.1:PORT).
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.Port) }

// StartMosquitto starts Mosquitto (Debian mosquitto) on a free port with
// anonymous access and no persistence, as in the recipe.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin := lookPath(t, "mosquitto", "mosquitto")
	dir := ShortDir(t)
	port := FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+strconv.Itoa(port)+" 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "mosquitto", nil, "", 10*time.Second, bin, "-c", conf)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return &Mosquitto{Process: p, Port: port}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %d: %v\n%s", port, err, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
