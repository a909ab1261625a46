package mapper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// Mapper connects one protocol driver to edgecore over DMI.
type Mapper struct {
	cfg    Config
	drv    Driver
	log    *slog.Logger
	clock  clock.WithTicker
	conn   *grpc.ClientConn
	client pb.DeviceManagerServiceClient

	reporter *reporter
	pusher   *pusher

	ready     chan struct{} // closed after the first successful MapperRegister
	readyOnce sync.Once

	// mu guards the device and model tables and serialises lifecycle
	// changes (DMI calls and re-registration), so a device is never started
	// twice. Lock order: mu, then a runner's mu.
	mu      sync.Mutex
	devices map[objKey]*entry          // guarded by mu
	models  map[objKey]*pb.DeviceModel // guarded by mu
	runCtx  context.Context            // set by Run before any DMI call is served; guarded by mu
	stopped bool                       // guarded by mu

	registrations int // successful MapperRegister calls; guarded by mu
}

// entry is a device as edgecore last sent it, and its runner.
type entry struct {
	dev *pb.Device
	r   *runner
}

// New checks cfg and returns a mapper for drv. It does no I/O; Run does.
func New(cfg Config, drv Driver) (*Mapper, error) {
	if drv == nil {
		return nil, errors.New("mapper: nil driver")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("mapper", cfg.Name, "protocol", cfg.Protocol)
	conn, err := grpc.NewClient("unix://"+cfg.EdgecoreSocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: cfg.RetryMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.RetryMax},
			MinConnectTimeout: cfg.CallTimeout,
		}))
	if err != nil {
		return nil, fmt.Errorf("mapper: edgecore client for %s: %w", cfg.EdgecoreSocket, err)
	}
	m := &Mapper{
		cfg:     cfg,
		drv:     drv,
		log:     log,
		clock:   cfg.Clock,
		conn:    conn,
		client:  pb.NewDeviceManagerServiceClient(conn),
		ready:   make(chan struct{}),
		devices: map[objKey]*entry{},
		models:  map[objKey]*pb.DeviceModel{},
	}
	m.reporter = newReporter(&m.cfg, m.client, m.ready, log)
	m.pusher = newPusher(&m.cfg, log)
	return m, nil
}

// Ready is closed once the mapper has registered with edgecore.
func (m *Mapper) Ready() <-chan struct{} { return m.ready }

// Run serves DeviceMapperService, registers with edgecore (retrying while
// it is absent, again whenever it restarts), runs the devices and blocks
// until ctx is done. Shutdown is ordered: stop accepting DMI calls, stop
// every device (closing its connection), flush nothing further, remove the
// socket.
func (m *Mapper) Run(ctx context.Context) error {
	defer m.conn.Close()
	lis, err := listenUnix(m.cfg.SocketPath)
	if err != nil {
		return err
	}
	defer os.Remove(m.cfg.SocketPath)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()

	srv := grpc.NewServer()
	pb.RegisterDeviceMapperServiceServer(srv, &dmiServer{m: m})

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("mapper: serve %s: %w", m.cfg.SocketPath, err)
		}
	}()
	go func() { defer wg.Done(); m.reporter.run(ctx) }()
	go func() { defer wg.Done(); m.pusher.run(ctx) }()
	go func() { defer wg.Done(); m.registerLoop(ctx) }()
	if m.cfg.HealthAddr != "" {
		hs, err := m.startHealth(ctx)
		if err != nil {
			errc <- err
		} else {
			wg.Add(1)
			go func() { defer wg.Done(); hs.wait() }()
		}
	}
	m.log.Info("mapper serving", "socket", m.cfg.SocketPath, "edgecore", m.cfg.EdgecoreSocket)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	m.shutdown(srv)
	wg.Wait()
	m.log.Info("mapper stopped")
	return runErr
}

// shutdown stops DMI calls, then every device.
func (m *Mapper) shutdown(srv *grpc.Server) {
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	t := m.clock.NewTimer(m.cfg.CallTimeout)
	select {
	case <-stopped:
		t.Stop()
	case <-t.C():
		srv.Stop()
		<-stopped
	}
	m.mu.Lock()
	m.stopped = true
	entries := make([]*entry, 0, len(m.devices))
	for _, e := range m.devices {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		if e.r != nil {
			wg.Add(1)
			go func() { defer wg.Done(); e.r.stop() }()
		}
	}
	wg.Wait()
}

// listenUnix listens on path, replacing a stale socket left by a previous
// run (but never a regular file).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("mapper: socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("mapper: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("mapper: remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("mapper: listen %s: %w", path, err)
	}
	return lis, nil
}

// registerLoop registers with edgecore, retrying with back-off, and
// registers again whenever the connection to edgecore comes back after a
// loss (edgecore restarted and forgot us).
func (m *Mapper) registerLoop(ctx context.Context) {
	backoff := m.cfg.RetryMin
	for ctx.Err() == nil {
		err := m.register(ctx)
		if err == nil {
			backoff = m.cfg.RetryMin
			m.readyOnce.Do(func() { close(m.ready) })
			m.waitConnectionLoss(ctx)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Info("edgecore not reachable; will retry", "err", err, "retry", backoff)
		t := m.clock.NewTimer(backoff)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, m.cfg.RetryMax)
	}
}

// waitConnectionLoss returns once the connection to edgecore has failed
// (or gone idle after a failure) and is usable again.
func (m *Mapper) waitConnectionLoss(ctx context.Context) {
	lost := false
	for {
		s := m.conn.GetState()
		switch s {
		case connectivity.Ready:
			if lost {
				return
			}
		case connectivity.Idle:
			// gRPC leaves a broken connection idle until the next call;
			// poke it so that a restarted edgecore is noticed at once.
			lost = true
			m.conn.Connect()
		case connectivity.TransientFailure, connectivity.Connecting:
			lost = true
		case connectivity.Shutdown:
			return
		}
		if !m.conn.WaitForStateChange(ctx, s) {
			return
		}
	}
}

func (m *Mapper) register(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	resp, err := m.client.MapperRegister(cctx, &pb.MapperRegisterRequest{
		WithData: true,
		Mapper: &pb.MapperInfo{
			Name:       m.cfg.Name,
			Version:    m.cfg.Version,
			ApiVersion: m.cfg.APIVersion,
			Protocol:   m.cfg.Protocol,
			Address:    []byte(m.cfg.SocketPath),
			State:      string(StateOK),
		},
	}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("mapper: register with edgecore at %s: %w", m.cfg.EdgecoreSocket, err)
	}
	m.sync(resp.GetModelList(), resp.GetDeviceList())
	m.mu.Lock()
	m.registrations++
	n := len(m.devices)
	m.mu.Unlock()
	m.log.Info("registered with edgecore", "devices", n, "models", len(resp.GetModelList()))
	return nil
}

// sync makes the tables equal to edgecore's lists: it is authoritative after
// a registration.
func (m *Mapper) sync(models []*pb.DeviceModel, devices []*pb.Device) {
	m.mu.Lock()
	defer m.mu.Unlock()
	wantModels := map[objKey]bool{}
	for _, md := range models {
		k := keyOf(md.GetNamespace(), md.GetName())
		wantModels[k] = true
		m.models[k] = md
	}
	for k := range m.models {
		if !wantModels[k] {
			delete(m.models, k)
		}
	}
	want := map[objKey]bool{}
	for _, d := range devices {
		want[keyOf(d.GetNamespace(), d.GetName())] = true
		m.upsertLocked(d)
	}
	for k := range m.devices {
		if !want[k] {
			m.removeLocked(k)
		}
	}
}

// upsertLocked adds or updates a device. A change of desired values only is
// handed to the running device; any other change of the device or of its
// model restarts it. Caller holds mu.
func (m *Mapper) upsertLocked(d *pb.Device) {
	k := keyOf(d.GetNamespace(), d.GetName())
	d = proto.Clone(d).(*pb.Device)
	old := m.devices[k]
	model := m.models[keyOf(d.GetNamespace(), d.GetSpec().GetDeviceModelReference())]
	if old != nil && old.r != nil && sameButDesired(old.dev, d) && proto.Equal(old.r.model, model) {
		old.dev = d
		old.r.setDesired(desiredOf(d))
		return
	}
	if old != nil && old.r != nil {
		old.r.stop()
	}
	e := &entry{dev: d}
	m.devices[k] = e
	if m.runCtx == nil || m.stopped {
		return
	}
	e.r = newRunner(m, buildPlan(&m.cfg, m.drv, d, model), model, desiredOf(d))
	e.r.start(m.runCtx)
}

func (m *Mapper) removeLocked(k objKey) {
	e, ok := m.devices[k]
	if !ok {
		return
	}
	delete(m.devices, k)
	if e.r != nil {
		e.r.stop()
	}
	m.reporter.forget(k)
}

// restartModelUsersLocked restarts the devices referencing model k.
func (m *Mapper) restartModelUsersLocked(k objKey) {
	for dk, e := range m.devices {
		if keyOf(dk.ns, e.dev.GetSpec().GetDeviceModelReference()) == k {
			m.upsertLocked(e.dev)
		}
	}
}

// DeviceStatus is a device's state and twins as the mapper sees them.
type DeviceStatus struct {
	Namespace, Name string
	State           State
	// Message says why the state is not ok.
	Message string
	Twins   []*pb.Twin
}

// Devices returns every device's current status, sorted by key.
func (m *Mapper) Devices() []DeviceStatus {
	m.mu.Lock()
	keys := make([]objKey, 0, len(m.devices))
	for k := range m.devices {
		keys = append(keys, k)
	}
	entries := make(map[objKey]*entry, len(m.devices))
	for k, e := range m.devices {
		entries[k] = e
	}
	m.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	out := make([]DeviceStatus, 0, len(keys))
	for _, k := range keys {
		ds := DeviceStatus{Namespace: k.ns, Name: k.name, State: StateUnknown}
		if r := entries[k].r; r != nil {
			s := r.snapshot()
			ds.State, ds.Message, ds.Twins = s.state, s.err, s.twins
		}
		out = append(out, ds)
	}
	return out
}

// Stats are counters for monitoring and benchmarks.
type Stats struct {
	Registrations                             int
	Devices                                   int
	ReportsSent, ReportsFailed, ReportsMerged int64
	PushSent, PushFailed, PushDropped         int64
}

// Stats returns the mapper's counters.
func (m *Mapper) Stats() Stats {
	m.mu.Lock()
	s := Stats{Registrations: m.registrations, Devices: len(m.devices)}
	m.mu.Unlock()
	s.ReportsSent, s.ReportsFailed, s.ReportsMerged = m.reporter.sent.Load(), m.reporter.failed.Load(), m.reporter.merged.Load()
	s.PushSent, s.PushFailed, s.PushDropped = m.pusher.sent.Load(), m.pusher.failed.Load(), m.pusher.dropped.Load()
	return s
}

// dmiServer implements DeviceMapperService for edgecore.
type dmiServer struct {
	pb.UnimplementedDeviceMapperServiceServer
	m *Mapper
}

var _ pb.DeviceMapperServiceServer = (*dmiServer)(nil)

func (s *dmiServer) RegisterDevice(_ context.Context, req *pb.RegisterDeviceRequest) (*pb.RegisterDeviceResponse, error) {
	d := req.GetDevice()
	if d.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "RegisterDevice: device name is empty")
	}
	s.m.mu.Lock()
	s.m.upsertLocked(d)
	s.m.mu.Unlock()
	k := keyOf(d.GetNamespace(), d.GetName())
	return &pb.RegisterDeviceResponse{DeviceName: k.name, DeviceNamespace: k.ns}, nil
}

func (s *dmiServer) UpdateDevice(_ context.Context, req *pb.UpdateDeviceRequest) (*pb.UpdateDeviceResponse, error) {
	d := req.GetDevice()
	if d.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "UpdateDevice: device name is empty")
	}
	s.m.mu.Lock()
	s.m.upsertLocked(d)
	s.m.mu.Unlock()
	return &pb.UpdateDeviceResponse{}, nil
}

func (s *dmiServer) RemoveDevice(_ context.Context, req *pb.RemoveDeviceRequest) (*pb.RemoveDeviceResponse, error) {
	s.m.mu.Lock()
	s.m.removeLocked(keyOf(req.GetDeviceNamespace(), req.GetDeviceName()))
	s.m.mu.Unlock()
	return &pb.RemoveDeviceResponse{}, nil
}

func (s *dmiServer) CreateDeviceModel(_ context.Context, req *pb.CreateDeviceModelRequest) (*pb.CreateDeviceModelResponse, error) {
	k, err := s.putModel(req.GetModel())
	if err != nil {
		return nil, err
	}
	return &pb.CreateDeviceModelResponse{DeviceModelName: k.name, DeviceModelNamespace: k.ns}, nil
}

func (s *dmiServer) UpdateDeviceModel(_ context.Context, req *pb.UpdateDeviceModelRequest) (*pb.UpdateDeviceModelResponse, error) {
	if _, err := s.putModel(req.GetModel()); err != nil {
		return nil, err
	}
	return &pb.UpdateDeviceModelResponse{}, nil
}

func (s *dmiServer) putModel(md *pb.DeviceModel) (objKey, error) {
	if md.GetName() == "" {
		return objKey{}, status.Error(codes.InvalidArgument, "device model name is empty")
	}
	k := keyOf(md.GetNamespace(), md.GetName())
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if old, ok := s.m.models[k]; ok && proto.Equal(old, md) {
		return k, nil
	}
	s.m.models[k] = proto.Clone(md).(*pb.DeviceModel)
	s.m.restartModelUsersLocked(k)
	return k, nil
}

func (s *dmiServer) RemoveDeviceModel(_ context.Context, req *pb.RemoveDeviceModelRequest) (*pb.RemoveDeviceModelResponse, error) {
	k := keyOf(req.GetModelNamespace(), req.GetModelName())
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, ok := s.m.models[k]; ok {
		delete(s.m.models, k)
		s.m.restartModelUsersLocked(k)
	}
	return &pb.RemoveDeviceModelResponse{}, nil
}

func (s *dmiServer) GetDevice(_ context.Context, req *pb.GetDeviceRequest) (*pb.GetDeviceResponse, error) {
	k := keyOf(req.GetDeviceNamespace(), req.GetDeviceName())
	s.m.mu.Lock()
	e, ok := s.m.devices[k]
	var d *pb.Device
	var r *runner
	if ok {
		d, r = proto.Clone(e.dev).(*pb.Device), e.r
	}
	s.m.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "device %s is not managed by this mapper", k)
	}
	if r != nil {
		d.Status = &pb.DeviceStatus{Twins: r.snapshot().twins}
	}
	return &pb.GetDeviceResponse{Device: d}, nil
}
