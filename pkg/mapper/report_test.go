package mapper

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/mapper/mappertest"
)

// blockingClient records reports; the first call waits for release.
type blockingClient struct {
	pb.DeviceManagerServiceClient
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	status  []*pb.ReportDeviceStatusRequest
	states  []*pb.ReportDeviceStatesRequest
}

func (c *blockingClient) wait() { c.once.Do(func() { <-c.release }) }

func (c *blockingClient) ReportDeviceStatus(_ context.Context, in *pb.ReportDeviceStatusRequest, _ ...grpc.CallOption) (*pb.ReportDeviceStatusResponse, error) {
	c.wait()
	c.mu.Lock()
	c.status = append(c.status, proto.Clone(in).(*pb.ReportDeviceStatusRequest))
	c.mu.Unlock()
	return &pb.ReportDeviceStatusResponse{}, nil
}

func (c *blockingClient) ReportDeviceStates(_ context.Context, in *pb.ReportDeviceStatesRequest, _ ...grpc.CallOption) (*pb.ReportDeviceStatesResponse, error) {
	c.wait()
	c.mu.Lock()
	c.states = append(c.states, proto.Clone(in).(*pb.ReportDeviceStatesRequest))
	c.mu.Unlock()
	return &pb.ReportDeviceStatesResponse{}, nil
}

// TestReporterCoalesces: while edgecore is slow, many reports of one device
// become a few calls carrying the newest values.
func TestReporterCoalesces(t *testing.T) {
	cfg := Default("fake")
	cfg.Clock = clock.RealClock{}
	client := &blockingClient{release: make(chan struct{})}
	ready := make(chan struct{})
	close(ready)
	r := newReporter(&cfg, client, ready, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	defer func() { cancel(); <-done }()

	k := keyOf("default", "d")
	r.twins(k, []*pb.Twin{{PropertyName: "p", Reported: &pb.TwinProperty{Value: "0"}}})
	// The first call is now stuck in the client; everything else queues.
	mappertest.Eventually(t, 10*time.Second, func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.pending) == 0, "first report not taken"
	})
	for i := 1; i <= 1000; i++ {
		r.twins(k, []*pb.Twin{{PropertyName: "p", Reported: &pb.TwinProperty{Value: strconv.Itoa(i)}}})
		r.state(k, StateOK)
	}
	r.twins(keyOf("default", "other"), []*pb.Twin{{PropertyName: "q", Reported: &pb.TwinProperty{Value: "x"}}})
	close(client.release)
	mappertest.Eventually(t, 10*time.Second, func() (bool, string) {
		client.mu.Lock()
		defer client.mu.Unlock()
		n := len(client.status)
		return n == 3 && client.status[1].GetReportedDevice().GetTwins()[0].GetReported().GetValue() == "1000",
			"status calls " + strconv.Itoa(n)
	})
	client.mu.Lock()
	defer client.mu.Unlock()
	if len(client.states) != 1 {
		t.Errorf("%d state calls, want 1 (coalesced)", len(client.states))
	}
	if m := r.merged.Load(); m < 1900 {
		t.Errorf("merged %d", m)
	}
}

// FuzzBuildPlan: any device and model edgecore could send (decoded from
// arbitrary protobuf bytes) is parsed without panicking, and a device the
// plan accepts has a driver device.
func FuzzBuildPlan(f *testing.F) {
	d := mappertest.MustDevice(f, "default", "d", "m", "fake", map[string]any{"addr": "a"}, thermoProps...)
	m := mappertest.Model("default", "m", thermoProps...)
	db, _ := proto.Marshal(d)
	mb, _ := proto.Marshal(m)
	f.Add(db, mb)
	f.Add([]byte{}, []byte{})
	f.Add(db, []byte{0x0a, 0x01, 'm'})
	cfg := Default("fake")
	drv := newFakeDriver()
	f.Fuzz(func(t *testing.T, devBytes, modelBytes []byte) {
		var dev pb.Device
		var model pb.DeviceModel
		if proto.Unmarshal(devBytes, &dev) != nil || proto.Unmarshal(modelBytes, &model) != nil {
			return
		}
		p := buildPlan(&cfg, drv, &dev, &model)
		if p.err == nil && p.dev == nil {
			t.Fatal("plan without error has no device")
		}
		_ = desiredOf(&dev)
		_ = sameButDesired(&dev, &dev)
	})
}

// refusingClient refuses states (an edgecore without ReportDeviceStates)
// and answers twins.
type refusingClient struct {
	pb.DeviceManagerServiceClient
	mu     sync.Mutex
	status int
	states int
}

func (c *refusingClient) ReportDeviceStatus(context.Context, *pb.ReportDeviceStatusRequest, ...grpc.CallOption) (*pb.ReportDeviceStatusResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status++
	return &pb.ReportDeviceStatusResponse{}, nil
}

func (c *refusingClient) ReportDeviceStates(context.Context, *pb.ReportDeviceStatesRequest, ...grpc.CallOption) (*pb.ReportDeviceStatesResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states++
	return nil, status.Error(codes.Unimplemented, "method ReportDeviceStates not implemented")
}

// TestReporterDropsRefused: a report edgecore refuses for good is not
// retried forever, and later reports still flow.
func TestReporterDropsRefused(t *testing.T) {
	cfg := Default("fake")
	cfg.Clock = clock.RealClock{}
	client := &refusingClient{}
	ready := make(chan struct{})
	close(ready)
	r := newReporter(&cfg, client, ready, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	defer func() { cancel(); <-done }()
	k := keyOf("default", "d")
	r.twins(k, []*pb.Twin{{PropertyName: "p"}})
	r.state(k, StateOK)
	mappertest.Eventually(t, 10*time.Second, func() (bool, string) {
		client.mu.Lock()
		defer client.mu.Unlock()
		return client.states == 1 && client.status == 1, "no calls yet"
	})
	r.twins(k, []*pb.Twin{{PropertyName: "p"}})
	mappertest.Eventually(t, 10*time.Second, func() (bool, string) {
		client.mu.Lock()
		defer client.mu.Unlock()
		return client.status == 2, "second report not sent"
	})
	client.mu.Lock()
	defer client.mu.Unlock()
	if client.states != 1 {
		t.Errorf("refused state retried: %d calls", client.states)
	}
}
