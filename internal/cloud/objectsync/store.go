package objectsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

var _ delivery.AckStore = (*Store)(nil)

// ErrAlreadyRun is returned by a second call of Run: the write queue of a
// Store is shut down for good when its first Run ends.
var ErrAlreadyRun = errors.New("objectsync: Run called more than once")

const (
	defaultWorkers = 4
	// Retry delays of a failed write, per item. The cap is short because a
	// pending record only matters if cloudcore restarts before it lands, and
	// the apiserver's own rate limit (the caller's rest config) bounds load.
	retryBase = 50 * time.Millisecond
	retryMax  = 30 * time.Second
	// listPageSize is LoadAll's page size; listAttempts bounds restarts of a
	// listing whose continue token expired.
	listPageSize = 500
	listAttempts = 3
)

// Config tunes a Store. The write rate is limited by the rest config behind
// Deps.Dynamic (QPS, Burst), not here.
type Config struct {
	// Workers is the number of concurrent writers; 0 means 4.
	Workers int
}

// Deps are a Store's collaborators.
type Deps struct {
	Dynamic dynamic.Interface
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
}

// Store keeps ObjectSync and ClusterObjectSync records in the apiserver. It
// implements delivery.AckStore.
type Store struct {
	workers int
	dyn     dynamic.Interface
	log     *slog.Logger
	w       writer // dynamicWriter, or a fake in tests

	mu       sync.Mutex
	pending  map[item]*op                               // guarded by mu; not yet taken by a worker
	inflight int                                        // guarded by mu; ops taken by workers and not finished
	idle     chan struct{}                              // guarded by mu; closed when pending and inflight are empty
	queue    workqueue.TypedRateLimitingInterface[item] // guarded by mu; nil until Run
	ran      bool                                       // guarded by mu
}

// New builds a Store. It starts nothing: Record and Forget collect writes
// until Run.
func New(cfg Config, deps Deps) (*Store, error) {
	if deps.Dynamic == nil {
		return nil, errors.New("objectsync: Deps.Dynamic is required")
	}
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("objectsync: Workers %d is negative", cfg.Workers)
	}
	if cfg.Workers == 0 {
		cfg.Workers = defaultWorkers
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Store{
		workers: cfg.Workers,
		dyn:     deps.Dynamic,
		log:     log.With("component", "objectsync"),
		w:       dynamicWriter{dyn: deps.Dynamic},
		pending: map[item]*op{},
	}, nil
}

// Run writes records until ctx is done. Writes still pending then are
// dropped: at-least-once delivery turns a lost record into a resend.
func (s *Store) Run(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[item](retryBase, retryMax),
		workqueue.TypedRateLimitingQueueConfig[item]{Name: "objectsync"},
	)
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		q.ShutDown()
		return ErrAlreadyRun
	}
	s.ran = true
	s.queue = q
	for it := range s.pending {
		q.Add(it)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			for s.processNext(ctx, q) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

// Record implements delivery.AckStore: node's record of key becomes a, and
// the record of prev goes if prev is another incarnation of the object.
func (s *Store) Record(node string, key wire.Resource, a delivery.Acked, prev delivery.Acked) {
	err := checkRecord(node, key, a.UID)
	if err == nil && a.ResourceVersion == "" {
		err = fmt.Errorf("%w: key %s on node %s has an empty resourceVersion", ErrInvalidRecord, key, node)
	}
	if err != nil {
		// The edge has the object; without a record a restart resends it.
		s.log.Error("acknowledgement not recorded", "node", node, "key", key, "err", err)
		return
	}
	s.enqueue(item{node: node, key: key}, recordOp(a, prev))
}

// Forget implements delivery.AckStore: node's record of prev goes.
func (s *Store) Forget(node string, key wire.Resource, prev delivery.Acked) {
	if prev.UID == "" {
		return // never recorded
	}
	if err := checkRecord(node, key, prev.UID); err != nil {
		s.log.Error("deletion not recorded", "node", node, "key", key, "err", err)
		return
	}
	s.enqueue(item{node: node, key: key}, forgetOp(prev))
}

func (s *Store) enqueue(it item, o *op) {
	s.mu.Lock()
	s.pending[it] = merge(s.pending[it], o)
	q := s.queue
	s.mu.Unlock()
	if q != nil {
		q.Add(it)
	}
}

// addDelete queues the deletion of node's record of key under uid, unless a
// pending write recreates it.
func (s *Store) addDelete(it item, uid string) {
	s.mu.Lock()
	cur := s.pending[it]
	if cur != nil && cur.apply != nil && cur.apply.UID == uid {
		s.mu.Unlock()
		return
	}
	s.pending[it] = merge(cur, &op{deletes: []string{uid}})
	q := s.queue
	s.mu.Unlock()
	if q != nil {
		q.Add(it)
	}
}

// Pending returns the number of keys whose writes have not landed yet,
// including those waiting for a retry.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) + s.inflight
}

// Flush waits until every write recorded so far has landed (or was dropped
// as impossible), or ctx is done.
func (s *Store) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.pending) + s.inflight
		if n == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("objectsync: flush: %d keys still pending: %w", n, ctx.Err())
		}
	}
}

// processNext takes one item off q and writes it; false means stop.
func (s *Store) processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[item]) bool {
	it, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(it)
	if ctx.Err() != nil {
		return false // shutting down: what is left stays pending
	}
	s.mu.Lock()
	o := s.pending[it]
	delete(s.pending, it)
	if o != nil {
		s.inflight++
	}
	s.mu.Unlock()
	if o == nil {
		// Already written by an earlier pass (the item was queued twice).
		q.Forget(it)
		return true
	}

	err := s.write(ctx, it, o)

	s.mu.Lock()
	s.inflight--
	retry := false
	switch {
	case err == nil:
	case permanent(err):
		s.log.Error("acknowledgement record dropped: the apiserver rejects it", "node", it.node, "key", it.key, "err", err)
	default:
		// Anything newer recorded meanwhile wins over what is left of o.
		s.pending[it] = merge(o, s.pending[it])
		retry = true
	}
	s.notifyIdleLocked()
	s.mu.Unlock()

	if retry {
		// Warn once per failing key; an apiserver outage fails every key
		// again and again, and one line each is enough to see it.
		if n := q.NumRequeues(it); ctx.Err() == nil {
			level := slog.LevelDebug
			if n == 0 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "acknowledgement record write failed; retrying", "node", it.node, "key", it.key,
				"attempt", n+1, "err", err)
		}
		// Back off per item; the delay grows until a write of it succeeds.
		q.AddRateLimited(it)
	} else {
		// Success or a permanent failure ends the item's back-off, so its
		// next change is written at once.
		q.Forget(it)
	}
	return true
}

func (s *Store) notifyIdleLocked() {
	if len(s.pending) == 0 && s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// write brings the records of it to o's state: deletions first, so that a crash
// in between leaves no record rather than two for one key. o is trimmed as
// parts land, so a retry repeats only what failed.
func (s *Store) write(ctx context.Context, it item, o *op) error {
	for len(o.deletes) > 0 {
		name := RecordName(it.node, o.deletes[0])
		if err := s.w.delete(ctx, it.key.Namespace, name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		o.deletes = o.deletes[1:]
	}
	if o.apply != nil {
		obj := recordObject(it.node, it.key, *o.apply)
		if err := s.w.apply(ctx, obj); err != nil {
			return fmt.Errorf("apply %s: %w", recordID(obj), err)
		}
		o.apply = nil
	}
	return nil
}

// permanent reports whether retrying a write cannot help: the record is
// invalid, or its namespace is gone or going (then so is the object, and
// its deletion follows).
func permanent(err error) bool {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return true
	}
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return true
	}
	var status apierrors.APIStatus
	if apierrors.IsNotFound(err) && errors.As(err, &status) {
		if d := status.Status().Details; d != nil && d.Kind == "namespaces" {
			return true
		}
	}
	return false
}

// LoadAll implements delivery.AckStore. It reads every record from the
// apiserver (not writes still pending in s). Records that cannot be read
// back are skipped with a warning; when two records claim one key, the
// newest is kept and the others are queued for deletion.
func (s *Store) LoadAll(ctx context.Context) (map[string]map[wire.Resource]delivery.Acked, error) {
	var err error
	for range listAttempts {
		var out map[string]map[wire.Resource]delivery.Acked
		out, err = s.loadAll(ctx)
		if err == nil || !apierrors.IsResourceExpired(err) {
			return out, err
		}
		s.log.Info("listing records took longer than the apiserver keeps its snapshot; starting over", "err", err)
	}
	return nil, err
}

type loaded struct {
	acked delivery.Acked
	obj   *unstructured.Unstructured
}

func (s *Store) loadAll(ctx context.Context) (map[string]map[wire.Resource]delivery.Acked, error) {
	seen := map[item]loaded{}
	type staleRecord struct {
		it  item
		uid string
	}
	var stale []staleRecord
	for _, gvr := range []struct {
		res  dynamic.ResourceInterface
		name string
	}{
		{s.dyn.Resource(ObjectSyncResource), ObjectSyncResource.GroupResource().String()},
		{s.dyn.Resource(ClusterObjectSyncResource), ClusterObjectSyncResource.GroupResource().String()},
	} {
		opts := metav1.ListOptions{Limit: listPageSize}
		for {
			list, err := gvr.res.List(ctx, opts)
			if err != nil {
				if apierrors.IsNotFound(err) {
					return nil, fmt.Errorf("objectsync: list %s (are the CRDs installed?): %w", gvr.name, err)
				}
				return nil, fmt.Errorf("objectsync: list %s: %w", gvr.name, err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				node, key, a, err := decodeRecord(u)
				if err != nil {
					s.log.Warn("skipping acknowledgement record", "record", recordID(u), "err", err)
					continue
				}
				it := item{node: node, key: key}
				prev, dup := seen[it]
				if !dup {
					seen[it] = loaded{acked: a, obj: u}
					continue
				}
				keep, drop := prev, loaded{acked: a, obj: u}
				if newer(u, prev.obj) {
					keep, drop = drop, keep
				}
				s.log.Warn("two acknowledgement records for one key; keeping the newer", "node", node, "key", key,
					"kept", recordID(keep.obj), "deleting", recordID(drop.obj))
				seen[it] = keep
				stale = append(stale, staleRecord{it, drop.acked.UID})
			}
			next := list.GetContinue()
			if next == "" {
				break
			}
			if next == opts.Continue {
				// A server that never advances would keep us here forever.
				return nil, fmt.Errorf("objectsync: list %s: apiserver returned continue token %q twice", gvr.name, next)
			}
			opts.Continue = next
		}
	}
	out := map[string]map[wire.Resource]delivery.Acked{}
	for it, l := range seen {
		m := out[it.node]
		if m == nil {
			m = map[wire.Resource]delivery.Acked{}
			out[it.node] = m
		}
		m[it.key] = l.acked
	}
	for _, st := range stale {
		s.addDelete(st.it, st.uid)
	}
	return out, nil
}

// newer orders records by creation time, then name, so that the choice
// between duplicates is the same on every replica.
func newer(a, b *unstructured.Unstructured) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return tb.Before(&ta)
	}
	return a.GetName() > b.GetName()
}
