package modbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/testenv/devicepeers"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

func percentiles(b *testing.B, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	b.ReportMetric(float64(at(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(at(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op") // the percentiles are the result; a mean would hide the tail
}

// BenchmarkReadLatency: one holding-register read through the driver
// against the libmodbus slave over TCP on loopback.
func BenchmarkReadLatency(b *testing.B) {
	slave := devicepeers.StartModbusTCP(b)
	cfg, _ := convert.ToAnyMap(map[string]any{"ip": "127.0.0.1", "port": float64(slave.Port)})
	vis, _ := convert.ToAnyMap(map[string]any{"register": "HoldingRegister", "offset": 0.0})
	drv := New()
	dev, err := drv.NewDevice(mapper.DeviceSpec{ConfigData: cfg})
	if err != nil {
		b.Fatal(err)
	}
	v, err := drv.ParseVisitor(mapper.PropertySpec{Name: "p", Type: convert.TypeInt, VisitorConfig: vis})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := dev.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := dev.Read(ctx, v); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	percentiles(b, lat)
}

// BenchmarkDesiredWriteLatency: from UpdateDevice with a new desired value
// at the mapper's DMI socket until an independent client reads that value
// from the slave's register.
func BenchmarkDesiredWriteLatency(b *testing.B) {
	slave := devicepeers.StartModbusTCP(b)
	dir := devicepeers.ShortDir(b)
	ec := mappertest.StartEdgecore(b, dir)
	props := []mappertest.Prop{{Name: "setpoint", Type: "INT", Visitor: map[string]any{"register": "HoldingRegister", "offset": 40.0}, CollectCycle: time.Second}}
	dev := mappertest.MustDevice(b, "default", "d", "m", Protocol, map[string]any{"ip": "127.0.0.1", "port": float64(slave.Port)}, props...)
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)}, []*pb.Device{dev})
	cfg := mapper.Default(Protocol)
	cfg.SocketPath = filepath.Join(dir, "modbus.sock")
	cfg.EdgecoreSocket = ec.Socket
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := mapper.New(cfg, New())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	mappertest.Eventually(b, 30*time.Second, func() (bool, string) {
		v, _ := ec.Reported("default", "d", "setpoint")
		return v == "1040", "setpoint " + v
	})
	chk, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + slave.Addr(), Timeout: time.Second, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	if err := chk.Open(); err != nil {
		b.Fatal(err)
	}
	defer chk.Close()
	client := ec.Mapper(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		want := uint16(i%60000 + 1)
		upd, _ := mappertest.WithDesired(dev, "setpoint", strconv.Itoa(int(want)))
		t0 := time.Now()
		if _, err := client.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: upd}); err != nil {
			b.Fatal(err)
		}
		for {
			v, err := chk.ReadRegister(40, mb.HOLDING_REGISTER)
			if err != nil {
				b.Fatal(err)
			}
			if v == want {
				break
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("register 40 = %d, want %d after 10s", v, want)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	percentiles(b, lat)
}

// Benchmark1000Devices runs the real mapper binary with 1,000 Modbus TCP
// devices (4 libmodbus slaves, 250 connections each), each reading a
// changing input register every second and reporting every second, for
// MAPPER_BENCH_SECONDS (default 30) after all are reporting, and reports
// the mapper process's CPU (% of one core) and RSS. MAPPER_BENCH_QPS sets
// the mapper's report rate limit (default 2000, enough for every report).
// b.N is ignored: one measurement window per run.
func Benchmark1000Devices(b *testing.B) {
	const devices, slaves = 1000, 4
	window := 30 * time.Second
	if s := os.Getenv("MAPPER_BENCH_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		window = time.Duration(n) * time.Second
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 4096 {
		lim.Cur = min(lim.Max, 8192)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) // inherited by the mapper and slaves
	}
	qps := "2000"
	if s := os.Getenv("MAPPER_BENCH_QPS"); s != "" {
		qps = s
	}
	bin := buildMapper(b)
	var ports []int
	for range slaves {
		ports = append(ports, devicepeers.StartModbusTCP(b).Port)
	}
	dir := devicepeers.ShortDir(b)
	ec := mappertest.StartEdgecore(b, dir)
	props := []mappertest.Prop{{Name: "seconds", Type: "INT", Access: "ReadOnly", Visitor: map[string]any{"register": "InputRegister", "offset": 99.0},
		CollectCycle: time.Second, ReportCycle: time.Second}}
	var devs []*pb.Device
	for i := range devices {
		devs = append(devs, mappertest.MustDevice(b, "default", fmt.Sprintf("dev-%04d", i), "m", Protocol,
			map[string]any{"ip": "127.0.0.1", "port": float64(ports[i%slaves])}, props...))
	}
	ec.SetDevices([]*pb.DeviceModel{mappertest.Model("default", "m", props...)}, devs)
	cmd := exec.Command(bin, "modbus", "--socket", filepath.Join(dir, "modbus.sock"), "--edgecore-socket", ec.Socket,
		"--health-addr", "", "--report-qps", qps, "--report-burst", qps, "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	mappertest.Eventually(b, 2*time.Minute, func() (bool, string) {
		n := 0
		for i := range devices {
			if v, _ := ec.Reported("default", fmt.Sprintf("dev-%04d", i), "seconds"); v != "" {
				n++
			}
		}
		return n == devices, fmt.Sprintf("%d/%d devices reporting", n, devices)
	})
	b.ResetTimer()
	cpu0, t0, reports0 := procCPU(b, cmd.Process.Pid), time.Now(), ec.Reports()
	time.Sleep(window) // the measurement window itself, not a wait for state
	cpu1, t1, reports1 := procCPU(b, cmd.Process.Pid), time.Now(), ec.Reports()
	b.StopTimer()
	b.ReportMetric(100*(cpu1-cpu0).Seconds()/t1.Sub(t0).Seconds(), "cpu-%")
	b.ReportMetric(float64(procRSS(b, cmd.Process.Pid))/(1<<20), "rss-MiB")
	b.ReportMetric(float64(reports1-reports0)/t1.Sub(t0).Seconds(), "reports/s")
	b.ReportMetric(0, "ns/op")
}

func buildMapper(b *testing.B) string {
	b.Helper()
	wd, _ := os.Getwd()
	root, err := testenv.RepoRoot(wd)
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(root, "_output", "bin", "mapper")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mapper")
	build.Dir = root
	out, err := build.CombinedOutput()
	if err != nil {
		b.Fatalf("build mapper: %v\n%s", err, out)
	}
	return bin
}

// procCPU is the user+system CPU time of pid.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// procRSS is the resident set size of pid in bytes.
func procRSS(b *testing.B, pid int) int64 {
	kb, err := testenv.ProcStatusKiB(pid, "VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	return kb << 10
}
