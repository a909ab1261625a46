package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Object is the state of one object as a node should see it.
type Object struct {
	Resource        wire.Resource
	UID             string
	APIVersion      string
	Kind            string
	ResourceVersion string
	Content         json.RawMessage
}

// Acked is what the edge acknowledged for a key.
type Acked struct {
	UID             string
	APIVersion      string
	Kind            string
	ResourceVersion string
}

// Source says what each node should have. Implementations read informer caches.
type Source interface {
	// Desired lists every key node should hold now.
	Desired(node string) []wire.Resource
	// Lookup returns the object for key as node should hold it, or false when
	// node should not hold it (deleted, or no longer used by its pods).
	Lookup(node string, key wire.Resource) (Object, bool)
	// HasSynced reports whether the caches behind Desired and Lookup are complete.
	HasSynced() bool
}

// AckStore persists acknowledged versions (ObjectSync records).
type AckStore interface {
	// LoadAll returns every recorded acknowledgement, by node and key.
	LoadAll(ctx context.Context) (map[string]map[wire.Resource]Acked, error)
	// Record notes that node acknowledged a (replacing prev when prev.UID differs).
	Record(node string, key wire.Resource, a Acked, prev Acked)
	// Forget notes that node acknowledged the deletion of key.
	Forget(node string, key wire.Resource, prev Acked)
}

// Sender writes to a node's live session.
type Sender interface {
	Send(m wire.Message) error
}

// Config tunes delivery.
type Config struct {
	// Window is the number of unacknowledged messages per node (KubeEdge: 1).
	Window       int
	RetryInitial time.Duration
	RetryMax     time.Duration
	Workers      int
}

// Deps are delivery's collaborators.
type Deps struct {
	Source Source
	Acks   AckStore
	Clock  clock.WithTickerAndDelayedExecution
	Logger *slog.Logger
}

// Stats counts delivery work, for metrics and tests.
type Stats struct {
	Sent, Retried, Acked int64
}

// Delivery is the reliable downstream sender.
type Delivery struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	queue workqueue.TypedInterface[string] // node names with work to pump

	mu     sync.Mutex
	nodes  map[string]*nodeState // guarded by mu
	loaded bool                  // guarded by mu; acks loaded from the AckStore
	stats  Stats                 // guarded by mu
}

// nodeState is one node's delivery state; all fields guarded by Delivery.mu.
type nodeState struct {
	sender   Sender // nil while the node is disconnected
	acked    map[wire.Resource]Acked
	dirty    map[wire.Resource]bool
	order    []wire.Resource // dirty keys in the order they became dirty
	inflight map[string]*flight
	byKey    map[wire.Resource]*flight
	attempts map[wire.Resource]int // consecutive unacknowledged sends per key
	timer    clock.Timer           // retransmit timer, armed while anything is in flight
}

type flight struct {
	msgID  string
	key    wire.Resource
	obj    Object // zero with del
	del    bool
	prev   Acked
	sentAt time.Time
	due    time.Time
}

// New builds a Delivery.
func New(cfg Config, deps Deps) (*Delivery, error) {
	if deps.Source == nil || deps.Acks == nil || deps.Clock == nil {
		return nil, errors.New("delivery: Source, Acks and Clock are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = 64
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 5 * time.Second
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = 12 * cfg.RetryInitial
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Delivery{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "delivery"),
		queue: workqueue.NewTyped[string](),
		nodes: map[string]*nodeState{},
	}, nil
}

// Run loads acknowledgements, waits for the source to sync, then pumps
// nodes until ctx is done.
func (d *Delivery) Run(ctx context.Context) error {
	acks, err := d.deps.Acks.LoadAll(ctx)
	if err != nil {
		return fmt.Errorf("delivery: load acknowledgements: %w", err)
	}
	for !d.deps.Source.HasSynced() {
		select {
		case <-ctx.Done():
			return nil
		case <-d.deps.Clock.After(50 * time.Millisecond):
		}
	}
	d.mu.Lock()
	for node, m := range acks {
		ns := d.nodeLocked(node)
		for k, a := range m {
			ns.acked[k] = a
		}
	}
	d.loaded = true
	var connected []string
	for name, ns := range d.nodes {
		if ns.sender != nil {
			d.markAllLocked(name, ns)
			connected = append(connected, name)
		}
	}
	d.mu.Unlock()
	for _, n := range connected {
		d.queue.Add(n)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-ctx.Done()
		d.queue.ShutDown()
		d.mu.Lock()
		for _, ns := range d.nodes {
			if ns.timer != nil {
				ns.timer.Stop()
			}
		}
		d.mu.Unlock()
		return nil
	})
	for range d.cfg.Workers {
		g.Go(func() error {
			for {
				node, shutdown := d.queue.Get()
				if shutdown {
					return nil
				}
				d.pump(node)
				d.queue.Done(node)
			}
		})
	}
	return g.Wait()
}

func (d *Delivery) nodeLocked(node string) *nodeState {
	ns := d.nodes[node]
	if ns == nil {
		ns = &nodeState{
			acked: map[wire.Resource]Acked{}, dirty: map[wire.Resource]bool{},
			inflight: map[string]*flight{}, byKey: map[wire.Resource]*flight{},
			attempts: map[wire.Resource]int{},
		}
		d.nodes[node] = ns
	}
	return ns
}

// Connected starts delivery to node over s: everything the node should have
// and everything it acknowledged is re-checked, so only differences are sent.
func (d *Delivery) Connected(node string, s Sender) {
	d.mu.Lock()
	ns := d.nodeLocked(node)
	ns.sender = s
	// Anything in flight on an earlier session is lost with it.
	for id := range ns.inflight {
		delete(ns.inflight, id)
	}
	clear(ns.byKey)
	clear(ns.attempts)
	if d.loaded {
		d.markAllLocked(node, ns)
	}
	d.mu.Unlock()
	d.queue.Add(node)
}

// Disconnected stops delivery to node if s is still its sender.
func (d *Delivery) Disconnected(node string, s Sender) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns := d.nodes[node]
	if ns == nil || ns.sender != s {
		return
	}
	ns.sender = nil
	clear(ns.inflight)
	clear(ns.byKey)
	if ns.timer != nil {
		ns.timer.Stop()
		ns.timer = nil
	}
}

func (d *Delivery) markAllLocked(node string, ns *nodeState) {
	for _, k := range d.deps.Source.Desired(node) {
		markLocked(ns, k)
	}
	for k := range ns.acked {
		markLocked(ns, k)
	}
}

func markLocked(ns *nodeState, k wire.Resource) {
	if !ns.dirty[k] {
		ns.dirty[k] = true
		ns.order = append(ns.order, k)
	}
}

// Enqueue marks key as possibly changed for node.
func (d *Delivery) Enqueue(node string, key wire.Resource) {
	d.mu.Lock()
	ns := d.nodeLocked(node)
	markLocked(ns, key)
	live := ns.sender != nil && d.loaded
	d.mu.Unlock()
	if live {
		d.queue.Add(node)
	}
}

// Ack handles the edge's acknowledgement of message msgID.
func (d *Delivery) Ack(node, msgID string) {
	d.mu.Lock()
	ns := d.nodes[node]
	if ns == nil {
		d.mu.Unlock()
		return
	}
	f := ns.inflight[msgID]
	if f == nil {
		d.mu.Unlock()
		return // late ack of a message already retried or of an earlier session
	}
	delete(ns.inflight, msgID)
	delete(ns.byKey, f.key)
	delete(ns.attempts, f.key)
	d.stats.Acked++
	if f.del {
		delete(ns.acked, f.key)
	} else {
		ns.acked[f.key] = Acked{UID: f.obj.UID, APIVersion: f.obj.APIVersion, Kind: f.obj.Kind, ResourceVersion: f.obj.ResourceVersion}
	}
	d.mu.Unlock()
	if f.del {
		d.deps.Acks.Forget(node, f.key, f.prev)
	} else {
		d.deps.Acks.Record(node, f.key, Acked{UID: f.obj.UID, APIVersion: f.obj.APIVersion, Kind: f.obj.Kind, ResourceVersion: f.obj.ResourceVersion}, f.prev)
	}
	d.queue.Add(node)
}

// Stats returns a snapshot of the counters.
func (d *Delivery) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Pending returns the number of keys dirty or in flight for node.
func (d *Delivery) Pending(node string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns := d.nodes[node]
	if ns == nil {
		return 0
	}
	return len(ns.dirty) + len(ns.inflight)
}

// AckedVersions returns a copy of what node acknowledged.
func (d *Delivery) AckedVersions(node string) map[wire.Resource]Acked {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[wire.Resource]Acked{}
	if ns := d.nodes[node]; ns != nil {
		for k, v := range ns.acked {
			out[k] = v
		}
	}
	return out
}

// pump sends node's dirty keys while the window has room.
func (d *Delivery) pump(node string) {
	now := d.deps.Clock.Now()
	d.mu.Lock()
	ns := d.nodes[node]
	if ns == nil || ns.sender == nil || !d.loaded {
		d.mu.Unlock()
		return
	}
	d.retryDueLocked(ns, now)
	var sends []*flight
	sender := ns.sender
	i := 0
	for ; i < len(ns.order) && len(ns.inflight) < d.cfg.Window; i++ {
		k := ns.order[i]
		if ns.byKey[k] != nil {
			// Keep it dirty and in place: it is re-checked when its flight ends.
			continue
		}
		delete(ns.dirty, k)
		ns.order[i] = wire.Resource{} // removed below
		f := d.decideLocked(node, ns, k)
		if f == nil {
			continue
		}
		f.sentAt = now
		f.due = now.Add(d.backoff(ns.attempts[k]))
		ns.attempts[k]++
		ns.inflight[f.msgID] = f
		ns.byKey[k] = f
		sends = append(sends, f)
	}
	// Compact order: drop removed keys, keep the rest (still dirty) in order.
	kept := ns.order[:0]
	for j, k := range ns.order {
		if j < i && k.IsZero() {
			continue
		}
		kept = append(kept, k)
	}
	clear(ns.order[len(kept):])
	ns.order = kept
	d.armLocked(node, ns, now)
	d.stats.Sent += int64(len(sends))
	d.mu.Unlock()

	for _, f := range sends {
		m, err := d.message(now, f)
		if err == nil {
			err = sender.Send(m)
		}
		if err != nil {
			// The session is failing; the hub will report it ended, and the
			// retransmit timer covers the case where it does not.
			d.log.Debug("send failed", "node", node, "key", f.key, "err", err)
		}
	}
}

// decideLocked compares desired and acknowledged state for k.
func (d *Delivery) decideLocked(node string, ns *nodeState, k wire.Resource) *flight {
	obj, want := d.deps.Source.Lookup(node, k)
	acked, has := ns.acked[k]
	switch {
	case want && has && acked.ResourceVersion == obj.ResourceVersion && acked.UID == obj.UID:
		return nil
	case want:
		return &flight{msgID: wire.NewID(), key: k, obj: obj, prev: acked}
	case has:
		return &flight{msgID: wire.NewID(), key: k, del: true, prev: acked}
	}
	return nil
}

func (d *Delivery) message(now time.Time, f *flight) (wire.Message, error) {
	op := wire.OpUpdate
	switch {
	case f.del:
		op = wire.OpDelete
	case f.prev.ResourceVersion == "":
		op = wire.OpInsert
	}
	m := wire.Message{
		Header:    wire.Header{ID: f.msgID, Timestamp: now.UnixMilli(), ResourceVersion: f.obj.ResourceVersion},
		Source:    wire.SourceEdgeController,
		Group:     wire.GroupResource,
		Operation: op,
		Resource:  f.key,
		Content:   f.obj.Content,
	}
	if f.del {
		m.Header.ResourceVersion = f.prev.ResourceVersion
	}
	return m, nil
}

func (d *Delivery) backoff(attempt int) time.Duration {
	b := d.cfg.RetryInitial
	for range attempt {
		b *= 2
		if b >= d.cfg.RetryMax {
			return d.cfg.RetryMax
		}
	}
	return b
}

// retryDueLocked puts keys whose flight timed out back at the head of the queue.
func (d *Delivery) retryDueLocked(ns *nodeState, now time.Time) {
	var again []wire.Resource
	for id, f := range ns.inflight {
		if now.Before(f.due) {
			continue
		}
		delete(ns.inflight, id)
		delete(ns.byKey, f.key)
		d.stats.Retried++
		if !ns.dirty[f.key] {
			ns.dirty[f.key] = true
			again = append(again, f.key)
		}
	}
	if len(again) > 0 {
		ns.order = append(again, ns.order...)
	}
}

// armLocked sets the retransmit timer to the earliest due flight.
func (d *Delivery) armLocked(node string, ns *nodeState, now time.Time) {
	if ns.timer != nil {
		ns.timer.Stop()
		ns.timer = nil
	}
	var earliest time.Time
	for _, f := range ns.inflight {
		if earliest.IsZero() || f.due.Before(earliest) {
			earliest = f.due
		}
	}
	if earliest.IsZero() {
		return
	}
	ns.timer = d.deps.Clock.AfterFunc(earliest.Sub(now), func() { d.queue.Add(node) })
}
