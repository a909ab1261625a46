package metamanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Sender sends replies to the cloud (acks are never rate limited).
type Sender interface {
	SendNow(ctx context.Context, m wire.Message) error
}

// Config tunes batching.
type Config struct {
	// BatchSize is the most messages written in one transaction.
	BatchSize int
	// QueueSize bounds messages waiting to be persisted; when full, the
	// session reader waits, which back-pressures the cloud.
	QueueSize int
}

// Deps are MetaManager's collaborators.
type Deps struct {
	Store  store.Store
	Sender Sender
	Clock  clock.PassiveClock
	Logger *slog.Logger
	// Changed, if set, is told about each persisted change (for edged, later).
	Changed func(store.Change)
}

// Stats counts MetaManager's work.
type Stats struct {
	Received, Persisted, Rejected, Batches int64
}

// MetaManager is the edge's persistence of cloud objects.
type MetaManager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	in   chan wire.Message

	received, persisted, rejected, batches atomic.Int64
}

// New builds a MetaManager.
func New(cfg Config, deps Deps) (*MetaManager, error) {
	if deps.Store == nil || deps.Sender == nil || deps.Clock == nil {
		return nil, errors.New("metamanager: Store, Sender and Clock are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &MetaManager{cfg: cfg, deps: deps, log: deps.Logger.With("component", "metamanager"),
		in: make(chan wire.Message, cfg.QueueSize)}, nil
}

// Stats returns the counters.
func (mm *MetaManager) Stats() Stats {
	return Stats{Received: mm.received.Load(), Persisted: mm.persisted.Load(), Rejected: mm.rejected.Load(), Batches: mm.batches.Load()}
}

// Handle queues a message from the cloud; it blocks while the queue is full.
func (mm *MetaManager) Handle(ctx context.Context, m wire.Message) {
	mm.received.Add(1)
	select {
	case mm.in <- m:
	case <-ctx.Done():
	}
}

// Run persists and acknowledges queued messages until ctx is done.
func (mm *MetaManager) Run(ctx context.Context) error {
	batch := make([]wire.Message, 0, mm.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-mm.in:
			batch = append(batch[:0], m)
		}
	drain:
		for len(batch) < mm.cfg.BatchSize {
			select {
			case m := <-mm.in:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if err := mm.persist(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Unacknowledged messages are retransmitted by the cloud.
			mm.log.Error("persisting batch failed; the cloud will retransmit", "messages", len(batch), "err", err)
		}
	}
}

func (mm *MetaManager) persist(ctx context.Context, batch []wire.Message) error {
	changes := make([]store.Change, 0, len(batch))
	accepted := make([]wire.Message, 0, len(batch))
	for _, m := range batch {
		ch, err := toChange(m)
		if err != nil {
			mm.rejected.Add(1)
			mm.log.Warn("rejecting message from cloud", "msg", m.Header.ID, "resource", m.Resource, "err", err)
			_ = mm.deps.Sender.SendNow(ctx, wire.NewError(mm.deps.Clock.Now(), wire.SourceMetaManager, m.Header.ID, err.Error()))
			continue
		}
		changes = append(changes, ch)
		accepted = append(accepted, m)
	}
	if len(changes) == 0 {
		return nil
	}
	if err := mm.deps.Store.Apply(ctx, changes); err != nil {
		return fmt.Errorf("metamanager: %w", err)
	}
	mm.batches.Add(1)
	mm.persisted.Add(int64(len(changes)))
	now := mm.deps.Clock.Now()
	for i, m := range accepted {
		if mm.deps.Changed != nil {
			mm.deps.Changed(changes[i])
		}
		if err := mm.deps.Sender.SendNow(ctx, wire.NewAck(now, wire.SourceMetaManager, m)); err != nil {
			mm.log.Debug("ack not sent; the cloud will retransmit", "msg", m.Header.ID, "err", err)
		}
	}
	return nil
}

// persistable lists the types stored from cloud messages.
var persistable = map[wire.ResourceType]bool{
	wire.TypePod: true, wire.TypeConfigMap: true, wire.TypeSecret: true,
	wire.TypeServiceAccountToken: true, wire.TypeService: true, wire.TypeEndpoints: true,
	wire.TypeNode: true, wire.TypePersistentVolume: true, wire.TypePVC: true,
	wire.TypeVolumeAttachment: true, wire.TypeRule: true, wire.TypeRuleEndpoint: true,
	wire.TypeDevice: true, wire.TypeDeviceModel: true, wire.TypeMembership: true, wire.TypeTwin: true,
}

// objectMeta is the part of an object's content that must agree with the route.
type objectMeta struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// toChange validates m and turns it into a store change.
func toChange(m wire.Message) (store.Change, error) {
	r := m.Resource
	if !persistable[r.Type] {
		return store.Change{}, fmt.Errorf("resource type %q is not stored at the edge", r.Type)
	}
	if r.Name == "" {
		return store.Change{}, fmt.Errorf("resource %q names no object", r)
	}
	obj := store.Object{Type: string(r.Type), Namespace: r.Namespace, Name: r.Name, ResourceVersion: m.Header.ResourceVersion}
	switch m.Operation {
	case wire.OpDelete:
		return store.Change{Op: store.OpDelete, Object: obj}, nil
	case wire.OpInsert, wire.OpUpdate:
	default:
		return store.Change{}, fmt.Errorf("operation %q is not supported for %s", m.Operation, r.Type)
	}
	var meta objectMeta
	if len(m.Content) == 0 || m.Content[0] != '{' {
		return store.Change{}, fmt.Errorf("content of %s %s is not a JSON object", m.Operation, r)
	}
	if err := json.Unmarshal(m.Content, &meta); err != nil {
		return store.Change{}, fmt.Errorf("content of %s %s: %w", m.Operation, r, err)
	}
	if meta.Metadata.Name != r.Name || meta.Metadata.Namespace != r.Namespace {
		return store.Change{}, fmt.Errorf("content names %s/%s but the route says %s", meta.Metadata.Namespace, meta.Metadata.Name, r)
	}
	if obj.ResourceVersion == "" {
		obj.ResourceVersion = meta.Metadata.ResourceVersion
	}
	// The store refuses such text with ErrInvalid for the whole batch; caught
	// here, only this message is rejected instead of every message batched
	// with it, on every retransmission.
	if !utf8.ValidString(obj.ResourceVersion) || strings.IndexByte(obj.ResourceVersion, 0) >= 0 {
		return store.Change{}, fmt.Errorf("resourceVersion %q of %s is not UTF-8 text without NUL bytes", obj.ResourceVersion, r)
	}
	obj.Value = []byte(m.Content)
	return store.Change{Op: store.OpPut, Object: obj}, nil
}
