package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/edge/dmi/dmitest"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// deviceRig is cloudcore, one edgecore and a fake mapper registered with it.
type deviceRig struct {
	c      *cloud
	e      *edge
	mapper *dmitest.Mapper
	dmi    pb.DeviceManagerServiceClient
	ns     string
	node   string
}

// benchRuns numbers setups; benchmarks run one at a time.
var benchRuns int

func setupDevices(b *testing.B, node, ns string) *deviceRig {
	b.Helper()
	testenv.Require(b, shared != nil, sharedReason)
	// The benchmark function runs once per b.N tried: fresh names each time.
	benchRuns++
	ns = fmt.Sprintf("%s-%d", ns, benchRuns)
	node = fmt.Sprintf("%s-%d", node, benchRuns)
	r := &deviceRig{ns: ns, node: node}
	r.c = startCloud(b, shared, freePorts(b))
	if _, err := shared.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	r.e = startEdge(b, edgeConfig(b, b.TempDir(), node, r.c.ports, token(b, shared.Client), "websocket"))
	r.e.store(b)
	dir, err := os.MkdirTemp("", "kemap")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	r.mapper = dmitest.Start(b, filepath.Join(dir, "m.sock"))
	r.dmi = dmitest.Dial(b, r.e.cfg.Modules.DMI.Socket)
	waitFor(b, 30*time.Second, "the DMI server", func() (bool, error) {
		_, err := dmitest.Register(context.Background(), r.dmi, "modbus-mapper", "modbus", r.mapper.Socket, true)
		return err == nil, err
	})
	createDeviceObj(b, r.c.Dynamic, testModel(ns))
	return r
}

// BenchmarkDesiredToMapper measures a desired value patched in the
// apiserver until the edge's mapper receives UpdateDevice with it
// (apiserver watch → cloudcore → websocket → MetaManager (SQLite) →
// DeviceTwin → DMI → mapper).
func BenchmarkDesiredToMapper(b *testing.B) {
	r := setupDevices(b, "bench-desired", "bench-desired")
	createDeviceObj(b, r.c.Dynamic, testDevice(r.ns, "dev", r.node, "1"))
	r.mapper.Await(b, "RegisterDevice "+r.ns+"/dev setpoint=1")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		v := strconv.Itoa(i%99 + 2)
		n := r.mapper.Len()
		start := time.Now()
		patchDesired(b, r.c.Dynamic, r.ns, "dev", v)
		at := r.mapper.AwaitAfter(b, n, "UpdateDevice "+r.ns+"/dev setpoint="+v, 60*time.Second)
		lat = append(lat, at.Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func procRSSMB() float64 {
	kb, _ := testenv.ProcStatusKiB(0, "VmRSS")
	return float64(kb) / 1024
}

func procCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Benchmark1000DevicesReporting binds 1000 devices to one edge node whose
// mapper reports a new value for every device every second; one iteration is
// one second. It reports the apiserver status writes per second (the
// DeviceController's token bucket, default 50/s, caps them whatever the
// report rate), the reports per second that reached cloudcore, and the CPU
// and RSS of this process, which runs cloudcore, edgecore and the load
// generator together.
func Benchmark1000DevicesReporting(b *testing.B) {
	const devices = 1000
	r := setupDevices(b, "bench-1k", "bench-1k")
	for i := range devices {
		createDeviceObj(b, r.c.Dynamic, testDevice(r.ns, fmt.Sprintf("d%04d", i), r.node, "10"))
	}
	waitFor(b, 120*time.Second, "all devices at the edge", func() (bool, error) {
		objs, err := r.e.Store.List(context.Background(), "device", r.ns)
		return len(objs) == devices, err
	})
	round := func(k int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < devices; i += 8 {
					if err := report(b, r.dmi, r.ns, fmt.Sprintf("d%04d", i), "temp", fmt.Sprintf("%d.%d", k, i%10)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	round(0)
	s0 := r.c.Devices.Stats()
	cpu0, t0 := procCPU(), time.Now()
	b.ResetTimer()
	next := time.Now()
	for k := 1; k <= b.N; k++ {
		round(k)
		next = next.Add(time.Second)
		time.Sleep(time.Until(next))
	}
	b.StopTimer()
	el := time.Since(t0).Seconds()
	s := r.c.Devices.Stats()
	b.ReportMetric(float64(s.Writes-s0.Writes)/el, "apiserver-writes/s")
	b.ReportMetric(float64(s.Reports-s0.Reports)/el, "cloud-reports/s")
	b.ReportMetric(float64((procCPU()-cpu0).Milliseconds())/el, "cpu-ms/s")
	b.ReportMetric(procRSSMB(), "rss-MB")
}
