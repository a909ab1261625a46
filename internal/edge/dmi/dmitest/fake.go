// Package dmitest provides a fake mapper for tests of the DMI server: a
// real DeviceMapperService on a unix socket that records every call.
package dmitest

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// Mapper is a fake mapper. Calls are recorded as "RegisterDevice ns/name
// prop=desired,...", "UpdateDevice ...", "RemoveDevice ns/name",
// "CreateDeviceModel ns/name", "UpdateDeviceModel ns/name",
// "RemoveDeviceModel ns/name".
type Mapper struct {
	pb.UnimplementedDeviceMapperServiceServer
	Socket string
	gs     *grpc.Server
	mu     sync.Mutex
	log    []string
	at     []time.Time
}

// Start serves a fake mapper on sock until Stop or the end of the test.
func Start(t testing.TB, sock string) *Mapper {
	t.Helper()
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	m := &Mapper{Socket: sock, gs: grpc.NewServer()}
	pb.RegisterDeviceMapperServiceServer(m.gs, m)
	go func() { _ = m.gs.Serve(l) }()
	t.Cleanup(m.Stop)
	return m
}

// Stop ends the mapper (as if it died).
func (m *Mapper) Stop() { m.gs.Stop() }

func (m *Mapper) record(s string) {
	m.mu.Lock()
	m.log = append(m.log, s)
	m.at = append(m.at, time.Now())
	m.mu.Unlock()
}

// Calls returns the calls so far.
func (m *Mapper) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

// CallTime returns when the first call equal to want arrived, polling
// until timeout; the test fails if it never does.
func (m *Mapper) CallTime(t testing.TB, want string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m.mu.Lock()
		for i, c := range m.log {
			if c == want {
				at := m.at[i]
				m.mu.Unlock()
				return at
			}
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("mapper never got %q; calls: %q", want, m.Calls())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Await waits until the mapper got want.
func (m *Mapper) Await(t testing.TB, want string) { t.Helper(); m.CallTime(t, want, 30*time.Second) }

// Desired renders a device's desired values as "prop=value,...".
func Desired(d *pb.Device) string {
	var parts []string
	for _, p := range d.GetSpec().GetProperties() {
		if p.GetDesired() != nil {
			parts = append(parts, p.GetName()+"="+p.GetDesired().GetValue())
		}
	}
	return strings.Join(parts, ",")
}

func id(ns, name string) string { return ns + "/" + name }

// RegisterDevice implements DeviceMapperService.
func (m *Mapper) RegisterDevice(_ context.Context, r *pb.RegisterDeviceRequest) (*pb.RegisterDeviceResponse, error) {
	m.record("RegisterDevice " + id(r.GetDevice().GetNamespace(), r.GetDevice().GetName()) + " " + Desired(r.GetDevice()))
	return &pb.RegisterDeviceResponse{DeviceName: r.GetDevice().GetName(), DeviceNamespace: r.GetDevice().GetNamespace()}, nil
}

// UpdateDevice implements DeviceMapperService.
func (m *Mapper) UpdateDevice(_ context.Context, r *pb.UpdateDeviceRequest) (*pb.UpdateDeviceResponse, error) {
	m.record("UpdateDevice " + id(r.GetDevice().GetNamespace(), r.GetDevice().GetName()) + " " + Desired(r.GetDevice()))
	return &pb.UpdateDeviceResponse{}, nil
}

// RemoveDevice implements DeviceMapperService.
func (m *Mapper) RemoveDevice(_ context.Context, r *pb.RemoveDeviceRequest) (*pb.RemoveDeviceResponse, error) {
	m.record("RemoveDevice " + id(r.GetDeviceNamespace(), r.GetDeviceName()))
	return &pb.RemoveDeviceResponse{}, nil
}

// CreateDeviceModel implements DeviceMapperService.
func (m *Mapper) CreateDeviceModel(_ context.Context, r *pb.CreateDeviceModelRequest) (*pb.CreateDeviceModelResponse, error) {
	m.record("CreateDeviceModel " + id(r.GetModel().GetNamespace(), r.GetModel().GetName()))
	return &pb.CreateDeviceModelResponse{}, nil
}

// UpdateDeviceModel implements DeviceMapperService.
func (m *Mapper) UpdateDeviceModel(_ context.Context, r *pb.UpdateDeviceModelRequest) (*pb.UpdateDeviceModelResponse, error) {
	m.record("UpdateDeviceModel " + id(r.GetModel().GetNamespace(), r.GetModel().GetName()))
	return &pb.UpdateDeviceModelResponse{}, nil
}

// RemoveDeviceModel implements DeviceMapperService.
func (m *Mapper) RemoveDeviceModel(_ context.Context, r *pb.RemoveDeviceModelRequest) (*pb.RemoveDeviceModelResponse, error) {
	m.record("RemoveDeviceModel " + id(r.GetModelNamespace(), r.GetModelName()))
	return &pb.RemoveDeviceModelResponse{}, nil
}

// Dial returns a DeviceManagerService client of the DMI server at sock.
func Dial(t testing.TB, sock string) pb.DeviceManagerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewDeviceManagerServiceClient(conn)
}

// Register registers a mapper for protocol serving at addr.
func Register(ctx context.Context, c pb.DeviceManagerServiceClient, name, protocol, addr string, withData bool) (*pb.MapperRegisterResponse, error) {
	return c.MapperRegister(ctx, &pb.MapperRegisterRequest{WithData: withData,
		Mapper: &pb.MapperInfo{Name: name, Protocol: protocol, Address: []byte(addr)}})
}

// Len is the number of calls so far.
func (m *Mapper) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.log)
}

// AwaitAfter waits for a call equal to want among the calls after the
// first n and returns when it arrived.
func (m *Mapper) AwaitAfter(t testing.TB, n int, want string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m.mu.Lock()
		for i := n; i < len(m.log); i++ {
			if m.log[i] == want {
				at := m.at[i]
				m.mu.Unlock()
				return at
			}
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("mapper never got %q after call %d; calls: %q", want, n, m.Calls())
		}
		time.Sleep(time.Millisecond)
	}
}
