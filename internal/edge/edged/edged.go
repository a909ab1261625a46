package edged

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/cri"
	"github.com/kubeedge-go/kubeedge/internal/store"
)

// Edged runs the pods bound to this node on a CRI runtime.
//
// Lock order: Edged.mu before podWorker.mu; neither is held across a CRI
// call or a Reporter call.
type Edged struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	clk    clock.WithTicker
	rt     cri.Runtime
	client *cri.Client // set when edged dialled the runtime itself

	vols        *volumeManager
	events      *eventRecorder
	backoff     *backoff // container restarts
	pullBackoff *backoff // image pulls
	probes      *probeManager

	// imageFsStats returns the image filesystem's capacity and free bytes;
	// replaced in tests.
	imageFsStats func(ctx context.Context) (capacity, available uint64, err error)

	kick       chan struct{} // wakes the dispatcher; capacity 1
	sandboxSem chan struct{} // bounds concurrent RunPodSandbox calls
	started    chan struct{} // closed after the first full reconcile

	mu           sync.Mutex
	dirty        map[podKey]bool            // guarded by mu
	refs         map[objRef]map[podKey]bool // guarded by mu; object -> pods using it
	podRefs      map[podKey][]objRef        // guarded by mu
	workers      map[types.UID]*podWorker   // guarded by mu
	byKey        map[podKey]types.UID       // guarded by mu
	pullFailures map[string]time.Time       // guarded by mu
	imageSeen    map[string]imageRecord     // guarded by mu; image id -> first seen / last used
	ctx          context.Context            // guarded by mu; Run's context, for workers
	wg           sync.WaitGroup             // pod workers
}

// New validates cfg and builds edged; nothing touches the runtime or the
// disk until Run.
func New(cfg Config, deps Deps) (*Edged, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("edged: Deps.Store is nil")
	}
	if deps.Reporter == nil {
		return nil, errors.New("edged: Deps.Reporter is nil")
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	e := &Edged{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "edged"), clk: deps.Clock, rt: deps.Runtime,
		kick:         make(chan struct{}, 1),
		sandboxSem:   make(chan struct{}, cfg.ConcurrentSandboxStarts),
		started:      make(chan struct{}),
		dirty:        map[podKey]bool{},
		refs:         map[objRef]map[podKey]bool{},
		podRefs:      map[podKey][]objRef{},
		workers:      map[types.UID]*podWorker{},
		byKey:        map[podKey]types.UID{},
		pullFailures: map[string]time.Time{},
		imageSeen:    map[string]imageRecord{},
	}
	if e.rt == nil {
		c, err := cri.Dial(cfg.RemoteRuntimeEndpoint, cri.Options{Timeout: cfg.RuntimeRequestTimeout, PullTimeout: cfg.ImagePullTimeout})
		if err != nil {
			return nil, fmt.Errorf("edged: %w", err)
		}
		e.rt, e.client = c, c
	}
	e.events = &eventRecorder{node: cfg.NodeName, clk: deps.Clock, reporter: deps.Reporter}
	e.backoff = newBackoff(deps.Clock, cfg.BackOffInitial, cfg.BackOffMax)
	e.pullBackoff = newBackoff(deps.Clock, cfg.BackOffInitial, cfg.BackOffMax)
	e.vols = &volumeManager{
		root: cfg.RootDirectory, src: storeObjects{e: e, ctx: context.Background()}, tokens: deps.Tokens,
		clk: deps.Clock, log: e.log, canMount: os.Geteuid() == 0,
	}
	e.probes = newProbeManager(e)
	e.imageFsStats = e.statImageFs
	return e, nil
}

// Started is closed once edged has read every stored pod and handed it to
// its worker (the first full reconcile after Run began).
func (e *Edged) Started() <-chan struct{} { return e.started }

// Run reconciles pods until ctx is done. On start it lists every stored pod
// (no cloud needed) and brings it to its desired state, and removes
// sandboxes, pod directories and cgroups that belong to no stored pod.
// Stopping edged leaves containers running, as stopping the kubelet does.
// Run may be called once; a restarted edged is a new Edged.
func (e *Edged) Run(ctx context.Context) error {
	if e.client != nil {
		defer e.client.Close()
	}
	if err := os.MkdirAll(e.cfg.RootDirectory, 0o750); err != nil {
		return fmt.Errorf("edged: root directory: %w", err)
	}
	if err := os.MkdirAll(e.cfg.PodLogsDirectory, 0o755); err != nil {
		return fmt.Errorf("edged: pod logs directory: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	// Pod workers run under gctx too, so that a failing loop stops them.
	e.mu.Lock()
	e.ctx = gctx
	e.mu.Unlock()
	e.vols.src = storeObjects{e: e, ctx: gctx}
	e.checkRuntime(ctx)
	g.Go(func() error { return e.dispatch(gctx) })
	g.Go(func() error { return e.pleg(gctx) })
	g.Go(func() error { return e.housekeeping(gctx) })
	err := g.Wait()
	e.wg.Wait()
	e.probes.wg.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// checkRuntime logs the runtime's version and warns when the sandbox image
// is missing; neither stops edged (the runtime may come up later).
func (e *Edged) checkRuntime(ctx context.Context) {
	v, err := e.rt.Version(ctx)
	if err != nil {
		e.log.Warn("container runtime not reachable yet", "endpoint", e.cfg.RemoteRuntimeEndpoint, "err", err)
		return
	}
	e.log.Info("container runtime", "name", v.RuntimeName, "version", v.RuntimeVersion, "api", v.RuntimeApiVersion)
	if img, err := e.rt.ImageStatus(ctx, e.cfg.PodSandboxImage); err == nil && img == nil {
		e.log.Warn("pod sandbox image is not present; the runtime will try to pull it", "image", e.cfg.PodSandboxImage)
	}
}

// Notify tells edged that the store changed. It never blocks: it marks the
// affected pods dirty and wakes the dispatcher, which re-reads them from
// the store (level-triggered). Call it from MetaManager's Changed hook.
func (e *Edged) Notify(ch store.Change) {
	o := ch.Object
	e.mu.Lock()
	switch o.Type {
	case "pod":
		e.dirty[podKey{o.Namespace, o.Name}] = true
	case "configmap", "secret":
		for k := range e.refs[objRef{o.Type, o.Namespace, o.Name}] {
			e.dirty[k] = true
		}
	default:
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	e.wake()
}

func (e *Edged) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// dispatch owns the mapping from store keys to pod workers.
func (e *Edged) dispatch(ctx context.Context) error {
	if err := e.reconcileAll(ctx); err != nil {
		return err
	}
	close(e.started)
	resync := e.clk.NewTicker(e.cfg.SyncFrequency)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-resync.C():
			// A full pass catches changes whose notification was lost
			// (none should be, but the store is the source of truth).
			if err := e.reconcileAll(ctx); err != nil {
				e.log.Error("periodic reconcile", "err", err)
			}
		case <-e.kick:
			e.mu.Lock()
			keys := make([]podKey, 0, len(e.dirty))
			for k := range e.dirty {
				keys = append(keys, k)
			}
			clear(e.dirty)
			e.mu.Unlock()
			for _, k := range keys {
				if err := e.reconcileKey(ctx, k); err != nil {
					e.log.Error("reconcile pod", "pod", k, "err", err)
					e.mu.Lock()
					e.dirty[k] = true
					e.mu.Unlock()
				}
			}
		}
	}
}

// reconcileAll reads every stored pod and routes it, and marks workers of
// pods that are no longer stored as removed.
func (e *Edged) reconcileAll(ctx context.Context) error {
	objs, err := e.deps.Store.List(ctx, "pod", "")
	if err != nil {
		return fmt.Errorf("edged: list pods: %w", err)
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	present := map[podKey]bool{}
	for _, o := range objs {
		present[podKey{o.Namespace, o.Name}] = true
		pod, err := decodePod(o)
		if err != nil {
			e.log.Error("stored pod is not valid JSON; leaving it as it is", "pod", podKey{o.Namespace, o.Name}, "err", err)
			continue
		}
		pods = append(pods, pod)
	}
	// Admit in creation order, so that on a full node the oldest pods win
	// (what the kubelet does on restart).
	sort.SliceStable(pods, func(i, j int) bool {
		return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp)
	})
	for _, pod := range pods {
		e.route(keyOf(pod), pod)
	}
	e.mu.Lock()
	var gone []podKey
	for k := range e.byKey {
		if !present[k] {
			gone = append(gone, k)
		}
	}
	e.mu.Unlock()
	for _, k := range gone {
		e.route(k, nil)
	}
	return nil
}

func (e *Edged) reconcileKey(ctx context.Context, k podKey) error {
	o, err := e.deps.Store.Get(ctx, "pod", k.namespace, k.name)
	if errors.Is(err, store.ErrNotFound) {
		e.route(k, nil)
		return nil
	}
	if err != nil {
		return err
	}
	pod, err := decodePod(o)
	if err != nil {
		e.log.Error("stored pod is not valid JSON; leaving it as it is", "pod", k, "err", err)
		return nil
	}
	e.route(k, pod)
	return nil
}

func decodePod(o store.Object) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(o.Value, &pod); err != nil {
		return nil, err
	}
	if pod.Namespace == "" {
		pod.Namespace = o.Namespace
	}
	if pod.Name == "" {
		pod.Name = o.Name
	}
	if pod.UID == "" {
		return nil, errors.New("pod has no metadata.uid")
	}
	return &pod, nil
}

// route hands the desired pod (nil: none) for key to the worker of its UID,
// starting one if needed, and tells a worker of an older UID under the same
// key that its pod is gone.
func (e *Edged) route(k podKey, pod *corev1.Pod) {
	if pod != nil && pod.Spec.NodeName != e.cfg.NodeName {
		pod = nil // not ours (any more)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.byKey[k]; ok && (pod == nil || pod.UID != old) {
		if w := e.workers[old]; w != nil {
			w.remove()
		}
		delete(e.byKey, k)
	}
	e.setRefsLocked(k, pod)
	if pod == nil {
		return
	}
	e.byKey[k] = pod.UID
	if w := e.workers[pod.UID]; w != nil {
		w.update(pod)
		return
	}
	if e.ctx == nil || e.ctx.Err() != nil {
		return
	}
	admitted := e.activePodsLocked() < e.cfg.MaxPods
	w := newPodWorker(e, pod, !admitted)
	e.workers[pod.UID] = w
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		w.run(e.ctx)
	}()
}

func (e *Edged) setRefsLocked(k podKey, pod *corev1.Pod) {
	for _, r := range e.podRefs[k] {
		delete(e.refs[r], k)
		if len(e.refs[r]) == 0 {
			delete(e.refs, r)
		}
	}
	delete(e.podRefs, k)
	if pod == nil {
		return
	}
	rs := references(pod)
	e.podRefs[k] = rs
	for _, r := range rs {
		if e.refs[r] == nil {
			e.refs[r] = map[podKey]bool{}
		}
		e.refs[r][k] = true
	}
}

// activePodsLocked counts admitted pods that are not being torn down.
func (e *Edged) activePodsLocked() int {
	n := 0
	for _, w := range e.workers {
		if w.active() {
			n++
		}
	}
	return n
}

// workerDone is called by a worker whose pod is gone and torn down.
func (e *Edged) workerDone(w *podWorker) {
	e.mu.Lock()
	if e.workers[w.uid] == w {
		delete(e.workers, w.uid)
	}
	prefix := string(w.uid) + "/"
	for k := range e.pullFailures {
		if strings.HasPrefix(k, prefix) {
			delete(e.pullFailures, k)
		}
	}
	e.mu.Unlock()
	e.backoff.forgetPrefix(string(w.uid) + "/")
	e.pullBackoff.forgetPrefix(string(w.uid) + "/")
	e.events.forgetPod(string(w.uid))
}

// kickUID wakes the worker of uid, if any; it reports whether one exists.
func (e *Edged) kickUID(uid types.UID) bool {
	e.mu.Lock()
	w := e.workers[uid]
	e.mu.Unlock()
	if w == nil {
		return false
	}
	w.wake()
	return true
}

// hasWorker reports whether uid is a pod edged knows.
func (e *Edged) hasWorker(uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.workers[uid]
	return ok
}

// RunningPods returns how many pods edged runs (admitted and not being
// torn down), for node status.
func (e *Edged) RunningPods() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.activePodsLocked()
}

// ErrContainerNotFound is returned by ContainerID when the pod or container
// is not known or has no instance.
var ErrContainerNotFound = errors.New("edged: container not found")

// ContainerID returns the CRI id of a pod's container for exec/attach/logs
// streams, choosing the instance as the kubelet does from the pod's status:
// the running one, else the last terminated one; with previous, the one in
// lastState (kubectl logs --previous). Before any status was reported it
// falls back to the runtime's newest instance (or the one before it).
func (e *Edged) ContainerID(ctx context.Context, namespace, pod, container string, previous bool) (string, error) {
	e.mu.Lock()
	uid, ok := e.byKey[podKey{namespace, pod}]
	var w *podWorker
	if ok {
		w = e.workers[uid]
	}
	e.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: pod %s/%s is not on this node", ErrContainerNotFound, namespace, pod)
	}
	if w != nil {
		w.mu.Lock()
		st := w.reported
		w.mu.Unlock()
		if id, err, decided := containerFromStatus(st, namespace, pod, container, previous); decided {
			return id, err
		}
	}
	rt, err := e.podRuntimeState(ctx, uid)
	if err != nil {
		return "", err
	}
	inst := rt.instances(container)
	idx := 0
	if previous {
		idx = 1
	}
	if len(inst) <= idx {
		what := "no instance"
		if previous {
			what = "no previous instance"
		}
		return "", fmt.Errorf("%w: container %q in pod %s/%s has %s", ErrContainerNotFound, container, namespace, pod, what)
	}
	return inst[idx].id, nil
}

// containerFromStatus applies the kubelet's choice of container instance
// for logs to a reported status; decided is false when st does not know
// the container.
func containerFromStatus(st *corev1.PodStatus, namespace, pod, container string, previous bool) (id string, err error, decided bool) {
	if st == nil {
		return "", nil, false
	}
	var cs *corev1.ContainerStatus
	for _, list := range [][]corev1.ContainerStatus{st.ContainerStatuses, st.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				cs = &list[i]
			}
		}
	}
	if cs == nil {
		return "", nil, false
	}
	trim := func(s string) string {
		if _, after, ok := strings.Cut(s, "://"); ok {
			return after
		}
		return s
	}
	last := cs.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return "", fmt.Errorf("%w: previous terminated container %q in pod %s/%s not found", ErrContainerNotFound, container, namespace, pod), true
		}
		return trim(last.ContainerID), nil, true
	case cs.State.Running != nil && cs.ContainerID != "":
		return trim(cs.ContainerID), nil, true
	case cs.State.Terminated != nil && cs.State.Terminated.ContainerID != "":
		return trim(cs.State.Terminated.ContainerID), nil, true
	case last != nil && last.ContainerID != "":
		return trim(last.ContainerID), nil, true
	case cs.State.Waiting != nil:
		return "", fmt.Errorf("%w: container %q in pod %s/%s is waiting to start: %s", ErrContainerNotFound, container, namespace, pod, cs.State.Waiting.Reason), true
	}
	return "", nil, false
}

// Runtime returns the CRI runtime edged uses (for streams).
func (e *Edged) Runtime() cri.Runtime { return e.rt }

// Images lists the images on the node for node status, largest first, as
// the kubelet reports them.
func (e *Edged) Images(ctx context.Context) ([]corev1.ContainerImage, error) {
	imgs, err := e.rt.ListImages(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("edged: list images: %w", err)
	}
	out := make([]corev1.ContainerImage, 0, len(imgs))
	for _, img := range imgs {
		names := append(append([]string(nil), img.RepoDigests...), img.RepoTags...)
		if len(names) == 0 {
			names = []string{img.Id}
		}
		out = append(out, corev1.ContainerImage{Names: names, SizeBytes: int64(img.Size)})
	}
	slices.SortStableFunc(out, func(a, b corev1.ContainerImage) int { return cmp.Compare(b.SizeBytes, a.SizeBytes) })
	return out, nil
}

// storeObjects reads configmaps and secrets from the store.
type storeObjects struct {
	e   *Edged
	ctx context.Context
}

func (s storeObjects) configMap(ns, name string) (*corev1.ConfigMap, error) {
	o, err := s.e.deps.Store.Get(s.ctx, "configmap", ns, name)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(o.Value, &cm); err != nil {
		return nil, fmt.Errorf("stored configmap %s/%s is not valid JSON: %w", ns, name, err)
	}
	return &cm, nil
}

func (s storeObjects) secret(ns, name string) (*corev1.Secret, error) {
	o, err := s.e.deps.Store.Get(s.ctx, "secret", ns, name)
	if err != nil {
		return nil, err
	}
	var sec corev1.Secret
	if err := json.Unmarshal(o.Value, &sec); err != nil {
		return nil, fmt.Errorf("stored secret %s/%s is not valid JSON: %w", ns, name, err)
	}
	return &sec, nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
