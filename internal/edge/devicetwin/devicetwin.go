package devicetwin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// Store object types DeviceTwin reads (written by MetaManager) and owns.
const (
	TypeDevice      = string(wire.TypeDevice)
	TypeDeviceModel = string(wire.TypeDeviceModel)
	TypeTwinDoc     = "devicetwin"
)

// ErrStopped is returned by requests made after Run ended.
var ErrStopped = errors.New("devicetwin: stopped")

// Uplink sends to the cloud (EdgeHub).
type Uplink interface {
	Send(ctx context.Context, m wire.Message) error
}

// Config tunes DeviceTwin.
type Config struct {
	// NodeName is this node; only devices bound to it are members.
	NodeName string
	// SyncInterval is how often unacknowledged reports are sent upstream,
	// batched.
	SyncInterval time.Duration
	// AckTimeout is how long an upstream batch may wait for its
	// acknowledgement before it is resent.
	AckTimeout time.Duration
	// ReportBatch is the most devices per upstream message.
	ReportBatch int
	// Window is the most upstream messages waiting for acknowledgement.
	Window int
	// MaxBatch is the most requests persisted in one store transaction.
	MaxBatch int
}

// Deps are DeviceTwin's collaborators.
type Deps struct {
	Store store.Store
	// Uplink, if set, carries reports to the cloud.
	Uplink Uplink
	// Publish, if set, publishes asynchronous MQTT events (deltas and
	// documents caused by the cloud or mappers, membership, connectivity).
	// It must not block for long.
	Publish func(Publication)
	// Changed, if set, is told the id of every device whose mapper view
	// (Device, model or expected values) may have changed, or that was
	// removed; it must not block.
	Changed func(id string)
	Clock   clock.WithTicker
	Logger  *slog.Logger
}

// Stats counts DeviceTwin's work.
type Stats struct {
	Requests, Refused, Commits, CommitFailures int64
	ReportsSent, ReportsAcked, BatchesSent     int64
	BadObjects                                 int64
}

// member is a device bound to this node.
type member struct {
	id  string
	dev *v1beta1.Device
}

// flight is an upstream batch waiting for its acknowledgement.
type flight struct {
	seqs     map[string]int64
	deadline time.Time
}

// DeviceTwin is the edge's device state.
type DeviceTwin struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	reqs chan *request
	in   inbox
	done chan struct{} // closed when Run returns

	// Owned by the Run goroutine.
	members  map[string]*member
	models   map[string]*v1beta1.DeviceModel // by namespace/name
	docs     map[string]*twinDoc
	inflight map[string]*flight // by message id
	flying   map[string]string  // device id → message id
	online   bool
	sendq    chan wire.Message

	requests, refused, commits, commitFailures atomic.Int64
	reportsSent, reportsAcked, batchesSent     atomic.Int64
	badObjects                                 atomic.Int64
}

// New builds a DeviceTwin; nothing runs until Run.
func New(cfg Config, deps Deps) (*DeviceTwin, error) {
	if deps.Store == nil || deps.Clock == nil {
		return nil, errors.New("devicetwin: Store and Clock are required")
	}
	if err := wire.ValidateNodeName(cfg.NodeName); err != nil {
		return nil, fmt.Errorf("devicetwin: %w", err)
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 200 * time.Millisecond
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.ReportBatch <= 0 || cfg.ReportBatch > wire.MaxDevicesPerReport {
		cfg.ReportBatch = 500
	}
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &DeviceTwin{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "devicetwin"),
		reqs: make(chan *request, cfg.MaxBatch), done: make(chan struct{}),
		in:      inbox{signal: make(chan struct{}, 1)},
		members: map[string]*member{}, models: map[string]*v1beta1.DeviceModel{},
		docs: map[string]*twinDoc{}, inflight: map[string]*flight{}, flying: map[string]string{},
		sendq: make(chan wire.Message, cfg.Window),
	}, nil
}

// Stats returns the counters.
func (dt *DeviceTwin) Stats() Stats {
	return Stats{
		Requests: dt.requests.Load(), Refused: dt.refused.Load(), Commits: dt.commits.Load(),
		CommitFailures: dt.commitFailures.Load(), ReportsSent: dt.reportsSent.Load(),
		ReportsAcked: dt.reportsAcked.Load(), BatchesSent: dt.batchesSent.Load(), BadObjects: dt.badObjects.Load(),
	}
}

// inbox holds notifications until the Run goroutine takes them; pushing
// never blocks.
type inbox struct {
	mu     sync.Mutex
	dirty  map[string]bool // "device/ns/name" or "devicemodel/ns/name"; guarded by mu
	acks   []wire.Message  // guarded by mu
	failed []string        // message ids whose send failed; guarded by mu
	conn   []bool          // connectivity changes in order; guarded by mu
	signal chan struct{}
}

func (b *inbox) push(f func()) {
	b.mu.Lock()
	f()
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// Notify tells DeviceTwin that MetaManager persisted ch; only devices and
// device models matter. It never blocks: the key is marked dirty and the
// current object is read from the store later (level-triggered).
func (dt *DeviceTwin) Notify(ch store.Change) {
	if ch.Object.Type != TypeDevice && ch.Object.Type != TypeDeviceModel {
		return
	}
	key := ch.Object.Type + "/" + ch.Object.Namespace + "/" + ch.Object.Name
	dt.in.push(func() {
		if dt.in.dirty == nil {
			dt.in.dirty = map[string]bool{}
		}
		dt.in.dirty[key] = true
	})
}

// HandleAck takes the cloud's response to an upstream message; it never blocks.
func (dt *DeviceTwin) HandleAck(m wire.Message) {
	dt.in.push(func() { dt.in.acks = append(dt.in.acks, m) })
}

// SetConnected reports cloud connectivity; it never blocks.
func (dt *DeviceTwin) SetConnected(up bool) {
	dt.in.push(func() { dt.in.conn = append(dt.in.conn, up) })
}

// request is work for the Run goroutine.
type request struct {
	run  func(tx *txn)
	done chan error // nil after commit, else the commit error; buffered
}

// do runs f in the Run goroutine and waits until its batch is committed.
func (dt *DeviceTwin) do(ctx context.Context, f func(tx *txn)) error {
	dt.requests.Add(1)
	r := &request{run: f, done: make(chan error, 1)}
	select {
	case dt.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-dt.done:
		return ErrStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-dt.done:
		// Run may have committed it just before ending.
		select {
		case err := <-r.done:
			return err
		default:
			return ErrStopped
		}
	}
}

// txn collects the changes of one batch; docs are copied on first write so
// that a failed commit leaves the state as it was.
type txn struct {
	dt      *DeviceTwin
	now     time.Time
	put     map[string]*twinDoc
	del     map[string]bool
	pubs    []Publication
	changed map[string]bool
}

// doc returns the current document of id for modification (a copy), or
// nil if id has none.
func (tx *txn) doc(id string) *twinDoc {
	if d := tx.put[id]; d != nil {
		return d
	}
	if tx.del[id] {
		return nil
	}
	if d := tx.dt.docs[id]; d != nil {
		return d.clone()
	}
	return nil
}

// view returns the current document of id for reading.
func (tx *txn) view(id string) *twinDoc {
	if d := tx.put[id]; d != nil {
		return d
	}
	if tx.del[id] {
		return nil
	}
	return tx.dt.docs[id]
}

func (tx *txn) save(id string, d *twinDoc) {
	tx.put[id] = d
	delete(tx.del, id)
}

func (tx *txn) remove(id string) {
	delete(tx.put, id)
	tx.del[id] = true
}

func (tx *txn) publish(p ...Publication) { tx.pubs = append(tx.pubs, p...) }

func (tx *txn) touch(id string) { tx.changed[id] = true }

// Run loads the state from the store and serves until ctx is done.
func (dt *DeviceTwin) Run(ctx context.Context) error {
	defer close(dt.done)
	if err := dt.load(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dt.sender(ctx)
	}()
	defer wg.Wait()
	tick := dt.deps.Clock.NewTicker(dt.cfg.SyncInterval)
	defer tick.Stop()
	// Every device is reconciled at start: desired values the cloud changed
	// before a crash are applied even if MetaManager's hook was missed.
	dt.in.push(func() {
		if dt.in.dirty == nil {
			dt.in.dirty = map[string]bool{}
		}
		for id := range dt.members {
			dt.in.dirty[TypeDevice+"/"+id] = true
		}
	})
	batch := make([]*request, 0, dt.cfg.MaxBatch)
	for {
		batch = batch[:0]
		sync := false
		select {
		case <-ctx.Done():
			return nil
		case r := <-dt.reqs:
			batch = append(batch, r)
		drain:
			for len(batch) < dt.cfg.MaxBatch {
				select {
				case r := <-dt.reqs:
					batch = append(batch, r)
				default:
					break drain
				}
			}
		case <-dt.in.signal:
		case <-tick.C():
			sync = true
		}
		dt.step(ctx, batch)
		if sync {
			dt.sync(ctx)
		}
	}
}

// load reads devices, models and twin documents from the store.
func (dt *DeviceTwin) load(ctx context.Context) error {
	models, err := dt.deps.Store.List(ctx, TypeDeviceModel, "")
	if err != nil {
		return fmt.Errorf("devicetwin: load models: %w", err)
	}
	for _, o := range models {
		var m v1beta1.DeviceModel
		if err := json.Unmarshal(o.Value, &m); err != nil {
			dt.badObjects.Add(1)
			dt.log.Error("stored device model is unreadable; ignoring it", "model", o.Namespace+"/"+o.Name, "err", err)
			continue
		}
		dt.models[o.Namespace+"/"+o.Name] = &m
	}
	devs, err := dt.deps.Store.List(ctx, TypeDevice, "")
	if err != nil {
		return fmt.Errorf("devicetwin: load devices: %w", err)
	}
	for _, o := range devs {
		if dev := dt.parseDevice(o); dev != nil {
			id := o.Namespace + "/" + o.Name
			dt.members[id] = &member{id: id, dev: dev}
		}
	}
	docs, err := dt.deps.Store.List(ctx, TypeTwinDoc, "")
	if err != nil {
		return fmt.Errorf("devicetwin: load twins: %w", err)
	}
	for _, o := range docs {
		d := newDoc()
		if err := json.Unmarshal(o.Value, d); err != nil {
			dt.badObjects.Add(1)
			dt.log.Error("stored twin document is unreadable; starting it afresh", "device", o.Namespace+"/"+o.Name, "err", err)
			continue
		}
		if d.Props == nil {
			d.Props = map[string]*propState{}
		}
		dt.docs[o.Namespace+"/"+o.Name] = d
	}
	dt.log.Info("device twin loaded", "devices", len(dt.members), "models", len(dt.models), "twins", len(dt.docs))
	return nil
}

// parseDevice decodes a stored Device bound to this node, or returns nil.
func (dt *DeviceTwin) parseDevice(o store.Object) *v1beta1.Device {
	var dev v1beta1.Device
	if err := json.Unmarshal(o.Value, &dev); err != nil {
		dt.badObjects.Add(1)
		dt.log.Error("stored device is unreadable; ignoring it", "device", o.Namespace+"/"+o.Name, "err", err)
		return nil
	}
	if dev.Spec.NodeName != dt.cfg.NodeName {
		dt.log.Warn("stored device is bound to another node; ignoring it", "device", o.Namespace+"/"+o.Name, "nodeName", dev.Spec.NodeName)
		return nil
	}
	return &dev
}

func (dt *DeviceTwin) modelOf(dev *v1beta1.Device) *v1beta1.DeviceModel {
	return dt.models[dev.Namespace+"/"+dev.ModelName()]
}

// step applies pending notifications and batch, commits, then answers.
func (dt *DeviceTwin) step(ctx context.Context, batch []*request) {
	tx := &txn{dt: dt, now: dt.deps.Clock.Now(), put: map[string]*twinDoc{}, del: map[string]bool{}, changed: map[string]bool{}}
	dt.in.mu.Lock()
	dirty, acks, failed, conn := dt.in.dirty, dt.in.acks, dt.in.failed, dt.in.conn
	dt.in.dirty, dt.in.acks, dt.in.failed, dt.in.conn = nil, nil, nil, nil
	dt.in.mu.Unlock()

	for _, up := range conn {
		dt.setOnline(tx, up)
	}
	for _, id := range failed {
		dt.dropFlight(id)
	}
	var added, removed []DeviceInfo
	if len(dirty) > 0 {
		added, removed = dt.reconcile(ctx, tx, dirty)
	}
	for _, m := range acks {
		dt.ack(tx, m)
	}
	for _, r := range batch {
		r.run(tx)
	}
	if len(added)+len(removed) > 0 {
		tx.publish(Publication{Topic: NodeTopic(dt.cfg.NodeName, SuffixMembershipUpdated), Payload: marshal(MembershipUpdated{
			BaseMessage:  BaseMessage{EventID: wire.NewID(), Timestamp: tx.now.UnixMilli()},
			AddedDevices: nonNil(added), RemovedDevices: nonNil(removed),
		})})
	}
	err := dt.commit(ctx, tx)
	if err != nil {
		dt.commitFailures.Add(1)
		dt.log.Error("persisting device twins failed; the batch is refused", "requests", len(batch), "err", err)
		// Notifications are level-triggered: mark them again so that the
		// next step retries them.
		if len(dirty) > 0 {
			dt.in.push(func() {
				if dt.in.dirty == nil {
					dt.in.dirty = map[string]bool{}
				}
				for k := range dirty {
					dt.in.dirty[k] = true
				}
			})
		}
	}
	for _, r := range batch {
		r.done <- err
	}
}

func nonNil(s []DeviceInfo) []DeviceInfo {
	if s == nil {
		return []DeviceInfo{}
	}
	return s
}

func (dt *DeviceTwin) commit(ctx context.Context, tx *txn) error {
	if len(tx.put)+len(tx.del) > 0 {
		changes := make([]store.Change, 0, len(tx.put)+len(tx.del))
		for id, d := range tx.put {
			ns, name, _ := strings.Cut(id, "/")
			b, err := json.Marshal(d)
			if err != nil {
				return fmt.Errorf("devicetwin: encode twin of %s: %w", id, err)
			}
			changes = append(changes, store.Change{Op: store.OpPut, Object: store.Object{Type: TypeTwinDoc, Namespace: ns, Name: name, Value: b}})
		}
		for id := range tx.del {
			ns, name, _ := strings.Cut(id, "/")
			changes = append(changes, store.Change{Op: store.OpDelete, Object: store.Object{Type: TypeTwinDoc, Namespace: ns, Name: name}})
		}
		if err := dt.deps.Store.Apply(ctx, changes); err != nil {
			return err
		}
		dt.commits.Add(1)
		for id, d := range tx.put {
			dt.docs[id] = d
		}
		for id := range tx.del {
			delete(dt.docs, id)
		}
	}
	if dt.deps.Publish != nil {
		for _, p := range tx.pubs {
			dt.deps.Publish(p)
		}
	}
	if dt.deps.Changed != nil {
		for id := range tx.changed {
			dt.deps.Changed(id)
		}
	}
	return nil
}

// reconcile re-reads dirty devices and models from the store.
func (dt *DeviceTwin) reconcile(ctx context.Context, tx *txn, dirty map[string]bool) (added, removed []DeviceInfo) {
	devices := map[string]bool{}
	for key := range dirty {
		typ, id, _ := strings.Cut(key, "/")
		ns, name, _ := strings.Cut(id, "/")
		switch typ {
		case TypeDeviceModel:
			o, err := dt.deps.Store.Get(ctx, TypeDeviceModel, ns, name)
			switch {
			case errors.Is(err, store.ErrNotFound):
				delete(dt.models, id)
			case err != nil:
				dt.log.Error("cannot read device model", "model", id, "err", err)
				continue
			default:
				var m v1beta1.DeviceModel
				if err := json.Unmarshal(o.Value, &m); err != nil {
					dt.badObjects.Add(1)
					dt.log.Error("device model from the cloud is unreadable; ignoring it", "model", id, "err", err)
					continue
				}
				dt.models[id] = &m
			}
			for mid, m := range dt.members {
				if m.dev.Namespace == ns && m.dev.ModelName() == name {
					devices[mid] = true
				}
			}
		case TypeDevice:
			devices[id] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(devices)) {
		ns, name, _ := strings.Cut(id, "/")
		var dev *v1beta1.Device
		o, err := dt.deps.Store.Get(ctx, TypeDevice, ns, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			dt.log.Error("cannot read device", "device", id, "err", err)
			continue
		default:
			dev = dt.parseDevice(o)
		}
		old := dt.members[id]
		if dev == nil {
			if old != nil {
				delete(dt.members, id)
				removed = append(removed, DeviceInfo{ID: id, Name: name})
			}
			if tx.view(id) != nil {
				tx.remove(id)
			}
			tx.touch(id)
			continue
		}
		dt.members[id] = &member{id: id, dev: dev}
		if old == nil {
			added = append(added, DeviceInfo{ID: id, Name: name})
		}
		tx.touch(id)
		doc := tx.doc(id)
		isNew := doc == nil
		if isNew {
			doc = newDoc()
		}
		model := dt.modelOf(dev)
		if model == nil {
			if isNew {
				tx.save(id, doc)
			}
			continue
		}
		up, skipped := applyCloudDesired(doc, dev, model, tx.now)
		for _, s := range skipped {
			dt.log.Warn("desired value from the cloud not applied", "device", id, "reason", s)
		}
		if isNew || len(up.changed) > 0 {
			tx.save(id, doc)
		}
		tx.publish(twinEvents(id, doc, model, up, tx.now)...)
	}
	return added, removed
}

// twinEvents are the delta and document publications of an accepted change.
func twinEvents(id string, doc *twinDoc, model *v1beta1.DeviceModel, up twinUpdate, now time.Time) []Publication {
	if len(up.changed) == 0 {
		return nil
	}
	var out []Publication
	base := BaseMessage{EventID: wire.NewID(), Timestamp: now.UnixMilli()}
	if d := delta(doc); len(d) > 0 {
		out = append(out, Publication{Topic: DeviceTopic(id, SuffixTwinUpdateDelta), Payload: marshal(TwinUpdate{
			BaseMessage: base, Twin: twinMap(doc, model, slices.Sorted(maps.Keys(d))), Delta: d,
		})})
	}
	docMsg := TwinDocument{BaseMessage: base, Twin: map[string]*DocPair{}}
	for _, name := range up.changed {
		mp, _ := model.Property(name)
		pair := &DocPair{Current: doc.Props[name].msgTwin(mp)}
		if b := up.before[name]; b != nil {
			pair.Last = b.msgTwin(mp)
		}
		docMsg.Twin[name] = pair
	}
	out = append(out, Publication{Topic: DeviceTopic(id, SuffixTwinUpdateDocument), Payload: marshal(docMsg)})
	return out
}

func (dt *DeviceTwin) setOnline(tx *txn, up bool) {
	dt.online = up
	// Whatever was in flight went with the old session.
	clear(dt.inflight)
	clear(dt.flying)
	topic := DisconnectedTopic(dt.cfg.NodeName)
	if up {
		topic = ConnectedTopic(dt.cfg.NodeName)
	}
	tx.publish(Publication{Topic: topic, Payload: marshal(BaseMessage{EventID: wire.NewID(), Timestamp: tx.now.UnixMilli()})})
}

func (dt *DeviceTwin) dropFlight(msgID string) {
	f := dt.inflight[msgID]
	if f == nil {
		return
	}
	delete(dt.inflight, msgID)
	for id := range f.seqs {
		if dt.flying[id] == msgID {
			delete(dt.flying, id)
		}
	}
}

// ack applies the cloud's response to an upstream batch.
func (dt *DeviceTwin) ack(tx *txn, m wire.Message) {
	f := dt.inflight[m.Header.ParentID]
	if f == nil {
		return // a response to something else, or to a batch already given up
	}
	if len(m.Content) > 0 && m.Content[0] == '{' {
		var res wire.DeviceReportResult
		if err := json.Unmarshal(m.Content, &res); err == nil {
			for _, r := range res.Refused {
				dt.log.Warn("the cloud refused a device report; it will not be retried", "device", r.Namespace+"/"+r.Name, "reason", r.Reason)
			}
		}
	}
	dt.dropFlight(m.Header.ParentID)
	for id, seq := range f.seqs {
		d := tx.doc(id)
		if d == nil {
			continue
		}
		if acked(d, seq) {
			tx.save(id, d)
			dt.reportsAcked.Add(1)
		}
	}
}

// sync sends unacknowledged reports upstream, batched, within the window.
func (dt *DeviceTwin) sync(ctx context.Context) {
	now := dt.deps.Clock.Now()
	for msgID, f := range dt.inflight {
		if now.After(f.deadline) {
			dt.log.Debug("device report not acknowledged in time; resending", "msg", msgID)
			dt.dropFlight(msgID)
		}
	}
	if !dt.online || dt.deps.Uplink == nil {
		return
	}
	var pending []string
	for id, d := range dt.docs {
		if d.Seq > d.Synced && dt.flying[id] == "" && dt.members[id] != nil {
			pending = append(pending, id)
		}
	}
	slices.Sort(pending)
	for len(pending) > 0 && len(dt.inflight) < dt.cfg.Window {
		n := min(len(pending), dt.cfg.ReportBatch)
		var b wire.DeviceReportBatch
		f := &flight{seqs: map[string]int64{}, deadline: now.Add(dt.cfg.AckTimeout)}
		for _, id := range pending[:n] {
			d := dt.docs[id]
			m := dt.members[id]
			b.Devices = append(b.Devices, report(m.dev.Namespace, m.dev.Name, d, dt.modelOf(m.dev)))
			f.seqs[id] = d.Seq
		}
		pending = pending[n:]
		msg, err := wire.New(now, "devicetwin", wire.GroupResource, wire.OpUpdate, wire.TwinReportResource(dt.cfg.NodeName), b)
		if err != nil {
			dt.log.Error("cannot encode device reports", "err", err)
			return
		}
		select {
		case dt.sendq <- msg:
		default:
			return // the sender is behind; try again next tick
		}
		dt.inflight[msg.Header.ID] = f
		for id := range f.seqs {
			dt.flying[id] = msg.Header.ID
		}
		dt.batchesSent.Add(1)
		dt.reportsSent.Add(int64(n))
	}
}

// sender writes upstream batches; Send may wait for EdgeHub's rate limiter.
func (dt *DeviceTwin) sender(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-dt.sendq:
			if err := dt.deps.Uplink.Send(ctx, m); err != nil {
				id := m.Header.ID
				dt.in.push(func() { dt.in.failed = append(dt.in.failed, id) })
			}
		}
	}
}
