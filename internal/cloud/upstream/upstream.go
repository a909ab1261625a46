// Package upstream writes what edge nodes report about their pods to the
// API server: pod status, the final deletion of a terminated pod, events and
// service-account tokens. Each request is authorized against the reporting
// node, as the API server's Node authorizer does for kubelets: a node may
// only speak about pods bound to it.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edgeapi"
)

// ErrForbidden is wrapped by every refusal of a node's request.
var ErrForbidden = errors.New("upstream: forbidden")

// PodCache reads pods from an informer cache. The returned pod is shared.
type PodCache interface {
	Pod(namespace, name string) (*corev1.Pod, bool)
}

// Config tunes the writer; zero fields take defaults.
type Config struct {
	// EventQPS and EventBurst limit events per node (kubelet: 50/100 for
	// its own; a constrained edge rarely needs more than a few).
	EventQPS   float64
	EventBurst int
}

// Deps are the writer's collaborators.
type Deps struct {
	Client kubernetes.Interface
	Pods   PodCache
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// Stats counts the writer's work.
type Stats struct {
	StatusWrites, StatusSkips, Deletes, Events, EventsLimited, Tokens, Refused int64
}

// Writer applies edge reports to the API server.
type Writer struct {
	cfg    Config
	client kubernetes.Interface
	pods   PodCache
	clock  clock.PassiveClock
	log    *slog.Logger

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // guarded by mu; per node
	stats    Stats                    // guarded by mu
}

// New builds a Writer.
func New(cfg Config, deps Deps) (*Writer, error) {
	if deps.Client == nil || deps.Pods == nil {
		return nil, errors.New("upstream: Client and Pods are required")
	}
	if cfg.EventQPS <= 0 {
		cfg.EventQPS = 5
	}
	if cfg.EventBurst <= 0 {
		cfg.EventBurst = 25
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Writer{cfg: cfg, client: deps.Client, pods: deps.Pods, clock: deps.Clock,
		log: deps.Logger.With("component", "upstream"), limiters: map[string]*rate.Limiter{}}, nil
}

// Stats returns a snapshot of the counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Writer) count(f func(*Stats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

func (w *Writer) refuse(format string, args ...any) error {
	w.count(func(s *Stats) { s.Refused++ })
	return fmt.Errorf("%w: "+format, append([]any{ErrForbidden}, args...)...)
}

// Forget drops per-node state when a node's session ends for good.
func (w *Writer) Forget(node string) {
	w.mu.Lock()
	delete(w.limiters, node)
	w.mu.Unlock()
}

// boundPod returns the pod namespace/name if it is bound to node (and has
// uid, when uid is set), from the cache or, when the cache does not have it
// yet, from the API server.
func (w *Writer) boundPod(ctx context.Context, node, namespace, name string, uid types.UID) (*corev1.Pod, error) {
	p, ok := w.pods.Pod(namespace, name)
	if !ok || uid != "" && p.UID != uid {
		fresh, err := w.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, w.refuse("pod %s/%s does not exist", namespace, name)
		}
		if err != nil {
			return nil, fmt.Errorf("upstream: get pod %s/%s: %w", namespace, name, err)
		}
		p = fresh
	}
	if p.Spec.NodeName != node {
		return nil, w.refuse("pod %s/%s is not bound to node %q", namespace, name, node)
	}
	if uid != "" && p.UID != uid {
		return nil, w.refuse("pod %s/%s has uid %s, not %s (it was recreated)", namespace, name, p.UID, uid)
	}
	return p, nil
}

// PodStatus writes the status node observed for a pod, merged with the
// conditions and fields that others own.
func (w *Writer) PodStatus(ctx context.Context, node, namespace string, req edgeapi.PodStatusRequest) error {
	pod, err := w.boundPod(ctx, node, namespace, req.Name, req.UID)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if isTerminal(pod.Status.Phase) && !isTerminal(req.Status.Phase) {
			return w.refuse("pod %s/%s is %s; a terminated pod cannot become %s", namespace, req.Name, pod.Status.Phase, req.Status.Phase)
		}
		merged := MergeStatus(pod.Status, req.Status)
		if apiequality.Semantic.DeepEqual(pod.Status, merged) {
			w.count(func(s *Stats) { s.StatusSkips++ })
			return nil
		}
		upd := pod.DeepCopy()
		upd.Status = merged
		_, err := w.client.CoreV1().Pods(namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if err == nil {
			w.count(func(s *Stats) { s.StatusWrites++ })
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 3 {
			return fmt.Errorf("upstream: update status of pod %s/%s: %w", namespace, req.Name, err)
		}
		if pod, err = w.client.CoreV1().Pods(namespace).Get(ctx, req.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("upstream: get pod %s/%s after a conflict: %w", namespace, req.Name, err)
		}
		if pod.UID != req.UID || pod.Spec.NodeName != node {
			return w.refuse("pod %s/%s changed identity while its status was written", namespace, req.Name)
		}
	}
}

func isTerminal(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

// MergeStatus returns the status to write: reported, plus what others own
// in current: conditions the edge does not report (PodScheduled from the
// scheduler, DisruptionTarget, readiness gates of other controllers) are
// kept, as the kubelet's status manager keeps them. Timestamps of unchanged
// conditions are kept so that an unchanged status causes no write.
func MergeStatus(current, reported corev1.PodStatus) corev1.PodStatus {
	out := *reported.DeepCopy()
	var conds []corev1.PodCondition
	for _, c := range out.Conditions {
		if old := findCondition(current.Conditions, c.Type); old != nil && old.Status == c.Status &&
			old.Reason == c.Reason && old.Message == c.Message {
			c.LastTransitionTime = old.LastTransitionTime
			c.LastProbeTime = old.LastProbeTime
		}
		conds = append(conds, c)
	}
	for _, c := range current.Conditions {
		if findCondition(conds, c.Type) == nil {
			conds = append(conds, c)
		}
	}
	out.Conditions = conds
	out.NominatedNodeName = current.NominatedNodeName
	out.ResourceClaimStatuses = current.ResourceClaimStatuses
	if out.StartTime == nil {
		out.StartTime = current.StartTime
	}
	return out
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// DeletePod removes a pod whose containers node has stopped: the final,
// grace-period-0 delete of the kubelet. Only pods already being deleted may
// be removed this way; a pod that is gone already is not an error.
func (w *Writer) DeletePod(ctx context.Context, node, namespace, name string, d edgeapi.PodDeletion) error {
	pod, err := w.boundPod(ctx, node, namespace, name, d.UID)
	if errors.Is(err, ErrForbidden) {
		if _, gerr := w.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(gerr) {
			return nil // already gone: the deletion the edge asks for has happened
		}
	}
	if err != nil {
		return err
	}
	if pod.DeletionTimestamp == nil {
		return w.refuse("pod %s/%s is not being deleted; a node may only finish a deletion", namespace, name)
	}
	zero := int64(0)
	uid := pod.UID
	err = w.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("upstream: delete pod %s/%s: %w", namespace, name, err)
	}
	w.count(func(s *Stats) { s.Deletes++ })
	return nil
}

// Event records an event about node or one of its pods.
func (w *Writer) Event(ctx context.Context, node string, ev *corev1.Event) error {
	io := ev.InvolvedObject
	switch io.Kind {
	case "Node":
		if io.Name != node {
			return w.refuse("node %q may not report events about node %q", node, io.Name)
		}
	case "Pod":
		if io.Namespace != ev.Namespace {
			return w.refuse("event in namespace %q is about pod %s/%s", ev.Namespace, io.Namespace, io.Name)
		}
		if _, err := w.boundPod(ctx, node, io.Namespace, io.Name, ""); err != nil {
			return err
		}
	default:
		return w.refuse("node %q may not report events about a %q", node, io.Kind)
	}
	if !w.limiter(node).Allow() {
		w.count(func(s *Stats) { s.EventsLimited++ })
		return fmt.Errorf("upstream: event rate limit of node %q exceeded; event dropped", node)
	}
	out := ev.DeepCopy()
	out.ResourceVersion, out.UID, out.ManagedFields = "", "", nil
	out.Source = corev1.EventSource{Component: "kubelet", Host: node}
	out.ReportingController, out.ReportingInstance = "kubelet", node
	if out.Name == "" {
		out.Name = fmt.Sprintf("%s.%x", io.Name, w.clock.Now().UnixNano())
	}
	if out.FirstTimestamp.IsZero() {
		out.FirstTimestamp = metav1.NewTime(w.clock.Now())
	}
	if out.LastTimestamp.IsZero() {
		out.LastTimestamp = out.FirstTimestamp
	}
	if out.Count == 0 {
		out.Count = 1
	}
	events := w.client.CoreV1().Events(out.Namespace)
	_, err := events.Create(ctx, out, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *corev1.Event
		if cur, err = events.Get(ctx, out.Name, metav1.GetOptions{}); err == nil {
			cur.Count, cur.LastTimestamp, cur.Message = max(out.Count, cur.Count+1), out.LastTimestamp, out.Message
			_, err = events.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("upstream: record event %s/%s: %w", out.Namespace, out.Name, err)
	}
	w.count(func(s *Stats) { s.Events++ })
	return nil
}

func (w *Writer) limiter(node string) *rate.Limiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.limiters[node]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(w.cfg.EventQPS), w.cfg.EventBurst)
		w.limiters[node] = l
	}
	return l
}

// maxTokenSeconds bounds what an edge may ask for; the API server may cap
// it further (--service-account-max-token-expiration).
const maxTokenSeconds = 48 * 3600

// Token issues a token of serviceAccount for a pod on node, bound to that
// pod, as the kubelet requests them for projected volumes.
func (w *Writer) Token(ctx context.Context, node, namespace, serviceAccount string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	ref := req.Spec.BoundObjectRef
	if ref == nil || ref.Kind != "Pod" || ref.Name == "" || ref.UID == "" {
		return nil, w.refuse("token for %s/%s must be bound to a pod (kind, name and uid)", namespace, serviceAccount)
	}
	pod, err := w.boundPod(ctx, node, namespace, ref.Name, ref.UID)
	if err != nil {
		return nil, err
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if sa != serviceAccount {
		return nil, w.refuse("pod %s/%s runs as service account %q, not %q", namespace, pod.Name, sa, serviceAccount)
	}
	out := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         req.Spec.Audiences,
		ExpirationSeconds: req.Spec.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if s := out.Spec.ExpirationSeconds; s != nil && *s > maxTokenSeconds {
		v := int64(maxTokenSeconds)
		out.Spec.ExpirationSeconds = &v
	}
	got, err := w.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, out, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("upstream: token for %s/%s: %w", namespace, serviceAccount, err)
	}
	w.count(func(s *Stats) { s.Tokens++ })
	return got, nil
}

// Timeout bounds one API server call made for an edge request.
const Timeout = 30 * time.Second

// Pool runs edge requests on a fixed number of workers, so that a slow API
// server call does not hold up the session reader (and with it the acks of
// everything else that node sends) while the number of concurrent calls
// stays bounded. Submit blocks while every worker is busy and the queue is
// full, which slows that node's reader: back-pressure, not loss.
type Pool struct {
	workers int
	jobs    chan func(context.Context)
}

// NewPool returns a Pool of workers workers.
func NewPool(workers int) *Pool {
	if workers <= 0 {
		workers = 16
	}
	return &Pool{workers: workers, jobs: make(chan func(context.Context), workers*4)}
}

// Submit queues job; it returns false when ctx ends first.
func (p *Pool) Submit(ctx context.Context, job func(context.Context)) bool {
	select {
	case p.jobs <- job:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run runs the workers until ctx is done; jobs still queued then are
// dropped (their edges retry them).
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-p.jobs:
					jctx, cancel := context.WithTimeout(ctx, Timeout)
					job(jctx)
					cancel()
				}
			}
		})
	}
	wg.Wait()
	return nil
}
