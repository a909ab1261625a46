package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edgeapi"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Errors returned by Query.
var (
	// ErrRefused: the cloud answered with an error; the error text follows.
	ErrRefused = errors.New("uplink: refused by the cloud")
	// ErrTimeout: the cloud did not answer within Config.QueryTimeout.
	ErrTimeout = errors.New("uplink: no answer from the cloud")
)

// Sender sends to the cloud's session. EdgeHub's Client implements it.
type Sender interface {
	// Send sends m through the uplink rate limiter; it fails at once while
	// there is no session.
	Send(ctx context.Context, m wire.Message) error
	// SendDeferrable is Send for messages that may wait for others (events):
	// it leaves part of the rate limit to them.
	SendDeferrable(ctx context.Context, m wire.Message) error
	// WaitConnected blocks until a session is up or ctx ends.
	WaitConnected(ctx context.Context) error
}

// Config tunes the uplink; zero fields take defaults.
type Config struct {
	// AckTimeout is how long a report may stay unacknowledged before it is
	// sent again (default 30 s).
	AckTimeout time.Duration
	// QueryTimeout bounds a query's wait for its answer (default 15 s).
	QueryTimeout time.Duration
	// Window is the most reports in flight at once (default 32).
	Window int
	// MaxEvents bounds the event queue; the oldest are dropped (default 256).
	MaxEvents int
}

func (c Config) withDefaults() Config {
	if c.AckTimeout <= 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 15 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 32
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 256
	}
	return c
}

// Deps are the uplink's collaborators.
type Deps struct {
	Sender Sender
	Clock  clock.WithTicker
	Logger *slog.Logger
}

// Stats counts the uplink's work.
type Stats struct {
	Sent, Acked, Refused, Resent, Coalesced int64
	EventsSent, EventsDropped               int64
	Pending                                 int
}

type reportKind uint8

const (
	kindStatus reportKind = iota
	kindDeletion
)

type reportKey struct {
	kind            reportKind
	namespace, name string
}

// report is the newest pending state of one key.
type report struct {
	uid    types.UID
	status *corev1.PodStatus // kindStatus only
	gen    uint64            // bumped by every update
	// In flight: the message id and the gen it carried; "" when not sent.
	msgID   string
	sentGen uint64
	sentAt  time.Time
}

type reply struct {
	m   wire.Message
	err error
}

// Uplink is the edge's reliable upward path. Create it with New, run it with
// Run, feed it replies with HandleReply and session changes with
// Disconnected.
type Uplink struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu       sync.Mutex
	reports  map[reportKey]*report // guarded by mu
	dirty    []reportKey           // guarded by mu; keys to send, FIFO, no duplicates
	isDirty  map[reportKey]bool    // guarded by mu
	inflight map[string]reportKey  // guarded by mu; by message id
	events   []*corev1.Event       // guarded by mu; FIFO, bounded
	queries  map[string]chan reply // guarded by mu; by message id
	stats    Stats                 // guarded by mu
	wake     chan struct{}         // cap 1; signalled when there is work or room
}

// New builds an Uplink.
func New(cfg Config, deps Deps) (*Uplink, error) {
	if deps.Sender == nil || deps.Clock == nil {
		return nil, errors.New("uplink: Sender and Clock are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Uplink{
		cfg: cfg.withDefaults(), deps: deps, log: deps.Logger.With("component", "uplink"),
		reports: map[reportKey]*report{}, isDirty: map[reportKey]bool{},
		inflight: map[string]reportKey{}, queries: map[string]chan reply{},
		wake: make(chan struct{}, 1),
	}, nil
}

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.stats
	s.Pending = len(u.reports)
	return s
}

func (u *Uplink) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// markDirtyLocked queues k for sending. u.mu must be held.
func (u *Uplink) markDirtyLocked(k reportKey) {
	if !u.isDirty[k] {
		u.isDirty[k] = true
		u.dirty = append(u.dirty, k)
	}
}

// PodStatus records the newest status of a pod; it never blocks.
func (u *Uplink) PodStatus(namespace, name string, uid types.UID, status corev1.PodStatus) {
	k := reportKey{kindStatus, namespace, name}
	st := status.DeepCopy()
	u.mu.Lock()
	r := u.reports[k]
	if r == nil {
		r = &report{}
		u.reports[k] = r
	} else {
		u.stats.Coalesced++
	}
	r.uid, r.status = uid, st
	r.gen++
	if r.msgID == "" { // in flight: re-queued when its ack comes
		u.markDirtyLocked(k)
	}
	u.mu.Unlock()
	u.signal()
}

// PodTerminated asks the cloud to remove a pod whose containers and sandbox
// are gone; retried until the cloud answers. It never blocks.
func (u *Uplink) PodTerminated(namespace, name string, uid types.UID) {
	k := reportKey{kindDeletion, namespace, name}
	u.mu.Lock()
	r := u.reports[k]
	if r == nil {
		r = &report{}
		u.reports[k] = r
	}
	r.uid = uid
	r.gen++
	if r.msgID == "" {
		u.markDirtyLocked(k)
	}
	u.mu.Unlock()
	u.signal()
}

// Forget drops pending reports about a pod that no longer exists in the
// cloud (its object left the edge store).
func (u *Uplink) Forget(namespace, name string) {
	u.mu.Lock()
	for _, kind := range []reportKind{kindStatus, kindDeletion} {
		k := reportKey{kind, namespace, name}
		if r := u.reports[k]; r != nil {
			delete(u.inflight, r.msgID)
			delete(u.reports, k)
		}
	}
	u.mu.Unlock()
}

// Event queues an event, dropping the oldest when the queue is full.
func (u *Uplink) Event(ev *corev1.Event) {
	if ev == nil {
		return
	}
	ev = ev.DeepCopy()
	u.mu.Lock()
	if len(u.events) >= u.cfg.MaxEvents {
		u.events = u.events[1:]
		u.stats.EventsDropped++
	}
	u.events = append(u.events, ev)
	u.mu.Unlock()
	u.signal()
}

// Disconnected moves every report in flight back to the queue: its ack can
// no longer come. Call it when the session ends.
func (u *Uplink) Disconnected() {
	u.mu.Lock()
	for id, k := range u.inflight {
		delete(u.inflight, id)
		if r := u.reports[k]; r != nil {
			r.msgID = ""
			u.markDirtyLocked(k)
		}
	}
	for id, ch := range u.queries {
		delete(u.queries, id)
		ch <- reply{err: fmt.Errorf("uplink: session ended before the answer came: %w", ErrTimeout)}
	}
	u.mu.Unlock()
	u.signal()
}

// HandleReply takes a "response" or "error" message from the cloud and
// reports whether it answered something the uplink sent.
func (u *Uplink) HandleReply(m wire.Message) bool {
	parent := m.Header.ParentID
	if parent == "" || m.Operation != wire.OpResponse && m.Operation != wire.OpError {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if ch, ok := u.queries[parent]; ok {
		delete(u.queries, parent)
		ch <- reply{m: m}
		return true
	}
	k, ok := u.inflight[parent]
	if !ok {
		return false
	}
	delete(u.inflight, parent)
	r := u.reports[k]
	if r == nil {
		return true
	}
	r.msgID = ""
	if m.Operation == wire.OpError {
		txt, _ := m.ContentString()
		u.stats.Refused++
		u.log.Warn("cloud refused a report", "pod", k.namespace+"/"+k.name, "kind", kindName(k.kind), "reason", txt)
		// Retrying the same content cannot help; a newer one is tried.
		if r.gen == r.sentGen {
			delete(u.reports, k)
		} else {
			u.markDirtyLocked(k)
		}
	} else {
		u.stats.Acked++
		if r.gen == r.sentGen {
			delete(u.reports, k)
		} else {
			u.markDirtyLocked(k)
		}
	}
	u.signal()
	return true
}

func kindName(k reportKind) string {
	if k == kindDeletion {
		return "deletion"
	}
	return "status"
}

// Query sends a request and returns the cloud's answer. It fails at once
// while there is no session.
func (u *Uplink) Query(ctx context.Context, res wire.Resource, content any) (wire.Message, error) {
	m, err := wire.New(u.deps.Clock.Now(), wire.SourceEdged, wire.GroupResource, wire.OpQuery, res, content)
	if err != nil {
		return wire.Message{}, err
	}
	ch := make(chan reply, 1)
	u.mu.Lock()
	u.queries[m.Header.ID] = ch
	u.mu.Unlock()
	cleanup := func() {
		u.mu.Lock()
		delete(u.queries, m.Header.ID)
		u.mu.Unlock()
	}
	if err := u.deps.Sender.Send(ctx, m); err != nil {
		cleanup()
		return wire.Message{}, fmt.Errorf("uplink: query %s: %w", res, err)
	}
	timer := u.deps.Clock.NewTimer(u.cfg.QueryTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return wire.Message{}, r.err
		}
		if r.m.Operation == wire.OpError {
			txt, _ := r.m.ContentString()
			return wire.Message{}, fmt.Errorf("%w: query %s: %s", ErrRefused, res, txt)
		}
		return r.m, nil
	case <-timer.C():
		cleanup()
		return wire.Message{}, fmt.Errorf("%w: query %s after %s", ErrTimeout, res, u.cfg.QueryTimeout)
	case <-ctx.Done():
		cleanup()
		return wire.Message{}, ctx.Err()
	}
}

// Run sends queued reports and events while a session is up, until ctx is
// done.
func (u *Uplink) Run(ctx context.Context) error {
	tick := u.deps.Clock.NewTicker(max(u.cfg.AckTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		if err := u.deps.Sender.WaitConnected(ctx); err != nil {
			return nil // ctx is done
		}
		if sent := u.sendSome(ctx); sent {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
		case <-tick.C():
			u.resendStale()
		}
	}
}

// sendSome sends the next report (or, with no report ready, the next event)
// and reports whether it sent anything.
func (u *Uplink) sendSome(ctx context.Context) bool {
	u.mu.Lock()
	if len(u.dirty) > 0 && len(u.inflight) < u.cfg.Window {
		k := u.dirty[0]
		u.dirty = u.dirty[1:]
		delete(u.isDirty, k)
		r := u.reports[k]
		if r == nil || r.msgID != "" { // forgotten, or already in flight
			u.mu.Unlock()
			return true
		}
		m, err := u.message(k, r)
		if err != nil {
			delete(u.reports, k)
			u.mu.Unlock()
			u.log.Error("report cannot be encoded; dropped", "pod", k.namespace+"/"+k.name, "err", err)
			return true
		}
		r.msgID, r.sentGen, r.sentAt = m.Header.ID, r.gen, u.deps.Clock.Now()
		u.inflight[m.Header.ID] = k
		u.stats.Sent++
		u.mu.Unlock()
		if err := u.deps.Sender.Send(ctx, m); err != nil {
			u.unsent(k, m.Header.ID)
			return false
		}
		return true
	}
	if len(u.events) == 0 {
		u.mu.Unlock()
		return false
	}
	ev := u.events[0]
	u.events = u.events[1:]
	u.mu.Unlock()
	m, err := wire.New(u.deps.Clock.Now(), wire.SourceEdged, wire.GroupResource, wire.OpInsert,
		wire.Resource{Namespace: ev.Namespace, Type: wire.TypeEvent, Name: ev.Name}, ev)
	if err == nil {
		err = u.deps.Sender.SendDeferrable(ctx, m)
	}
	u.mu.Lock()
	if err != nil {
		// Keep it for the next session unless newer events pushed it out.
		if len(u.events) < u.cfg.MaxEvents {
			u.events = append([]*corev1.Event{ev}, u.events...)
		} else {
			u.stats.EventsDropped++
		}
	} else {
		u.stats.EventsSent++
	}
	u.mu.Unlock()
	return err == nil
}

// unsent puts k back after its send failed (no session).
func (u *Uplink) unsent(k reportKey, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.inflight, id)
	if r := u.reports[k]; r != nil && r.msgID == id {
		r.msgID = ""
		u.markDirtyLocked(k)
	}
}

// resendStale re-queues reports whose ack is overdue.
func (u *Uplink) resendStale() {
	now := u.deps.Clock.Now()
	u.mu.Lock()
	for id, k := range u.inflight {
		r := u.reports[k]
		if r == nil || now.Sub(r.sentAt) < u.cfg.AckTimeout {
			continue
		}
		delete(u.inflight, id)
		r.msgID = ""
		u.stats.Resent++
		u.markDirtyLocked(k)
	}
	u.mu.Unlock()
}

// message builds the wire message for k's newest state. u.mu must be held.
func (u *Uplink) message(k reportKey, r *report) (wire.Message, error) {
	now := u.deps.Clock.Now()
	switch k.kind {
	case kindStatus:
		return wire.New(now, wire.SourceEdged, wire.GroupResource, wire.OpUpdate,
			wire.Resource{Namespace: k.namespace, Type: wire.TypePodStatus, Name: k.name},
			edgeapi.PodStatusRequest{UID: r.uid, Name: k.name, Status: *r.status})
	case kindDeletion:
		return wire.New(now, wire.SourceEdged, wire.GroupResource, wire.OpDelete,
			wire.Resource{Namespace: k.namespace, Type: wire.TypePod, Name: k.name},
			edgeapi.PodDeletion{UID: r.uid})
	}
	return wire.Message{}, fmt.Errorf("unknown report kind %d", k.kind)
}

// Decode helpers for the answers of queries.

// DecodeContent unmarshals a reply's content into out.
func DecodeContent(m wire.Message, out any) error {
	if len(m.Content) == 0 {
		return fmt.Errorf("uplink: answer to %s has no content", m.Resource)
	}
	if err := json.Unmarshal(m.Content, out); err != nil {
		return fmt.Errorf("uplink: answer to %s: %w", m.Resource, err)
	}
	return nil
}
