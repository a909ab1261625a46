package dmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// Twin is what the DMI server needs from DeviceTwin.
type Twin interface {
	Device(ctx context.Context, id string) (devicetwin.DeviceView, bool, error)
	Devices(ctx context.Context) ([]devicetwin.DeviceView, error)
	ReportTwins(ctx context.Context, id string, reports []devicetwin.Report) error
	ReportState(ctx context.Context, id, state string) error
}

// Config configures the server.
type Config struct {
	// Socket is the unix socket path of DeviceManagerService.
	Socket string
	// ReportQPS and ReportBurst limit each mapper's reports.
	ReportQPS   float64
	ReportBurst int
	// RetryInitial and RetryMax bound the back-off of pushes to a mapper.
	RetryInitial, RetryMax time.Duration
	// CallTimeout bounds one call to a mapper.
	CallTimeout time.Duration
}

// Deps are the server's collaborators.
type Deps struct {
	Twin   Twin
	Logger *slog.Logger
}

// Stats counts the server's work.
type Stats struct {
	Registrations, Reports, ReportsRefused, RateLimited int64
	Pushes, PushFailures                                int64
}

// Server is the DMI server.
type Server struct {
	pb.UnimplementedDeviceManagerServiceServer
	cfg  Config
	deps Deps
	log  *slog.Logger

	ready chan struct{}

	mu       sync.Mutex
	mappers  map[string]*mapper // guarded by mu; by protocol
	protocol map[string]string  // guarded by mu; device id → protocol, as last seen
	runCtx   context.Context    // guarded by mu; set by Run
	wg       sync.WaitGroup     // mapper workers

	registrations, reports, refused, limited, pushes, pushFailures atomic.Int64
}

var _ pb.DeviceManagerServiceServer = (*Server)(nil)

// New validates cfg; nothing listens until Run.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Twin == nil {
		return nil, errors.New("dmi: Twin is required")
	}
	if cfg.Socket == "" || !filepath.IsAbs(cfg.Socket) {
		return nil, fmt.Errorf("dmi: socket %q must be an absolute path", cfg.Socket)
	}
	if len(cfg.Socket) > 107 {
		return nil, fmt.Errorf("dmi: socket path %q is %d bytes; unix sockets allow 107", cfg.Socket, len(cfg.Socket))
	}
	if cfg.ReportQPS <= 0 {
		cfg.ReportQPS = 1000
	}
	if cfg.ReportBurst <= 0 {
		cfg.ReportBurst = 2000
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 200 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = max(10*time.Second, cfg.RetryInitial)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Server{cfg: cfg, deps: deps, log: deps.Logger.With("component", "dmi"), ready: make(chan struct{}),
		mappers: map[string]*mapper{}, protocol: map[string]string{}}, nil
}

// Ready is closed once the socket listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Registrations: s.registrations.Load(), Reports: s.reports.Load(), ReportsRefused: s.refused.Load(),
		RateLimited: s.limited.Load(), Pushes: s.pushes.Load(), PushFailures: s.pushFailures.Load()}
}

// Run serves on the socket until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.cfg.Socket), 0o755); err != nil {
		return fmt.Errorf("dmi: %w", err)
	}
	// A socket left by a killed edgecore would make Listen fail; anything
	// else at the path is not ours to remove.
	if fi, err := os.Lstat(s.cfg.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("dmi: %s exists and is not a socket", s.cfg.Socket)
		}
		_ = os.Remove(s.cfg.Socket)
	}
	l, err := net.Listen("unix", s.cfg.Socket)
	if err != nil {
		return fmt.Errorf("dmi: listen on %s: %w", s.cfg.Socket, err)
	}
	defer os.Remove(s.cfg.Socket)
	gs := grpc.NewServer()
	pb.RegisterDeviceManagerServiceServer(gs, s)
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	s.log.Info("DMI server listening", "socket", s.cfg.Socket)
	close(s.ready)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	s.mu.Lock()
	for _, m := range s.mappers {
		m.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("dmi: serve: %w", err)
	}
	return nil
}

// DeviceChanged tells the server that the mapper view of device id may have
// changed (DeviceTwin's Changed hook); it never blocks.
func (s *Server) DeviceChanged(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.mappers {
		m.mark(id)
	}
}

// MapperRegister records a mapper and returns its devices and models. A
// mapper registering again (or another one for the same protocol) replaces
// the earlier registration.
func (s *Server) MapperRegister(ctx context.Context, req *pb.MapperRegisterRequest) (*pb.MapperRegisterResponse, error) {
	info := req.GetMapper()
	if info == nil {
		return nil, status.Error(codes.InvalidArgument, "mapper is missing")
	}
	addr := string(info.GetAddress())
	switch {
	case info.GetName() == "":
		return nil, status.Error(codes.InvalidArgument, "mapper.name is empty")
	case info.GetProtocol() == "":
		return nil, status.Errorf(codes.InvalidArgument, "mapper %q: protocol is empty", info.GetName())
	case !filepath.IsAbs(addr) || len(addr) > 107:
		return nil, status.Errorf(codes.InvalidArgument, "mapper %q: address %q must be the absolute path of its unix socket (at most 107 bytes)", info.GetName(), addr)
	}
	views, err := s.deps.Twin.Devices(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "device twin: %v", err)
	}
	conn, err := grpc.NewClient("unix:"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mapper %q: address %q: %v", info.GetName(), addr, err)
	}
	m := newMapper(s, info.GetName(), info.GetProtocol(), addr, conn)
	resp := &pb.MapperRegisterResponse{}
	models := map[string]bool{}
	for _, v := range views {
		s.rememberProtocol(v)
		if !m.serves(v) {
			continue
		}
		dev, err := deviceToDMI(v)
		if err != nil {
			s.log.Warn("device cannot be given to its mapper", "device", v.ID, "err", err)
			continue
		}
		mk := v.Model.Namespace + "/" + v.Model.Name
		if !models[mk] {
			models[mk] = true
			model := modelToDMI(v.Model)
			if req.GetWithData() {
				resp.ModelList = append(resp.ModelList, model)
				m.sentModel[mk] = fingerprint(model)
			}
		}
		if req.GetWithData() {
			resp.DeviceList = append(resp.DeviceList, dev)
			m.sentDev[v.ID] = sentDevice{hash: fingerprint(dev), model: mk}
		}
	}
	s.mu.Lock()
	runCtx := s.runCtx
	old := s.mappers[m.protocol]
	for p, o := range s.mappers {
		if o.name == m.name && p != m.protocol {
			o.stop()
			delete(s.mappers, p)
		}
	}
	s.mappers[m.protocol] = m
	m.all = true // check everything against what the answer gave it
	if runCtx != nil {
		m.start(runCtx)
	}
	s.mu.Unlock()
	if old != nil {
		old.stop()
		s.log.Info("mapper registered again; the earlier registration is replaced", "mapper", m.name, "protocol", m.protocol, "previous", old.name)
	}
	s.registrations.Add(1)
	s.log.Info("mapper registered", "mapper", m.name, "protocol", m.protocol, "address", addr, "devices", len(resp.DeviceList))
	return resp, nil
}

func (s *Server) rememberProtocol(v devicetwin.DeviceView) {
	s.mu.Lock()
	s.protocol[v.ID] = v.Device.Spec.Protocol.ProtocolName
	s.mu.Unlock()
}

// limiterFor returns the limiter of the mapper serving device id.
func (s *Server) limiterFor(id string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.mappers[s.protocol[id]]; m != nil {
		return m.limiter
	}
	return nil
}

func (s *Server) admit(id string) error {
	if l := s.limiterFor(id); l != nil && !l.Allow() {
		s.limited.Add(1)
		return status.Errorf(codes.ResourceExhausted, "too many reports from the mapper of device %s (limit %.0f/s, burst %d)", id, s.cfg.ReportQPS, s.cfg.ReportBurst)
	}
	return nil
}

func twinError(err error) error {
	var ue *devicetwin.UpdateError
	if errors.As(err, &ue) {
		switch ue.Code() {
		case devicetwin.CodeNotFound:
			return status.Error(codes.NotFound, ue.Reason)
		case devicetwin.CodeConflict:
			return status.Error(codes.Aborted, ue.Reason)
		}
		return status.Error(codes.InvalidArgument, ue.Reason)
	}
	return status.Errorf(codes.Unavailable, "not stored: %v", err)
}

// ReportDeviceStatus stores a mapper's reported twins; on success they are
// durable at the edge and on their way to the cloud.
func (s *Server) ReportDeviceStatus(ctx context.Context, req *pb.ReportDeviceStatusRequest) (*pb.ReportDeviceStatusResponse, error) {
	s.reports.Add(1)
	id, err := deviceID(req.GetDeviceNamespace(), req.GetDeviceName())
	if err != nil {
		s.refused.Add(1)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.admit(id); err != nil {
		return nil, err
	}
	reps, err := reportsFromDMI(req.GetReportedDevice())
	if err != nil {
		s.refused.Add(1)
		return nil, status.Errorf(codes.InvalidArgument, "device %s: %v", id, err)
	}
	if err := s.deps.Twin.ReportTwins(ctx, id, reps); err != nil {
		s.refused.Add(1)
		return nil, twinError(err)
	}
	return &pb.ReportDeviceStatusResponse{}, nil
}

// ReportDeviceStates stores a device state reported by its mapper.
func (s *Server) ReportDeviceStates(ctx context.Context, req *pb.ReportDeviceStatesRequest) (*pb.ReportDeviceStatesResponse, error) {
	s.reports.Add(1)
	id, err := deviceID(req.GetDeviceNamespace(), req.GetDeviceName())
	if err != nil {
		s.refused.Add(1)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.admit(id); err != nil {
		return nil, err
	}
	if err := s.deps.Twin.ReportState(ctx, id, req.GetState()); err != nil {
		s.refused.Add(1)
		return nil, twinError(err)
	}
	return &pb.ReportDeviceStatesResponse{}, nil
}
