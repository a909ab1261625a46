// Package mappertest helps test mappers end to end: Edgecore is a real gRPC
// DeviceManagerService on a unix socket that records what a mapper reports,
// and the builders make DMI devices and models the way edgecore sends them.
package mappertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// Edgecore is a stand-in for edgecore's DMI server. It answers
// MapperRegister with the devices and models set by SetDevices and records
// every report. Safe for concurrent use.
type Edgecore struct {
	pb.UnimplementedDeviceManagerServiceServer
	Socket string

	mu       sync.Mutex
	srv      *grpc.Server                   // guarded by mu
	done     chan struct{}                  // closed when srv's Serve returns; guarded by mu
	models   []*pb.DeviceModel              // guarded by mu
	devices  []*pb.Device                   // guarded by mu
	mappers  []*pb.MapperInfo               // every MapperRegister; guarded by mu
	twins    map[string]map[string]*pb.Twin // by "ns/name", property; guarded by mu
	states   map[string]string              // guarded by mu
	reports  int                            // ReportDeviceStatus calls; guarded by mu
	stateLog map[string][]string            // every state reported, in order; guarded by mu
	conn     *grpc.ClientConn               // to the mapper; guarded by mu
}

// ShortDir returns a new temporary directory short enough for unix sockets
// (t.TempDir paths can pass the 108-byte limit), removed at cleanup.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ke")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// StartEdgecore serves DeviceManagerService on dir/dmi.sock until cleanup.
func StartEdgecore(t testing.TB, dir string) *Edgecore {
	t.Helper()
	e := &Edgecore{Socket: filepath.Join(dir, "dmi.sock"), twins: map[string]map[string]*pb.Twin{}, states: map[string]string{}, stateLog: map[string][]string{}}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		e.mu.Lock()
		if e.conn != nil {
			e.conn.Close()
		}
		e.mu.Unlock()
	})
	return e
}

// Start (re)starts serving; recorded reports are kept, as a restarted
// edgecore keeps its database.
func (e *Edgecore) Start() error {
	_ = os.Remove(e.Socket)
	lis, err := net.Listen("unix", e.Socket)
	if err != nil {
		return fmt.Errorf("edgecore listen: %w", err)
	}
	srv := grpc.NewServer()
	pb.RegisterDeviceManagerServiceServer(srv, e)
	done := make(chan struct{})
	e.mu.Lock()
	e.srv, e.done = srv, done
	e.mu.Unlock()
	go func() { defer close(done); _ = srv.Serve(lis) }()
	return nil
}

// Stop stops serving (as if edgecore went away); Start brings it back.
func (e *Edgecore) Stop() {
	e.mu.Lock()
	srv, done := e.srv, e.done
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-done
	}
}

// SetDevices sets what MapperRegister returns.
func (e *Edgecore) SetDevices(models []*pb.DeviceModel, devices []*pb.Device) {
	e.mu.Lock()
	e.models, e.devices = models, devices
	e.mu.Unlock()
}

// MapperRegister implements DeviceManagerService.
func (e *Edgecore) MapperRegister(_ context.Context, req *pb.MapperRegisterRequest) (*pb.MapperRegisterResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mappers = append(e.mappers, proto.Clone(req.GetMapper()).(*pb.MapperInfo))
	if !req.GetWithData() {
		return &pb.MapperRegisterResponse{}, nil
	}
	return &pb.MapperRegisterResponse{ModelList: e.models, DeviceList: e.devices}, nil
}

// ReportDeviceStatus implements DeviceManagerService.
func (e *Edgecore) ReportDeviceStatus(_ context.Context, req *pb.ReportDeviceStatusRequest) (*pb.ReportDeviceStatusResponse, error) {
	k := req.GetDeviceNamespace() + "/" + req.GetDeviceName()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reports++
	m := e.twins[k]
	if m == nil {
		m = map[string]*pb.Twin{}
		e.twins[k] = m
	}
	for _, t := range req.GetReportedDevice().GetTwins() {
		m[t.GetPropertyName()] = proto.Clone(t).(*pb.Twin)
	}
	return &pb.ReportDeviceStatusResponse{}, nil
}

// ReportDeviceStates implements DeviceManagerService.
func (e *Edgecore) ReportDeviceStates(_ context.Context, req *pb.ReportDeviceStatesRequest) (*pb.ReportDeviceStatesResponse, error) {
	k := req.GetDeviceNamespace() + "/" + req.GetDeviceName()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.states[k] = req.GetState()
	e.stateLog[k] = append(e.stateLog[k], req.GetState())
	return &pb.ReportDeviceStatesResponse{}, nil
}

// Registrations returns every MapperRegister seen.
func (e *Edgecore) Registrations() []*pb.MapperInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*pb.MapperInfo(nil), e.mappers...)
}

// Twin returns the newest twin reported for a property.
func (e *Edgecore) Twin(ns, name, prop string) (*pb.Twin, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.twins[ns+"/"+name][prop]
	return t, ok
}

// Reported returns the newest reported value and error metadata of a property.
func (e *Edgecore) Reported(ns, name, prop string) (value, errMsg string) {
	t, ok := e.Twin(ns, name, prop)
	if !ok {
		return "", ""
	}
	return t.GetReported().GetValue(), t.GetReported().GetMetadata()["error"]
}

// State returns the newest state reported for a device.
func (e *Edgecore) State(ns, name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.states[ns+"/"+name]
}

// StateLog returns every state reported for a device, in order.
func (e *Edgecore) StateLog(ns, name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.stateLog[ns+"/"+name]...)
}

// Reports returns how many ReportDeviceStatus calls arrived.
func (e *Edgecore) Reports() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reports
}

// Mapper returns a client of the DeviceMapperService at the address the
// newest registration gave, as edgecore would dial it.
func (e *Edgecore) Mapper(t testing.TB) pb.DeviceMapperServiceClient {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.mappers) == 0 {
		t.Fatal("mappertest: no mapper has registered")
	}
	if e.conn == nil {
		addr := string(e.mappers[len(e.mappers)-1].GetAddress())
		conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		e.conn = conn
	}
	return pb.NewDeviceMapperServiceClient(e.conn)
}

// Eventually polls cond until it returns true or timeout passes, then fails
// the test with cond's last description.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Prop describes one property for Model and Device.
type Prop struct {
	Name string
	// Type and Access go to the model (Access "" = ReadWrite).
	Type, Access     string
	Minimum, Maximum string
	// Visitor is the visitor configData (JSON-like values, as in a
	// manifest).
	Visitor map[string]any
	// Desired value, "" for none.
	Desired string
	// CollectCycle and ReportCycle in nanoseconds, 0 for the default.
	CollectCycle, ReportCycle time.Duration
	PushMethod                *pb.PushMethod
}

// Model builds a DeviceModel.
func Model(ns, name string, props ...Prop) *pb.DeviceModel {
	m := &pb.DeviceModel{Name: name, Namespace: ns, Spec: &pb.DeviceModelSpec{}}
	for _, p := range props {
		access := p.Access
		if access == "" {
			access = "ReadWrite"
		}
		m.Spec.Properties = append(m.Spec.Properties, &pb.ModelProperty{Name: p.Name, Type: p.Type, AccessMode: access, Minimum: p.Minimum, Maximum: p.Maximum})
	}
	return m
}

// Device builds a Device the way edgecore converts a Device CRD: configData
// values wrapped by convert.ToAny (JSON numbers as float64 first).
func Device(ns, name, model, protocol string, config map[string]any, props ...Prop) (*pb.Device, error) {
	cd, err := convert.ToAnyMap(config)
	if err != nil {
		return nil, err
	}
	d := &pb.Device{Name: name, Namespace: ns, Spec: &pb.DeviceSpec{
		DeviceModelReference: model,
		Protocol:             &pb.ProtocolConfig{ProtocolName: protocol, ConfigData: &pb.CustomizedValue{Data: cd}},
	}}
	for _, p := range props {
		vd, err := convert.ToAnyMap(p.Visitor)
		if err != nil {
			return nil, fmt.Errorf("property %s: %w", p.Name, err)
		}
		dp := &pb.DeviceProperty{
			Name:          p.Name,
			Visitors:      &pb.VisitorConfig{ProtocolName: protocol, ConfigData: &pb.CustomizedValue{Data: vd}},
			CollectCycle:  int64(p.CollectCycle),
			ReportCycle:   int64(p.ReportCycle),
			ReportToCloud: true,
			PushMethod:    p.PushMethod,
		}
		if p.Desired != "" {
			dp.Desired = &pb.TwinProperty{Value: p.Desired}
		}
		d.Spec.Properties = append(d.Spec.Properties, dp)
	}
	return d, nil
}

// MustDevice is Device that fails the test on error.
func MustDevice(t testing.TB, ns, name, model, protocol string, config map[string]any, props ...Prop) *pb.Device {
	t.Helper()
	d, err := Device(ns, name, model, protocol, config, props...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// WithDesired returns a copy of d with property prop's desired value set.
func WithDesired(d *pb.Device, prop, value string) (*pb.Device, error) {
	c := proto.Clone(d).(*pb.Device)
	for _, p := range c.GetSpec().GetProperties() {
		if p.GetName() == prop {
			p.Desired = &pb.TwinProperty{Value: value}
			return c, nil
		}
	}
	return nil, errors.New("mappertest: no property " + prop)
}
