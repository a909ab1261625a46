package devicecontroller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
	"github.com/kubeedge-go/kubeedge/pkg/apis/devices/v1beta1"
)

// Index names.
const (
	byNode  = "node"
	byModel = "model"
)

// Config tunes the controller.
type Config struct {
	// StatusQPS and StatusBurst are the token bucket for all Device.status
	// writes of this cloudcore.
	StatusQPS   float64
	StatusBurst int
	// StatusInterval is the shortest time between two status writes of one
	// device; reports arriving meanwhile are coalesced, the newest wins.
	StatusInterval time.Duration
	// Workers write statuses in parallel.
	Workers int
}

// Deps are the controller's collaborators.
type Deps struct {
	Dynamic dynamic.Interface
	// Enqueue tells delivery that key may have changed for node.
	Enqueue func(node string, key wire.Resource)
	Clock   clock.WithTickerAndDelayedExecution
	Logger  *slog.Logger
}

// Stats counts the controller's upstream work.
type Stats struct {
	// Reports are device reports received; Coalesced were replaced by a
	// newer one before being written; Refused were not accepted.
	Reports, Coalesced, Refused int64
	// Writes are status writes sent to the apiserver; Skipped were not
	// needed (the status already said so); Failures were retried.
	Writes, Skipped, Failures int64
}

// Controller is the DeviceController.
type Controller struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	factory dynamicinformer.DynamicSharedInformerFactory
	devices cache.SharedIndexInformer
	models  cache.SharedIndexInformer
	limiter *rate.Limiter
	queue   workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	pending   map[string]*pendingStatus // guarded by mu; by namespace/name
	lastWrite map[string]time.Time      // guarded by mu

	reports, coalesced, refused, writes, skipped, failures atomic.Int64
}

// pendingStatus is the newest unwritten report of a device and the batches
// waiting for it.
type pendingStatus struct {
	node    string
	report  wire.DeviceReport
	waiters []*batch
}

// batch is one upstream message waiting for its devices to be written.
type batch struct {
	mu        sync.Mutex
	remaining int
	refused   []wire.DeviceRefusal
	reply     func(content json.RawMessage)
}

func (b *batch) done(refusal *wire.DeviceRefusal) {
	b.mu.Lock()
	if refusal != nil {
		b.refused = append(b.refused, *refusal)
	}
	b.remaining--
	last := b.remaining == 0
	refused := b.refused
	b.mu.Unlock()
	if !last {
		return
	}
	if len(refused) == 0 {
		b.reply(json.RawMessage(`"OK"`))
		return
	}
	raw, _ := json.Marshal(wire.DeviceReportResult{Refused: refused})
	b.reply(raw)
}

var _ delivery.Source = (*Controller)(nil)

// New builds the informers; nothing runs until Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	if deps.Dynamic == nil || deps.Enqueue == nil || deps.Clock == nil {
		return nil, errors.New("devicecontroller: Dynamic, Enqueue and Clock are required")
	}
	if cfg.StatusQPS <= 0 {
		cfg.StatusQPS = 50
	}
	if cfg.StatusBurst <= 0 {
		cfg.StatusBurst = 100
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	c := &Controller{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "devicecontroller"),
		limiter: rate.NewLimiter(rate.Limit(cfg.StatusQPS), cfg.StatusBurst),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "devicestatus", Clock: deps.Clock}),
		pending: map[string]*pendingStatus{}, lastWrite: map[string]time.Time{},
	}
	c.factory = dynamicinformer.NewDynamicSharedInformerFactory(deps.Dynamic, 0)
	c.devices = c.factory.ForResource(v1beta1.DevicesResource).Informer()
	c.models = c.factory.ForResource(v1beta1.DeviceModelsResource).Informer()
	// Cache typed objects without managed fields: every lookup would convert
	// otherwise, and managed fields are never sent anywhere.
	if err := c.devices.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
			return deviceFrom(u)
		}
		return obj, nil
	}); err != nil {
		return nil, err
	}
	if err := c.models.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
			return modelFrom(u)
		}
		return obj, nil
	}); err != nil {
		return nil, err
	}
	if err := c.devices.AddIndexers(cache.Indexers{
		byNode: func(obj any) ([]string, error) { return []string{obj.(*v1beta1.Device).Spec.NodeName}, nil },
		byModel: func(obj any) ([]string, error) {
			d := obj.(*v1beta1.Device)
			return []string{d.Namespace + "/" + d.ModelName()}, nil
		},
	}); err != nil {
		return nil, fmt.Errorf("devicecontroller: add indexers: %w", err)
	}
	if _, err := c.devices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.deviceChanged(nil, obj) },
		UpdateFunc: func(old, obj any) { c.deviceChanged(old, obj) },
		DeleteFunc: func(obj any) { c.deviceChanged(obj, nil) },
	}); err != nil {
		return nil, err
	}
	changed := func(obj any) { c.modelChanged(obj) }
	if _, err := c.models.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: changed, UpdateFunc: func(_, obj any) { changed(obj) }, DeleteFunc: changed,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run starts the informers and status writers and blocks until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.factory.Shutdown()
	return nil
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	return Stats{Reports: c.reports.Load(), Coalesced: c.coalesced.Load(), Refused: c.refused.Load(),
		Writes: c.writes.Load(), Skipped: c.skipped.Load(), Failures: c.failures.Load()}
}

// HasSynced reports whether both caches have their initial list.
func (c *Controller) HasSynced() bool { return c.devices.HasSynced() && c.models.HasSynced() }

// Desired lists node's devices and the models they use.
func (c *Controller) Desired(node string) []wire.Resource {
	objs, _ := c.devices.GetIndexer().ByIndex(byNode, node)
	var out []wire.Resource
	seen := map[wire.Resource]bool{}
	for _, o := range objs {
		d := o.(*v1beta1.Device)
		out = append(out, wire.Resource{Namespace: d.Namespace, Type: wire.TypeDevice, Name: d.Name})
		if m := d.ModelName(); m != "" {
			k := wire.Resource{Namespace: d.Namespace, Type: wire.TypeDeviceModel, Name: m}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// Lookup returns key as node should hold it.
func (c *Controller) Lookup(node string, key wire.Resource) (delivery.Object, bool) {
	nsName := key.Namespace + "/" + key.Name
	switch key.Type {
	case wire.TypeDevice:
		o, ok, _ := c.devices.GetIndexer().GetByKey(nsName)
		if !ok || o.(*v1beta1.Device).Spec.NodeName != node {
			return delivery.Object{}, false
		}
		d := o.(*v1beta1.Device).DeepCopy()
		// The edge owns the status; sending it back would only cost bytes.
		d.Status = v1beta1.DeviceStatus{}
		d.TypeMeta = metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "Device"}
		return object(key, d, d.Generation, d.ResourceVersion, "Device")
	case wire.TypeDeviceModel:
		if !c.modelUsedOn(node, nsName) {
			return delivery.Object{}, false
		}
		o, ok, _ := c.models.GetIndexer().GetByKey(nsName)
		if !ok {
			return delivery.Object{}, false
		}
		m := o.(*v1beta1.DeviceModel).DeepCopy()
		m.TypeMeta = metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "DeviceModel"}
		return object(key, m, m.Generation, m.ResourceVersion, "DeviceModel")
	}
	return delivery.Object{}, false
}

// object builds the delivery object. Its version is the generation, which
// only spec changes bump (status is a subresource): status writes made from
// the edge's own reports must not send the device back to the edge.
func object(key wire.Resource, v metav1.Object, generation int64, rv, kind string) (delivery.Object, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		return delivery.Object{}, false
	}
	version := "g" + strconv.FormatInt(generation, 10)
	if generation == 0 {
		version = rv
	}
	return delivery.Object{Resource: key, UID: string(v.GetUID()), APIVersion: v1beta1.SchemeGroupVersion.String(),
		Kind: kind, ResourceVersion: version, Content: b}, true
}

func (c *Controller) modelUsedOn(node, nsName string) bool {
	objs, _ := c.devices.GetIndexer().ByIndex(byModel, nsName)
	for _, o := range objs {
		if o.(*v1beta1.Device).Spec.NodeName == node {
			return true
		}
	}
	return false
}

func asDevice(obj any) *v1beta1.Device {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	d, _ := obj.(*v1beta1.Device)
	return d
}

func (c *Controller) deviceChanged(oldObj, newObj any) {
	if d := asDevice(oldObj); d != nil && newObj == nil {
		c.mu.Lock()
		delete(c.lastWrite, d.Namespace+"/"+d.Name)
		c.mu.Unlock()
	}
	for _, obj := range []any{oldObj, newObj} {
		d := asDevice(obj)
		if d == nil || d.Spec.NodeName == "" {
			continue
		}
		c.deps.Enqueue(d.Spec.NodeName, wire.Resource{Namespace: d.Namespace, Type: wire.TypeDevice, Name: d.Name})
		if m := d.ModelName(); m != "" {
			c.deps.Enqueue(d.Spec.NodeName, wire.Resource{Namespace: d.Namespace, Type: wire.TypeDeviceModel, Name: m})
		}
	}
}

func (c *Controller) modelChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*v1beta1.DeviceModel)
	if !ok {
		return
	}
	key := wire.Resource{Namespace: m.Namespace, Type: wire.TypeDeviceModel, Name: m.Name}
	objs, _ := c.devices.GetIndexer().ByIndex(byModel, m.Namespace+"/"+m.Name)
	nodes := map[string]bool{}
	for _, o := range objs {
		nodes[o.(*v1beta1.Device).Spec.NodeName] = true
	}
	for n := range nodes {
		if n != "" {
			c.deps.Enqueue(n, key)
		}
	}
}

// HandleReport takes node's upstream twin report m. reply is called once,
// with "OK" when every device of the batch is written into Device.status
// (or was superseded by a newer report that was), or with a
// DeviceReportResult naming the devices refused. A message that cannot be
// decoded returns an error at once and reply is not called.
func (c *Controller) HandleReport(node string, m wire.Message, reply func(content json.RawMessage)) error {
	if m.Resource != wire.TwinReportResource(node) {
		return fmt.Errorf("device reports of node %q must use resource %s, not %s", node, wire.TwinReportResource(node), m.Resource)
	}
	b, err := wire.DecodeDeviceReport(m.Content)
	if err != nil {
		return err
	}
	bt := &batch{remaining: len(b.Devices), reply: reply}
	for _, r := range b.Devices {
		c.reports.Add(1)
		if refusal := c.check(node, r); refusal != nil {
			c.refused.Add(1)
			c.log.Warn("device report refused", "node", node, "device", r.Namespace+"/"+r.Name, "reason", refusal.Reason)
			bt.done(refusal)
			continue
		}
		c.offer(node, r, bt)
	}
	return nil
}

// check refuses reports for devices that do not exist or are bound to
// another node: a node may not write another node's device.
func (c *Controller) check(node string, r wire.DeviceReport) *wire.DeviceRefusal {
	o, ok, _ := c.devices.GetIndexer().GetByKey(r.Namespace + "/" + r.Name)
	refuse := func(format string, args ...any) *wire.DeviceRefusal {
		return &wire.DeviceRefusal{Namespace: r.Namespace, Name: r.Name, Reason: fmt.Sprintf(format, args...)}
	}
	if !ok {
		return refuse("device %s/%s does not exist", r.Namespace, r.Name)
	}
	if owner := o.(*v1beta1.Device).Spec.NodeName; owner != node {
		return refuse("device %s/%s is bound to node %q; node %q may not report for it", r.Namespace, r.Name, owner, node)
	}
	return nil
}

// offer records r as the device's newest report and schedules its write no
// sooner than StatusInterval after the previous one.
func (c *Controller) offer(node string, r wire.DeviceReport, bt *batch) {
	key := r.Namespace + "/" + r.Name
	c.mu.Lock()
	p := c.pending[key]
	switch {
	case p == nil:
		c.pending[key] = &pendingStatus{node: node, report: r, waiters: []*batch{bt}}
	case r.Seq >= p.report.Seq:
		c.coalesced.Add(1)
		p.report, p.node = r, node
		p.waiters = append(p.waiters, bt)
	default:
		// An older report arriving late (a retransmission): the pending one
		// already supersedes it.
		c.coalesced.Add(1)
		p.waiters = append(p.waiters, bt)
	}
	wait := c.cfg.StatusInterval - c.deps.Clock.Since(c.lastWrite[key])
	c.mu.Unlock()
	if wait > 0 {
		c.queue.AddAfter(key, wait)
	} else {
		c.queue.Add(key)
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	c.mu.Lock()
	p := c.pending[key]
	if p != nil {
		if wait := c.cfg.StatusInterval - c.deps.Clock.Since(c.lastWrite[key]); wait > 0 {
			c.mu.Unlock()
			c.queue.AddAfter(key, wait)
			return true
		}
		delete(c.pending, key)
	}
	c.mu.Unlock()
	if p == nil {
		return true // written already by an earlier pass
	}
	if err := c.limiter.Wait(ctx); err != nil {
		c.requeue(key, p)
		return true
	}
	err := c.writeStatus(ctx, p.report)
	var refusal *wire.DeviceRefusal
	switch {
	case err == nil:
		c.queue.Forget(key)
	case apierrors.IsNotFound(err):
		refusal = &wire.DeviceRefusal{Namespace: p.report.Namespace, Name: p.report.Name, Reason: "device was deleted"}
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		refusal = &wire.DeviceRefusal{Namespace: p.report.Namespace, Name: p.report.Name, Reason: "status refused by the apiserver: " + err.Error()}
	default:
		c.failures.Add(1)
		if ctx.Err() == nil {
			c.log.Warn("device status write failed; retrying", "device", key, "err", err)
		}
		c.requeue(key, p)
		return true
	}
	c.mu.Lock()
	c.lastWrite[key] = c.deps.Clock.Now()
	c.mu.Unlock()
	for _, w := range p.waiters {
		w.done(refusal)
	}
	return true
}

// requeue puts back a report whose write failed, unless a newer one came.
func (c *Controller) requeue(key string, p *pendingStatus) {
	c.mu.Lock()
	if cur := c.pending[key]; cur != nil {
		cur.waiters = append(cur.waiters, p.waiters...)
		if p.report.Seq > cur.report.Seq {
			cur.report = p.report
		}
	} else {
		c.pending[key] = p
	}
	c.mu.Unlock()
	c.queue.AddRateLimited(key)
}

// statusPatch is the merge patch of Device.status; twins are replaced as a
// whole (each report is a full snapshot).
type statusPatch struct {
	Status patchStatus `json:"status"`
}

type patchStatus struct {
	Twins          []v1beta1.Twin `json:"twins"`
	State          string         `json:"state,omitempty"`
	LastOnlineTime string         `json:"lastOnlineTime,omitempty"`
}

func statusOf(r wire.DeviceReport) patchStatus {
	st := patchStatus{Twins: []v1beta1.Twin{}, State: r.State, LastOnlineTime: r.LastOnlineTime}
	for _, tw := range r.Twins {
		t := v1beta1.Twin{PropertyName: tw.PropertyName}
		if tw.Reported != nil {
			t.Reported = v1beta1.TwinProperty{Value: tw.Reported.Value, Metadata: tw.Reported.Metadata}
		}
		if tw.ObservedDesired != nil {
			t.ObservedDesired = v1beta1.TwinProperty{Value: tw.ObservedDesired.Value, Metadata: tw.ObservedDesired.Metadata}
		}
		st.Twins = append(st.Twins, t)
	}
	return st
}

// writeStatus patches the device's status subresource, unless the cached
// status already says the same.
func (c *Controller) writeStatus(ctx context.Context, r wire.DeviceReport) error {
	st := statusOf(r)
	if o, ok, _ := c.devices.GetIndexer().GetByKey(r.Namespace + "/" + r.Name); ok {
		cur := o.(*v1beta1.Device).Status
		if sameStatus(cur, st) {
			c.skipped.Add(1)
			return nil
		}
	}
	b, err := json.Marshal(statusPatch{Status: st})
	if err != nil {
		return fmt.Errorf("devicecontroller: encode status: %w", err)
	}
	_, err = c.deps.Dynamic.Resource(v1beta1.DevicesResource).Namespace(r.Namespace).
		Patch(ctx, r.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "cloudcore"}, "status")
	if err == nil {
		c.writes.Add(1)
	}
	return err
}

func sameStatus(cur v1beta1.DeviceStatus, st patchStatus) bool {
	if (st.State != "" && cur.State != st.State) || (st.LastOnlineTime != "" && cur.LastOnlineTime != st.LastOnlineTime) {
		return false
	}
	if len(cur.Twins) != len(st.Twins) {
		return false
	}
	for i := range cur.Twins {
		a, b := cur.Twins[i], st.Twins[i]
		if a.PropertyName != b.PropertyName || !sameProp(a.Reported, b.Reported) || !sameProp(a.ObservedDesired, b.ObservedDesired) {
			return false
		}
	}
	return true
}

func sameProp(a, b v1beta1.TwinProperty) bool {
	if a.Value != b.Value || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	return true
}
