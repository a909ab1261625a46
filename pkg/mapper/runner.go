package mapper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	pb "github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1"
	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
)

// runner owns one device: its connection, collect and report schedule,
// desired-value writes and subscriptions, all on one goroutine (run), so the
// driver's Device is never called concurrently.
type runner struct {
	m     *Mapper
	plan  *devicePlan
	model *pb.DeviceModel // the model plan was built from, to spot model changes
	props []*propState    // owned by run

	desiredMu sync.Mutex
	desired   map[string]string // newest desired values; guarded by desiredMu
	desiredCh chan struct{}     // capacity 1: "desired changed"

	subCh chan subValue

	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned and the device is closed

	mu   sync.Mutex
	snap snapshot // guarded by mu; what GetDevice and /devices show

	// owned by run:
	state      State
	stateErr   error
	stateSent  time.Time
	connected  bool
	session    int // connection number, to drop values of old subscriptions
	fullReport time.Time
}

// propState is the live state of one property; owned by run.
type propState struct {
	plan        *propPlan
	value       string
	valueTS     int64
	hasValue    bool
	readErr     error
	observed    string // the desired value last applied to the device
	observedTS  int64
	applied     string // the desired value last attempted (applied or failed for good)
	writeErr    error
	subscribed  bool
	initialRead bool // a subscribed property is read once per connection for its current value
	nextCollect time.Time
	nextReport  time.Time
	dirty       bool // changed since the last report
}

type subValue struct {
	session int
	prop    int
	value   any
	err     error
}

// snapshot is a copy of a runner's state for readers on other goroutines.
type snapshot struct {
	state State
	err   string
	twins []*pb.Twin
}

func newRunner(m *Mapper, plan *devicePlan, model *pb.DeviceModel, desired map[string]string) *runner {
	r := &runner{
		m:         m,
		plan:      plan,
		model:     model,
		desired:   desired,
		desiredCh: make(chan struct{}, 1),
		subCh:     make(chan subValue, 64),
		done:      make(chan struct{}),
		state:     StateUnknown,
	}
	for _, p := range plan.props {
		r.props = append(r.props, &propState{plan: p, dirty: true})
	}
	r.mu.Lock()
	r.snap = r.buildSnapshot()
	r.mu.Unlock()
	return r
}

// start runs the device until stop.
func (r *runner) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	go r.run(ctx)
}

// stop ends the device's goroutine and waits until its connection is closed.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// setDesired hands new desired values to the running device.
func (r *runner) setDesired(d map[string]string) {
	r.desiredMu.Lock()
	r.desired = d
	r.desiredMu.Unlock()
	select {
	case r.desiredCh <- struct{}{}:
	default:
	}
}

func (r *runner) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

func (r *runner) now() time.Time { return r.m.clock.Now() }

func (r *runner) run(ctx context.Context) {
	defer close(r.done)
	log := r.m.log.With("device", r.plan.key.String())
	if r.plan.err != nil {
		log.Warn("device not started", "err", r.plan.err)
		r.setState(StateUnknown, r.plan.err)
		r.reportAll()
		<-ctx.Done()
		return
	}
	for _, p := range r.props {
		if p.plan.err != nil {
			log.Warn("property not collected", "property", p.plan.spec.Name, "err", p.plan.err)
		} else if err := validatePush(p.plan.push); err != nil {
			p.plan.err = fmt.Errorf("property %q: %w", p.plan.spec.Name, err)
			log.Warn("property not collected", "property", p.plan.spec.Name, "err", p.plan.err)
		}
	}
	defer func() {
		if err := r.plan.dev.Close(); err != nil {
			log.Debug("close device", "err", err)
		}
	}()
	backoff := r.m.cfg.RetryMin
	for ctx.Err() == nil {
		err := r.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Debug("connect failed", "err", err, "retry", backoff)
			r.setState(StateOffline, fmt.Errorf("connect: %w", err))
			r.reportAll()
			if !r.sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, r.m.cfg.RetryMax)
			continue
		}
		backoff = r.m.cfg.RetryMin
		log.Debug("connected")
		lost := r.serve(ctx)
		r.connected = false
		if err := r.plan.dev.Close(); err != nil {
			log.Debug("close after disconnect", "err", err)
		}
		if lost != nil && ctx.Err() == nil {
			log.Info("device disconnected; reconnecting", "err", lost)
			r.setState(StateDisconnected, lost)
			r.reportAll()
		}
	}
}

func (r *runner) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.m.cfg.CallTimeout)
	defer cancel()
	return r.plan.dev.Connect(cctx)
}

// sleep waits for d, keeping desired values current. It returns false when
// ctx is done.
func (r *runner) sleep(ctx context.Context, d time.Duration) bool {
	t := r.m.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// serve runs one connection until it is lost (returned error) or ctx ends.
func (r *runner) serve(ctx context.Context) error {
	r.connected = true
	r.session++
	sctx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	now := r.now()
	for i, p := range r.props {
		p.readErr = nil
		// A new connection may be to a device that restarted and lost its
		// settings: desired values are applied again on every connect.
		p.applied = ""
		p.nextCollect, p.nextReport = now, now.Add(p.plan.report)
		p.subscribed = false
		if p.plan.err != nil {
			continue
		}
		if sub, ok := r.plan.dev.(Subscriber); ok {
			session, idx := r.session, i
			ok, err := sub.Subscribe(sctx, p.plan.visitor, func(v any, err error) {
				select {
				case r.subCh <- subValue{session: session, prop: idx, value: v, err: err}:
				case <-sctx.Done():
				}
			})
			if err != nil {
				if errors.Is(err, ErrDisconnected) {
					return err
				}
				p.readErr = fmt.Errorf("subscribe: %w", err)
				p.dirty = true
			}
			p.subscribed = ok
			p.initialRead = ok
		}
	}
	if err := r.applyDesired(ctx); err != nil {
		return err
	}
	r.fullReport = now
	// No state yet: "ok" comes from the first collection, so a device that
	// accepts connections but never answers (a silent RTU unit) does not
	// flap between ok and disconnected.
	for {
		next := r.nextDue()
		t := r.m.clock.NewTimer(next.Sub(r.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
			if err := r.due(ctx); err != nil {
				return err
			}
		case <-r.desiredCh:
			t.Stop()
			if err := r.applyDesired(ctx); err != nil {
				return err
			}
			if err := r.due(ctx); err != nil {
				return err
			}
		case sv := <-r.subCh:
			t.Stop()
			if sv.session != r.session {
				continue
			}
			if sv.err != nil && errors.Is(sv.err, ErrDisconnected) {
				return sv.err
			}
			r.record(r.props[sv.prop], sv.value, sv.err)
			r.updateState(ctx)
		}
	}
}

// nextDue is the earliest pending collect, report or state refresh.
func (r *runner) nextDue() time.Time {
	next := r.stateSent.Add(r.m.cfg.StateRefresh)
	for _, p := range r.props {
		if p.plan.err == nil && (!p.subscribed || p.initialRead) && p.nextCollect.Before(next) {
			next = p.nextCollect
		}
		if p.nextReport.Before(next) {
			next = p.nextReport
		}
	}
	return next
}

// due runs every collect and report whose time has come.
func (r *runner) due(ctx context.Context) error {
	now := r.now()
	for _, p := range r.props {
		if p.plan.err != nil || (p.subscribed && !p.initialRead) || p.nextCollect.After(now) {
			continue
		}
		p.initialRead = false
		cctx, cancel := context.WithTimeout(ctx, r.m.cfg.CallTimeout)
		v, err := r.plan.dev.Read(cctx, p.plan.visitor)
		cancel()
		if err != nil && errors.Is(err, ErrDisconnected) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		r.record(p, v, err)
		p.nextCollect = advance(p.nextCollect, p.plan.collect, r.now())
	}
	now = r.now()
	full := !now.Before(r.fullReport.Add(r.m.cfg.StateRefresh))
	if full {
		r.fullReport = now
	}
	var twins []*pb.Twin
	for _, p := range r.props {
		if p.nextReport.After(now) && !full {
			continue
		}
		if p.dirty || full {
			twins = append(twins, r.twin(p))
			p.dirty = false
		}
		if p.hasValue && p.plan.push != nil && p.readErr == nil && (p.plan.push.GetHttp() != nil || p.plan.push.GetMqtt() != nil) {
			r.m.pusher.push(p.plan.push, dataModel{
				DeviceName: r.plan.key.name, PropertyName: p.plan.spec.Name, Namespace: r.plan.key.ns,
				Value: p.value, Type: lowerType(p.plan.spec.Type), TimeStamp: p.valueTS,
			})
		}
		p.nextReport = advance(p.nextReport, p.plan.report, now)
	}
	r.m.reporter.twins(r.plan.key, twins)
	r.updateState(ctx)
	return nil
}

// advance moves a schedule by one period, skipping periods missed while
// the device was slow rather than bursting to catch up.
func advance(t time.Time, period time.Duration, now time.Time) time.Time {
	t = t.Add(period)
	if t.Before(now) {
		t = now.Add(period)
	}
	return t
}

// record stores a read or subscription result.
func (r *runner) record(p *propState, v any, err error) {
	if err != nil {
		if p.readErr == nil || p.readErr.Error() != err.Error() {
			p.dirty = true
		}
		p.readErr = err
		return
	}
	s, ferr := convert.Format(p.plan.spec.Type, v)
	if ferr == nil {
		ferr = p.plan.rng.Check(v)
		if ferr != nil {
			ferr = fmt.Errorf("device value %s: %w", s, ferr)
		}
	}
	if ferr != nil {
		if p.readErr == nil || p.readErr.Error() != ferr.Error() {
			p.dirty = true
		}
		p.readErr = ferr
		return
	}
	if !p.hasValue || p.value != s || p.readErr != nil {
		p.dirty = true
	}
	p.value, p.valueTS, p.hasValue, p.readErr = s, r.now().UnixMilli(), true, nil
}

// applyDesired writes desired values that changed. A connection loss is
// returned (the write is retried after reconnecting); other failures are
// recorded on the twin and not retried until the desired value changes.
func (r *runner) applyDesired(ctx context.Context) error {
	r.desiredMu.Lock()
	desired := r.desired
	r.desiredMu.Unlock()
	for _, p := range r.props {
		want, ok := desired[p.plan.spec.Name]
		if !ok || want == "" || want == p.applied || p.plan.err != nil {
			continue
		}
		p.dirty = true
		if p.plan.spec.ReadOnly {
			p.applied, p.writeErr = want, fmt.Errorf("desired value %q not written: property %q is ReadOnly in the device model", want, p.plan.spec.Name)
			continue
		}
		v, err := convert.Parse(p.plan.spec.Type, want)
		if err == nil {
			err = p.plan.rng.Check(v)
		}
		if err != nil {
			p.applied, p.writeErr = want, fmt.Errorf("desired value %q: %w", want, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.m.cfg.CallTimeout)
		err = r.plan.dev.Write(cctx, p.plan.visitor, v)
		cancel()
		if err != nil {
			if errors.Is(err, ErrDisconnected) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			p.applied, p.writeErr = want, fmt.Errorf("write desired value %q: %w", want, err)
			r.m.log.Warn("desired value not written", "device", r.plan.key.String(), "property", p.plan.spec.Name, "err", err)
			continue
		}
		now := r.now()
		p.applied, p.writeErr = want, nil
		p.observed, p.observedTS = want, now.UnixMilli()
		// Read back and report at once so the twin shows the new value.
		p.nextCollect, p.nextReport = now, now
	}
	return nil
}

func (r *runner) twin(p *propState) *pb.Twin {
	typ := lowerType(p.plan.spec.Type)
	rep := &pb.TwinProperty{Metadata: map[string]string{"type": typ}}
	if p.hasValue {
		rep.Value = p.value
		rep.Metadata["timestamp"] = strconv.FormatInt(p.valueTS, 10)
	}
	switch {
	case p.plan.err != nil:
		rep.Metadata["error"] = p.plan.err.Error()
	case r.plan.err != nil:
		rep.Metadata["error"] = r.plan.err.Error()
	case p.readErr != nil:
		rep.Metadata["error"] = p.readErr.Error()
	case !r.connected && r.stateErr != nil:
		rep.Metadata["error"] = r.stateErr.Error()
	}
	obs := &pb.TwinProperty{Value: p.observed, Metadata: map[string]string{"type": typ}}
	if p.observedTS != 0 {
		obs.Metadata["timestamp"] = strconv.FormatInt(p.observedTS, 10)
	}
	if p.writeErr != nil {
		obs.Metadata["error"] = p.writeErr.Error()
	}
	return &pb.Twin{PropertyName: p.plan.spec.Name, Reported: rep, ObservedDesired: obs}
}

// reportAll reports every twin (used when the device's state changes while
// it is not connected, so each twin carries the reason).
func (r *runner) reportAll() {
	twins := make([]*pb.Twin, 0, len(r.props))
	for _, p := range r.props {
		twins = append(twins, r.twin(p))
		p.dirty = false
	}
	r.m.reporter.twins(r.plan.key, twins)
	r.publish()
}

// updateState infers the state of a connected device and reports it when it
// changed or is due for a refresh.
func (r *runner) updateState(ctx context.Context) {
	st, why := StateOK, error(nil)
	for _, p := range r.props {
		switch {
		case p.plan.err != nil:
			st, why = StateUnhealthy, p.plan.err
		case p.readErr != nil:
			st, why = StateUnhealthy, fmt.Errorf("property %q: %w", p.plan.spec.Name, p.readErr)
		}
	}
	if s, ok := r.plan.dev.(Stater); ok {
		cctx, cancel := context.WithTimeout(ctx, r.m.cfg.CallTimeout)
		ds, err := s.State(cctx)
		cancel()
		if err == nil && ds != "" && ds != StateOK {
			st, why = ds, fmt.Errorf("device reports state %s", ds)
		}
	}
	r.setState(st, why)
	r.publish()
}

// setState reports the state when it changed or the refresh is due.
func (r *runner) setState(st State, why error) {
	now := r.now()
	changed := st != r.state || errString(why) != errString(r.stateErr)
	r.state, r.stateErr = st, why
	if changed || !now.Before(r.stateSent.Add(r.m.cfg.StateRefresh)) {
		r.stateSent = now
		r.m.reporter.state(r.plan.key, st)
	}
	if changed {
		r.publish()
	}
}

// publish refreshes the snapshot other goroutines read.
func (r *runner) publish() {
	s := r.buildSnapshot()
	r.mu.Lock()
	r.snap = s
	r.mu.Unlock()
}

func (r *runner) buildSnapshot() snapshot {
	s := snapshot{state: r.state, err: errString(r.stateErr)}
	for _, p := range r.props {
		s.twins = append(s.twins, r.twin(p))
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
