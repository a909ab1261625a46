package mapper

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/utils/clock"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
)

// reporter sends twins and states to edgecore at a limited rate. Device
// loops hand it reports without blocking; reports of one device that wait
// for the limiter (or for edgecore) merge, newest value per property, so a
// slow or absent edgecore costs memory per device, not per report.
type reporter struct {
	client  pb.DeviceManagerServiceClient
	limiter *rate.Limiter
	clock   clock.WithTicker
	timeout time.Duration
	retry   time.Duration
	log     *slog.Logger
	// ready is closed after the first successful MapperRegister: edgecore
	// only accepts reports from mappers it knows.
	ready <-chan struct{}

	mu      sync.Mutex
	pending map[objKey]*pendingReport // guarded by mu
	order   []objKey                  // keys of pending in arrival order; guarded by mu
	wake    chan struct{}             // capacity 1: "pending is not empty"

	sent, failed, merged atomic.Int64
}

type pendingReport struct {
	twins    map[string]*pb.Twin // by property name
	state    State
	hasState bool
}

func newReporter(cfg *Config, client pb.DeviceManagerServiceClient, ready <-chan struct{}, log *slog.Logger) *reporter {
	return &reporter{
		client:  client,
		limiter: rate.NewLimiter(rate.Limit(cfg.ReportQPS), cfg.ReportBurst),
		clock:   cfg.Clock,
		timeout: cfg.CallTimeout,
		retry:   cfg.RetryMin,
		log:     log,
		ready:   ready,
		pending: map[objKey]*pendingReport{},
		wake:    make(chan struct{}, 1),
	}
}

// entry returns k's pending report, queueing k if it had none. Caller holds mu.
func (r *reporter) entry(k objKey) *pendingReport {
	p, ok := r.pending[k]
	if !ok {
		p = &pendingReport{twins: map[string]*pb.Twin{}}
		r.pending[k] = p
		r.order = append(r.order, k)
	}
	return p
}

func (r *reporter) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// twins queues twins of device k.
func (r *reporter) twins(k objKey, twins []*pb.Twin) {
	if len(twins) == 0 {
		return
	}
	r.mu.Lock()
	p := r.entry(k)
	for _, t := range twins {
		if _, ok := p.twins[t.GetPropertyName()]; ok {
			r.merged.Add(1)
		}
		p.twins[t.GetPropertyName()] = t
	}
	r.mu.Unlock()
	r.notify()
}

// state queues the state of device k.
func (r *reporter) state(k objKey, s State) {
	r.mu.Lock()
	p := r.entry(k)
	if p.hasState {
		r.merged.Add(1)
	}
	p.state, p.hasState = s, true
	r.mu.Unlock()
	r.notify()
}

// forget drops whatever waits for device k (it was removed).
func (r *reporter) forget(k objKey) {
	r.mu.Lock()
	delete(r.pending, k) // its key stays in order and is skipped when popped
	r.mu.Unlock()
}

// pop takes the oldest pending report.
func (r *reporter) pop() (objKey, *pendingReport, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.order) > 0 {
		k := r.order[0]
		r.order = r.order[1:]
		if p, ok := r.pending[k]; ok {
			delete(r.pending, k)
			return k, p, true
		}
	}
	r.order = nil // let the backing array go once drained
	return objKey{}, nil, false
}

// requeue puts back a report that could not be sent, under anything newer
// that arrived meanwhile.
func (r *reporter) requeue(k objKey, old *pendingReport) {
	r.mu.Lock()
	p := r.entry(k)
	for name, t := range old.twins {
		if _, newer := p.twins[name]; !newer {
			p.twins[name] = t
		}
	}
	if old.hasState && !p.hasState {
		p.state, p.hasState = old.state, true
	}
	r.mu.Unlock()
}

// run sends reports until ctx is done.
func (r *reporter) run(ctx context.Context) {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return
	}
	for {
		k, p, ok := r.pop()
		if !ok {
			select {
			case <-r.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err := r.send(ctx, k, p); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.failed.Add(1)
			if !retryable(err) {
				// edgecore understood and refused (an unknown device, an
				// edgecore without ReportDeviceStates...): retrying the
				// same report cannot succeed; newer reports still go.
				r.log.Warn("edgecore refused a report; dropped", "device", k.String(), "err", err)
				continue
			}
			r.log.Debug("report to edgecore failed; will retry", "device", k.String(), "err", err)
			r.requeue(k, p)
			// edgecore is probably restarting: wait before trying again
			// rather than spinning through the queue.
			t := r.clock.NewTimer(r.retry)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

func (r *reporter) send(ctx context.Context, k objKey, p *pendingReport) error {
	if len(p.twins) > 0 {
		if err := r.limiter.Wait(ctx); err != nil {
			return err
		}
		twins := make([]*pb.Twin, 0, len(p.twins))
		for _, t := range p.twins {
			twins = append(twins, t)
		}
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, err := r.client.ReportDeviceStatus(cctx, &pb.ReportDeviceStatusRequest{
			DeviceName: k.name, DeviceNamespace: k.ns, ReportedDevice: &pb.DeviceStatus{Twins: twins},
		})
		cancel()
		if err != nil {
			return err
		}
		r.sent.Add(1)
		p.twins = map[string]*pb.Twin{} // sent: a retry of the state must not resend them
	}
	if p.hasState {
		if err := r.limiter.Wait(ctx); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, err := r.client.ReportDeviceStates(cctx, &pb.ReportDeviceStatesRequest{
			DeviceName: k.name, DeviceNamespace: k.ns, State: string(p.state),
		})
		cancel()
		if err != nil {
			return err
		}
		r.sent.Add(1)
	}
	return nil
}

// retryable reports whether a failed call may succeed later: edgecore absent
// or restarting, overloaded, or slow.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled, codes.Unknown, codes.Internal:
		return true
	}
	return false
}
