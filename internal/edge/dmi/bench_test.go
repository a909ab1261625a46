package dmi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/edge/dmi/dmitest"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/wire"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// ackingUplink acknowledges every upstream batch at once, like a cloud that
// is never behind.
type ackingUplink struct {
	dt      *devicetwin.DeviceTwin
	mu      sync.Mutex
	devices int
}

func (u *ackingUplink) Send(_ context.Context, m wire.Message) error {
	b, err := wire.DecodeDeviceReport(m.Content)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.devices += len(b.Devices)
	u.mu.Unlock()
	u.dt.HandleAck(wire.NewAck(time.Now(), "cloudhub", m))
	return nil
}

func rssMB() float64 {
	kb, _ := testenv.ProcStatusKiB(0, "VmRSS")
	return float64(kb) / 1024
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEdge1000Devices runs DeviceTwin on SQLite behind the DMI server
// with 1000 devices whose mapper reports a new value for each every second;
// one benchmark iteration is one second of that load. It reports the CPU
// used per second of load (DeviceTwin, DMI server, SQLite and the load
// generator's gRPC client, all in this process), RSS, and the reports per
// second that reached the (always acknowledging) uplink.
func BenchmarkEdge1000Devices(b *testing.B) {
	const devices = 1000
	dir, err := os.MkdirTemp("", "kebench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := store.Open(context.Background(), filepath.Join(dir, "edge.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	put(b, s, nil, devicetwin.TypeDeviceModel, model, model)
	for i := range devices {
		d := dev(fmt.Sprintf("d%04d", i), "modbus", "20")
		put(b, s, nil, devicetwin.TypeDevice, d, d)
	}
	up := &ackingUplink{}
	dt, err := devicetwin.New(devicetwin.Config{NodeName: "node-a"}, devicetwin.Deps{Store: s, Uplink: up, Clock: clock.RealClock{}})
	if err != nil {
		b.Fatal(err)
	}
	up.dt = dt
	sock := filepath.Join(dir, "dmi.sock")
	srv, err := New(Config{Socket: sock}, Deps{Twin: dt})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = dt.Run(ctx) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	<-srv.Ready()
	dt.SetConnected(true)
	c := dmitest.Dial(b, sock)
	if _, err := dmitest.Register(ctx, c, "bench", "modbus", filepath.Join(dir, "mapper.sock"), false); err != nil {
		b.Fatal(err)
	}
	const senders = 8
	round := func(r int) {
		var sw sync.WaitGroup
		for w := range senders {
			sw.Add(1)
			go func() {
				defer sw.Done()
				for i := w; i < devices; i += senders {
					v := fmt.Sprintf("%d.%d", r, i%10)
					if _, err := c.ReportDeviceStatus(ctx, &pb.ReportDeviceStatusRequest{DeviceName: fmt.Sprintf("d%04d", i), DeviceNamespace: "default",
						ReportedDevice: &pb.DeviceStatus{Twins: []*pb.Twin{{PropertyName: "temp", Reported: &pb.TwinProperty{Value: v}}}}}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		sw.Wait()
	}
	round(0) // warm up
	up.mu.Lock()
	sent0 := up.devices
	up.mu.Unlock()
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	next := time.Now()
	for r := 1; r <= b.N; r++ {
		round(r)
		next = next.Add(time.Second)
		time.Sleep(time.Until(next))
	}
	b.StopTimer()
	elapsed := time.Since(t0)
	cpu := cpuTime() - cpu0
	up.mu.Lock()
	sent := up.devices - sent0
	up.mu.Unlock()
	b.ReportMetric(float64(cpu.Milliseconds())/elapsed.Seconds(), "cpu-ms/s")
	b.ReportMetric(rssMB(), "rss-MB")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "uplinked-reports/s")
	st := dt.Stats()
	b.ReportMetric(float64(st.Commits)/elapsed.Seconds(), "commits/s")
}
