package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

const (
	// LabelEdgeRole marks a Node as an edge node (KubeEdge's label).
	LabelEdgeRole = "node-role.kubernetes.io/edge"
	// LeaseNamespace holds node heartbeats, as for the kubelet.
	LeaseNamespace = corev1.NamespaceNodeLease

	// A write that fails is retried with back-off this many times; after
	// that it is dropped, because the edge reports again anyway (status every
	// nodeStatusUpdateFrequency, heartbeats with every keepalive).
	maxRetries   = 8
	retryInitial = 200 * time.Millisecond
	retryMax     = 30 * time.Second
)

// Labels the edge may not leave stale on an existing Node (the kubelet
// reconciles the same ones); other labels an admin changed are kept.
var reconciledLabels = map[string]bool{
	"kubernetes.io/hostname": true,
	"kubernetes.io/os":       true,
	"kubernetes.io/arch":     true,
}

var (
	// ErrNameMismatch: an edge tried to register a Node under another name.
	ErrNameMismatch = errors.New("nodes: name mismatch")
	// ErrConfig is wrapped by errors about a bad Config or Deps.
	ErrConfig = errors.New("nodes: invalid config")
)

// Config tunes the Manager; zero fields take the defaults of DefaultConfig.
type Config struct {
	// LeaseDurationSeconds is written into each Lease (kubelet: 40).
	LeaseDurationSeconds int32
	// StatusResync is how often status is written even if unchanged.
	StatusResync time.Duration
	// Workers write status and leases in parallel.
	Workers int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{LeaseDurationSeconds: 40, StatusResync: 60 * time.Second, Workers: 8}
}

// Validate checks c without side effects; zero fields are valid (defaults).
func (c Config) Validate() error {
	switch {
	case c.LeaseDurationSeconds < 0:
		return fmt.Errorf("%w: LeaseDurationSeconds %d is negative", ErrConfig, c.LeaseDurationSeconds)
	case c.StatusResync < 0:
		return fmt.Errorf("%w: StatusResync %s is negative", ErrConfig, c.StatusResync)
	case c.Workers < 0:
		return fmt.Errorf("%w: Workers %d is negative", ErrConfig, c.Workers)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.LeaseDurationSeconds == 0 {
		c.LeaseDurationSeconds = d.LeaseDurationSeconds
	}
	if c.StatusResync == 0 {
		c.StatusResync = d.StatusResync
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	return c
}

// Deps are the Manager's collaborators. Clock defaults to the real clock and
// Logger to slog.Default().
type Deps struct {
	Client kubernetes.Interface
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// Stats counts the Manager's work, for metrics and tests.
type Stats struct {
	Registrations int64 // Register calls that succeeded
	NodeCreates   int64
	LabelPatches  int64
	StatusWrites  int64 // Node status writes, by Register and UpdateStatus
	StatusSkips   int64 // statuses that needed no write
	LeaseWrites   int64 // Lease creates and renewals
	LeaseSkips    int64 // heartbeats not written: the lease was renewed recently
	WriteErrors   int64 // failed apiserver writes, retries included
}

type workKind uint8

const (
	workStatus workKind = iota
	workLease
)

// workKey is a queue item. Status and lease are separate keys so that a
// slow status write does not delay a heartbeat; the workqueue never hands
// the same key to two workers at once.
type workKey struct {
	node string
	kind workKind
}

// Manager registers edge nodes and writes their status and leases.
type Manager struct {
	cfg      Config
	client   kubernetes.Interface
	clock    clock.PassiveClock
	log      *slog.Logger
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   corelisters.NodeLister

	mu sync.Mutex
	// queue exists while Run runs (its delaying goroutine must stop with
	// Run); work noted before that is queued when Run starts.
	queue workqueue.TypedRateLimitingInterface[workKey] // guarded by mu
	nodes map[string]*nodeState                         // guarded by mu; a node's state lives until Forget
	stats Stats                                         // guarded by mu
}

// nodeState is what the Manager remembers about one connected node. All
// fields are guarded by Manager.mu. A worker that finds its *nodeState
// replaced (Forget, then a new session) keeps its results to itself.
type nodeState struct {
	// status is the newest reported status not yet taken by a worker.
	status *corev1.NodeStatus
	// lastStatusWrite is when this Manager last wrote the Node's status.
	lastStatusWrite time.Time
	// fresh is the newest Node a write returned. The lister lags behind our
	// own writes; while it still shows one of staleRVs, fresh is used
	// instead, so that a stale copy neither causes a redundant write nor a
	// conflict.
	fresh    *corev1.Node
	staleRVs map[string]bool
	// uid is the Node's UID, for the Lease's owner reference.
	uid types.UID

	// heartbeat is set while a renewal is wanted.
	heartbeat bool
	// lease is the last Lease written or read; its resourceVersion lets a
	// renewal Update without a GET.
	lease     *coordinationv1.Lease
	lastRenew time.Time // of the last successful lease write
}

// New builds a Manager; call Run to start it.
func New(cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil {
		return nil, fmt.Errorf("%w: Deps.Client is nil", ErrConfig)
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	factory := informers.NewSharedInformerFactoryWithOptions(deps.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelEdgeRole }),
		// Managed fields are never read here and cost ~1 KiB per cached node;
		// a status update without them leaves the server's copy unchanged.
		informers.WithTransform(func(obj any) (any, error) {
			if m, ok := obj.(metav1.Object); ok {
				m.SetManagedFields(nil)
			}
			return obj, nil
		}))
	nodes := factory.Core().V1().Nodes()
	m := &Manager{
		cfg:      cfg.withDefaults(),
		client:   deps.Client,
		clock:    deps.Clock,
		log:      deps.Logger.With("component", "nodes"),
		factory:  factory,
		informer: nodes.Informer(), // registers it with the factory before Start
		lister:   nodes.Lister(),
		nodes:    map[string]*nodeState{},
	}
	// Once the cache holds a Node as new as the last one written, the
	// written copy is dropped: with thousands of nodes it is a second copy
	// of every Node for as long as a status resync period.
	if _, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.cacheCaughtUp,
		UpdateFunc: func(_, obj any) { m.cacheCaughtUp(obj) },
	}); err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	return m, nil
}

func (m *Manager) cacheCaughtUp(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ns := m.nodes[n.Name]; ns != nil && ns.fresh != nil && ns.fresh.ResourceVersion == n.ResourceVersion {
		ns.fresh = nil
		clear(ns.staleRVs)
	}
}

// Run starts the edge-node informer and the workers and blocks until ctx is
// done; when it returns, everything it started has stopped. Call it once.
func (m *Manager) Run(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[workKey](retryInitial, retryMax),
		workqueue.TypedRateLimitingQueueConfig[workKey]{})
	m.factory.Start(ctx.Done())
	var wg sync.WaitGroup
	defer func() {
		m.mu.Lock()
		m.queue = nil
		m.mu.Unlock()
		q.ShutDown()
		wg.Wait()
		m.factory.Shutdown() // waits for the informer, which stops with ctx
	}()
	if !cache.WaitForCacheSync(ctx.Done(), m.informer.HasSynced) {
		return nil // ctx is done
	}
	m.mu.Lock()
	m.queue = q
	for node, ns := range m.nodes {
		if ns.status != nil {
			q.Add(workKey{node, workStatus})
		}
		if ns.heartbeat {
			q.Add(workKey{node, workLease})
		}
	}
	m.mu.Unlock()
	for range m.cfg.Workers {
		wg.Go(func() {
			for {
				k, shutdown := q.Get()
				if shutdown {
					return
				}
				m.process(ctx, q, k)
			}
		})
	}
	<-ctx.Done()
	return nil
}

// IsEdgeNode reports whether the cache holds node as an edge node.
func (m *Manager) IsEdgeNode(node string) bool {
	_, err := m.lister.Get(node)
	return err == nil
}

// OnEdgeNodeAdded calls f, from the informer's goroutine, with the name of
// every edge node the cache learns about. f must not block.
func (m *Manager) OnEdgeNodeAdded(f func(node string)) error {
	_, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			f(n.Name)
		}
	}})
	return err
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// stateLocked returns node's state, creating it. m.mu must be held.
func (m *Manager) stateLocked(node string) *nodeState {
	ns := m.nodes[node]
	if ns == nil {
		ns = &nodeState{staleRVs: map[string]bool{}}
		m.nodes[node] = ns
	}
	return ns
}

// Forget drops what the Manager remembers about node, when its session
// ends. The Node is left as it is: the node-lifecycle-controller marks it
// Unknown after its grace period, and a quick reconnect does not flap it.
func (m *Manager) Forget(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, node)
}

// Register creates or updates the Node of the edge connected as node, and
// returns once it is written. n comes from the edge: its labels are added
// (plus the edge role label) and its status is written; nothing else of it
// is trusted.
func (m *Manager) Register(ctx context.Context, node string, n *corev1.Node) error {
	if n == nil {
		return fmt.Errorf("nodes: register %q: no node object", node)
	}
	if n.Name != node {
		return fmt.Errorf("%w: node object names %q but the session is node %q", ErrNameMismatch, n.Name, node)
	}
	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelEdgeRole] = ""

	m.mu.Lock()
	ns := m.stateLocked(node)
	ns.status = nil // older than what this registration writes
	m.mu.Unlock()

	base, err := m.current(ctx, node, ns)
	if apierrors.IsNotFound(err) {
		now := m.clock.Now()
		create := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: labels}}
		create.Status = mergeStatus(create, n.Status, now).Status
		out, cerr := m.client.CoreV1().Nodes().Create(ctx, create, metav1.CreateOptions{})
		switch {
		case cerr == nil:
			m.noteNode(ns, nil, out, now) // the status went in with the create
			m.mu.Lock()
			m.stats.NodeCreates++
			m.mu.Unlock()
			base, err = out, nil
		case apierrors.IsAlreadyExists(cerr): // another replica or an admin was faster
			base, err = m.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		default:
			m.countError()
			return fmt.Errorf("nodes: register %q: create node: %w", node, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("nodes: register %q: get node: %w", node, err)
	}

	if missing := missingLabels(base.Labels, labels); len(missing) > 0 {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": missing}})
		if err != nil {
			return fmt.Errorf("nodes: register %q: label patch: %w", node, err)
		}
		out, err := m.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			m.countError()
			return fmt.Errorf("nodes: register %q: patch labels: %w", node, err)
		}
		m.noteNode(ns, base, out, time.Time{})
		m.mu.Lock()
		m.stats.LabelPatches++
		m.mu.Unlock()
		base = out
	}

	if err := m.writeStatus(ctx, node, ns, n.Status, base); err != nil {
		return fmt.Errorf("nodes: register %q: %w", node, err)
	}
	m.mu.Lock()
	m.stats.Registrations++
	m.mu.Unlock()
	return nil
}

// missingLabels returns the labels of want that have lacks (or, for
// reconciledLabels, has with another value).
func missingLabels(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		cur, ok := have[k]
		if !ok || reconciledLabels[k] && cur != v {
			out[k] = v
		}
	}
	return out
}

// UpdateStatus queues st, the status the edge reports for node. Only the
// newest queued status per node is written.
func (m *Manager) UpdateStatus(node string, st corev1.NodeStatus) {
	m.mu.Lock()
	m.stateLocked(node).status = st.DeepCopy()
	q := m.queue
	m.mu.Unlock()
	if q != nil {
		q.Add(workKey{node, workStatus})
	}
}

// Heartbeat queues a renewal of node's Lease, unless the last renewal is
// younger than a quarter of the lease duration.
func (m *Manager) Heartbeat(node string) {
	now := m.clock.Now()
	m.mu.Lock()
	ns := m.stateLocked(node)
	if m.renewedRecentlyLocked(ns, now) {
		m.stats.LeaseSkips++
		m.mu.Unlock()
		return
	}
	ns.heartbeat = true
	q := m.queue
	m.mu.Unlock()
	if q != nil {
		q.Add(workKey{node, workLease})
	}
}

func (m *Manager) renewedRecentlyLocked(ns *nodeState, now time.Time) bool {
	minGap := time.Duration(m.cfg.LeaseDurationSeconds) * time.Second / 4
	return !ns.lastRenew.IsZero() && now.Sub(ns.lastRenew) < minGap
}

// process handles one queue item. Errors are retried with back-off (the
// rate limiter's per-key count), up to maxRetries; success resets the count.
func (m *Manager) process(ctx context.Context, q workqueue.TypedRateLimitingInterface[workKey], k workKey) {
	defer q.Done(k)
	var err error
	switch k.kind {
	case workStatus:
		err = m.processStatus(ctx, k.node)
	case workLease:
		err = m.processLease(ctx, k.node)
	}
	if err == nil || ctx.Err() != nil {
		q.Forget(k)
		return
	}
	m.countError()
	if n := q.NumRequeues(k); n < maxRetries {
		m.log.Warn("write failed; retrying", "node", k.node, "retry", n+1, "err", err)
		q.AddRateLimited(k)
		return
	}
	m.log.Error("write failed; giving up until the edge reports again", "node", k.node, "err", err)
	q.Forget(k)
}

func (m *Manager) countError() {
	m.mu.Lock()
	m.stats.WriteErrors++
	m.mu.Unlock()
}

func (m *Manager) processStatus(ctx context.Context, node string) error {
	m.mu.Lock()
	ns := m.nodes[node]
	if ns == nil || ns.status == nil {
		m.mu.Unlock()
		return nil
	}
	st := ns.status
	ns.status = nil
	m.mu.Unlock()

	err := m.writeStatus(ctx, node, ns, *st, nil)
	if apierrors.IsNotFound(err) {
		// Deleted Node (or never registered): retrying cannot help.
		m.log.Warn("status for a node that does not exist dropped", "node", node, "err", err)
		return nil
	}
	if err != nil {
		m.mu.Lock()
		if ns.status == nil { // keep a newer one if it came meanwhile
			ns.status = st
		}
		m.mu.Unlock()
	}
	return err
}

// current returns the newest known copy of node's Node, for the caller to
// modify: the lister's, or ns.fresh while the lister lags behind our own
// writes, or else a GET (Node not in the cache: not labelled yet, just
// created, or the cache not synced yet).
func (m *Manager) current(ctx context.Context, node string, ns *nodeState) (*corev1.Node, error) {
	var cached *corev1.Node
	if m.informer.HasSynced() {
		if n, err := m.lister.Get(node); err == nil {
			cached = n
		}
	}
	m.mu.Lock()
	if ns.fresh != nil && (cached == nil || ns.staleRVs[cached.ResourceVersion]) {
		n := ns.fresh.DeepCopy()
		m.mu.Unlock()
		return n, nil
	}
	if cached != nil { // the cache caught up with (or passed) our writes
		ns.fresh = nil
		clear(ns.staleRVs)
	}
	m.mu.Unlock()
	if cached != nil {
		return cached.DeepCopy(), nil
	}
	return m.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
}

// noteNode records out, the result of a write over base (nil for a create);
// statusAt is when its status was written (zero: not written).
func (m *Manager) noteNode(ns *nodeState, base, out *corev1.Node, statusAt time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if base != nil {
		if len(ns.staleRVs) >= 16 { // the cache is far behind; let it catch up
			clear(ns.staleRVs)
		}
		ns.staleRVs[base.ResourceVersion] = true
	}
	ns.fresh = out.DeepCopy()
	ns.uid = out.UID
	if !statusAt.IsZero() {
		ns.lastStatusWrite = statusAt
	}
}

// writeStatus writes st over base (nil: the current copy) when needed: it
// changed ignoring condition timestamps, the Node is not Ready, or the last
// write is older than StatusResync. On a conflict it reads the Node again
// and retries once.
func (m *Manager) writeStatus(ctx context.Context, node string, ns *nodeState, st corev1.NodeStatus, base *corev1.Node) error {
	var err error
	if base == nil {
		if base, err = m.current(ctx, node, ns); err != nil {
			return fmt.Errorf("get node: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		now := m.clock.Now()
		desired := mergeStatus(base, st, now)
		m.mu.Lock()
		last := ns.lastStatusWrite
		ns.uid = base.UID
		m.mu.Unlock()
		if hb := readyHeartbeat(base); hb.After(last) {
			last = hb
		}
		if statusEqual(base.Status, desired.Status) && isReady(base) && now.Sub(last) < m.cfg.StatusResync {
			m.mu.Lock()
			m.stats.StatusSkips++
			m.mu.Unlock()
			return nil
		}
		out, err := m.client.CoreV1().Nodes().UpdateStatus(ctx, desired, metav1.UpdateOptions{})
		if err == nil {
			m.noteNode(ns, base, out, now)
			m.mu.Lock()
			m.stats.StatusWrites++
			m.mu.Unlock()
			return nil
		}
		if !apierrors.IsConflict(err) || attempt > 0 {
			return fmt.Errorf("update node status: %w", err)
		}
		if base, err = m.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("get node after a conflict: %w", err)
		}
	}
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(n *corev1.Node) bool {
	c := readyCondition(n)
	return c != nil && c.Status == corev1.ConditionTrue
}

func readyHeartbeat(n *corev1.Node) time.Time {
	if c := readyCondition(n); c != nil {
		return c.LastHeartbeatTime.Time
	}
	return time.Time{}
}

func (m *Manager) processLease(ctx context.Context, node string) error {
	now := m.clock.Now()
	m.mu.Lock()
	ns := m.nodes[node]
	if ns == nil || !ns.heartbeat {
		m.mu.Unlock()
		return nil
	}
	ns.heartbeat = false
	if m.renewedRecentlyLocked(ns, now) { // renewed since Heartbeat queued this
		m.stats.LeaseSkips++
		m.mu.Unlock()
		return nil
	}
	var cached *coordinationv1.Lease
	if ns.lease != nil {
		cached = ns.lease.DeepCopy()
	}
	uid := ns.uid
	m.mu.Unlock()

	if uid == "" {
		if n, err := m.lister.Get(node); err == nil {
			uid = n.UID
		}
	}
	out, err := m.renewLease(ctx, node, cached, uid, now)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		ns.heartbeat = true // retried by process
		return err
	}
	ns.lease = out
	ns.lastRenew = now
	m.stats.LeaseWrites++
	return nil
}

// renewLease writes node's Lease: an Update of the cached copy when there is
// one (no GET), a Create when there is none; on a conflict or an existing
// Lease it falls back to GET and Update.
func (m *Manager) renewLease(ctx context.Context, node string, cached *coordinationv1.Lease, uid types.UID, now time.Time) (*coordinationv1.Lease, error) {
	leases := m.client.CoordinationV1().Leases(LeaseNamespace)
	if cached != nil {
		m.fillLease(cached, node, uid, now)
		out, err := leases.Update(ctx, cached, metav1.UpdateOptions{})
		switch {
		case err == nil:
			return out, nil
		case apierrors.IsNotFound(err):
			cached = nil // deleted meanwhile: create it again
		case !apierrors.IsConflict(err):
			return nil, fmt.Errorf("update lease: %w", err)
		}
	}
	if cached == nil {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: LeaseNamespace}}
		m.fillLease(l, node, uid, now)
		out, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if err == nil {
			return out, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create lease: %w", err)
		}
	}
	l, err := leases.Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get lease: %w", err)
	}
	m.fillLease(l, node, uid, now)
	out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update lease after get: %w", err)
	}
	return out, nil
}

// fillLease sets what the kubelet sets on its node lease, including an owner
// reference to the Node so that deleting the Node deletes its Lease.
func (m *Manager) fillLease(l *coordinationv1.Lease, node string, uid types.UID, now time.Time) {
	holder, dur := node, m.cfg.LeaseDurationSeconds
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &dur
	renew := metav1.NewMicroTime(now)
	l.Spec.RenewTime = &renew
	if uid == "" {
		return // Node unknown yet; a later renewal adds the reference
	}
	for _, r := range l.OwnerReferences {
		if r.APIVersion == "v1" && r.Kind == "Node" && r.Name == node && r.UID == uid {
			return
		}
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node, UID: uid}}
}
