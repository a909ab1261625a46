package dmi

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// sentDevice is what a mapper last got for a device.
type sentDevice struct {
	hash  string
	model string // namespace/name of its model
}

// mapper is one registered mapper and its push worker.
type mapper struct {
	s        *Server
	name     string
	protocol string
	addr     string
	conn     *grpc.ClientConn
	client   pb.DeviceMapperServiceClient
	limiter  *rate.Limiter

	mu     sync.Mutex
	dirty  map[string]bool // guarded by mu; device ids to check
	all    bool            // guarded by mu; check every device
	signal chan struct{}

	// Owned by the worker (or by MapperRegister before the worker starts).
	sentDev   map[string]sentDevice
	sentModel map[string]string

	cancel context.CancelFunc
	done   chan struct{}
}

func newMapper(s *Server, name, protocol, addr string, conn *grpc.ClientConn) *mapper {
	return &mapper{
		s: s, name: name, protocol: protocol, addr: addr, conn: conn, client: pb.NewDeviceMapperServiceClient(conn),
		limiter: rate.NewLimiter(rate.Limit(s.cfg.ReportQPS), s.cfg.ReportBurst),
		dirty:   map[string]bool{}, signal: make(chan struct{}, 1),
		sentDev: map[string]sentDevice{}, sentModel: map[string]string{},
	}
}

// serves reports whether the mapper should have v.
func (m *mapper) serves(v devicetwin.DeviceView) bool {
	return v.Device.Spec.Protocol.ProtocolName == m.protocol && v.Model != nil
}

func fingerprint(msg proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	return string(b)
}

func (m *mapper) mark(id string) {
	m.mu.Lock()
	m.dirty[id] = true
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// start runs the worker; called with s.mu held.
func (m *mapper) start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	m.s.wg.Add(1)
	go func() {
		defer m.s.wg.Done()
		defer close(m.done)
		defer m.conn.Close()
		m.run(ctx)
	}()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// stop ends the worker without waiting (Run waits for all of them).
func (m *mapper) stop() {
	if m.cancel != nil {
		m.cancel()
	} else {
		_ = m.conn.Close()
	}
}

func (m *mapper) run(ctx context.Context) {
	backoff := m.s.cfg.RetryInitial
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.signal:
		case <-retry:
		}
		m.mu.Lock()
		dirty, all := m.dirty, m.all
		m.dirty, m.all = map[string]bool{}, false
		m.mu.Unlock()
		if all {
			views, err := m.s.deps.Twin.Devices(ctx)
			if err != nil {
				m.requeue(dirty, true)
				retry = time.After(backoff)
				continue
			}
			for _, v := range views {
				dirty[v.ID] = true
			}
			for id := range m.sentDev {
				dirty[id] = true
			}
		}
		failed := map[string]bool{}
		for _, id := range slices.Sorted(maps.Keys(dirty)) {
			if ctx.Err() != nil {
				return
			}
			if err := m.syncDevice(ctx, id); err != nil {
				failed[id] = true
				m.s.pushFailures.Add(1)
				m.s.log.Warn("push to mapper failed; retrying", "mapper", m.name, "device", id, "err", err, "in", backoff)
			}
		}
		if len(failed) == 0 && m.gcModels(ctx) {
			backoff, retry = m.s.cfg.RetryInitial, nil
			continue
		}
		m.requeue(failed, false)
		retry = time.After(backoff)
		backoff = min(2*backoff, m.s.cfg.RetryMax)
	}
}

func (m *mapper) requeue(ids map[string]bool, all bool) {
	m.mu.Lock()
	for id := range ids {
		m.dirty[id] = true
	}
	m.all = m.all || all
	m.mu.Unlock()
}

func (m *mapper) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.s.cfg.CallTimeout)
	defer cancel()
	m.s.pushes.Add(1)
	return f(ctx)
}

// syncDevice sends the mapper what changed about device id.
func (m *mapper) syncDevice(ctx context.Context, id string) error {
	v, ok, err := m.s.deps.Twin.Device(ctx, id)
	if err != nil {
		return err
	}
	if ok {
		m.s.rememberProtocol(v)
	}
	prev, sent := m.sentDev[id]
	if !ok || !m.serves(v) {
		if !sent {
			return nil
		}
		d := split(id)
		if d == nil {
			delete(m.sentDev, id)
			return nil
		}
		ns, name := d[0], d[1]
		if err := m.call(ctx, func(ctx context.Context) error {
			_, err := m.client.RemoveDevice(ctx, &pb.RemoveDeviceRequest{DeviceName: name, DeviceNamespace: ns})
			return err
		}); err != nil {
			return err
		}
		delete(m.sentDev, id)
		return nil
	}
	model := modelToDMI(v.Model)
	mk := v.Model.Namespace + "/" + v.Model.Name
	if h := fingerprint(model); m.sentModel[mk] != h {
		_, had := m.sentModel[mk]
		if err := m.call(ctx, func(ctx context.Context) error {
			if had {
				_, err := m.client.UpdateDeviceModel(ctx, &pb.UpdateDeviceModelRequest{Model: model})
				return err
			}
			_, err := m.client.CreateDeviceModel(ctx, &pb.CreateDeviceModelRequest{Model: model})
			return err
		}); err != nil {
			return err
		}
		m.sentModel[mk] = h
	}
	dev, err := deviceToDMI(v)
	if err != nil {
		// A device whose configuration cannot be expressed in DMI is never
		// going to be; log it, do not retry.
		m.s.log.Error("device cannot be given to its mapper", "device", id, "mapper", m.name, "err", err)
		return nil
	}
	h := fingerprint(dev)
	if sent && prev.hash == h {
		return nil
	}
	if err := m.call(ctx, func(ctx context.Context) error {
		if sent {
			_, err := m.client.UpdateDevice(ctx, &pb.UpdateDeviceRequest{Device: dev})
			return err
		}
		_, err := m.client.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: dev})
		return err
	}); err != nil {
		return err
	}
	m.sentDev[id] = sentDevice{hash: h, model: mk}
	return nil
}

// gcModels removes models no device of this mapper uses any more; false if
// a removal failed (it is retried).
func (m *mapper) gcModels(ctx context.Context) bool {
	ok := true
	used := map[string]bool{}
	for _, d := range m.sentDev {
		used[d.model] = true
	}
	for mk := range m.sentModel {
		if used[mk] {
			continue
		}
		d := split(mk)
		if d == nil {
			delete(m.sentModel, mk)
			continue
		}
		if err := m.call(ctx, func(ctx context.Context) error {
			_, err := m.client.RemoveDeviceModel(ctx, &pb.RemoveDeviceModelRequest{ModelName: d[1], ModelNamespace: d[0]})
			return err
		}); err != nil {
			m.s.log.Warn("removing a model from its mapper failed; will retry", "mapper", m.name, "model", mk, "err", err)
			ok = false
			continue
		}
		delete(m.sentModel, mk)
	}
	return ok
}

func split(id string) []string {
	for i := 0; i < len(id); i++ {
		if id[i] == '/' {
			return []string{id[:i], id[i+1:]}
		}
	}
	return nil
}
