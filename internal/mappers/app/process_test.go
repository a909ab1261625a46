package app

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

// TestBinary runs the built mapper binary (make build) as a process: it
// registers, reports a real slave's register, and on SIGTERM exits 0 and
// removes its socket.
func TestBinary(t *testing.T) {
	wd, _ := os.Getwd()
	root, err := testenv.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "_output", "bin", "mapper")
	fi, err := os.Stat(bin)
	testenv.Require(t, err == nil && fi.Mode()&0o111 != 0, fmt.Sprintf("%s not built: run make build", bin))

	slave := devicepeers.StartModbusTCP(t)
	dir := devicepeers.ShortDir(t)
	ec := mappertest.StartEdgecore(t, dir)
	props := []mappertest.Prop{{Name: "holding", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 8.0}}}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)},
		[]*pb.Device{mappertest.MustDevice(t, "default", "d", "m", "modbus", map[string]any{"ip": "127.0.0.1", "port": float64(slave.Port), "slaveID": 1.0}, props...)})
	sock := filepath.Join(dir, "modbus.sock")
	cmd := exec.Command(bin, "modbus", "--socket", sock, "--edgecore-socket", ec.Socket, "--health-addr", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, "mapper.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	mappertest.Eventually(t, 30*time.Second, func() (bool, string) {
		v, e := ec.Reported("default", "d", "holding")
		return v == "1008", fmt.Sprintf("holding %q (%s)", v, e)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "mapper.log"))
			t.Fatalf("mapper exited with %v:\n%s", err, log)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mapper did not exit within 30s of SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s still there after shutdown: %v", sock, err)
	}
}
