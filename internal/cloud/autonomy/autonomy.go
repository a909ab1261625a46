// Package autonomy keeps pods on edge nodes from being evicted while their
// node is merely unreachable from the cloud.
//
// The API server's DefaultTolerationSeconds admission gives every pod a
// 300 s NoExecute toleration for the node.kubernetes.io/unreachable and
// not-ready taints, after which the taint-eviction controller deletes pods of
// a node that stopped heartbeating. At the edge a lost link is normal and the
// pods keep running (edgecore restores them from its store even after a
// reboot), so evicting them only makes the cloud wrong and restarts every pod
// when the link returns. KubeEdge asks users to install a webhook for this.
//
// Here cloudcore itself rewrites the tolerationSeconds of those two
// tolerations on pods bound to edge nodes, once, right after binding: the
// API server allows changing tolerationSeconds of an existing toleration on
// a pod update. Nothing has to be installed. A pod opts out with the
// annotation AnnotationAllowEviction="true"; the rewritten value is
// configurable (nil: tolerate forever, the default).
package autonomy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
)

// AnnotationAllowEviction on a pod, set to "true", leaves its tolerations
// alone: it is evicted from an unreachable edge node like from any node.
const AnnotationAllowEviction = "kubeedge.io/allow-eviction"

// Taints whose NoExecute tolerations are rewritten.
var guardedTaints = map[string]bool{
	corev1.TaintNodeUnreachable: true,
	corev1.TaintNodeNotReady:    true,
}

// Config says what to write.
type Config struct {
	// TolerationSeconds is written into the guarded tolerations; nil means
	// forever (the pods are never evicted for an unreachable node).
	TolerationSeconds *int64
	// Workers patch pods in parallel (default 2).
	Workers int
}

// Pods is what the Keeper reads about pods and nodes; the EdgeController's
// and the node manager's caches provide it.
type Pods interface {
	Pod(namespace, name string) (*corev1.Pod, bool)
	PodsOnNode(node string) []*corev1.Pod
	OnPodChange(func(*corev1.Pod)) error
}

// Nodes tells edge nodes apart.
type Nodes interface {
	IsEdgeNode(node string) bool
	OnEdgeNodeAdded(func(node string)) error
}

// Deps are the Keeper's collaborators.
type Deps struct {
	Client kubernetes.Interface
	Pods   Pods
	Nodes  Nodes
	Logger *slog.Logger
}

// Keeper rewrites tolerations of pods bound to edge nodes.
type Keeper struct {
	cfg    Config
	client kubernetes.Interface
	pods   Pods
	nodes  Nodes
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[types.NamespacedName]

	mu      sync.Mutex
	patched int64 // guarded by mu
}

// New builds a Keeper and registers its informer handlers.
func New(cfg Config, deps Deps) (*Keeper, error) {
	if deps.Client == nil || deps.Pods == nil || deps.Nodes == nil {
		return nil, errors.New("autonomy: Client, Pods and Nodes are required")
	}
	if cfg.TolerationSeconds != nil && *cfg.TolerationSeconds < 0 {
		return nil, fmt.Errorf("autonomy: TolerationSeconds %d is negative", *cfg.TolerationSeconds)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	k := &Keeper{cfg: cfg, client: deps.Client, pods: deps.Pods, nodes: deps.Nodes,
		log: deps.Logger.With("component", "autonomy"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "autonomy"}),
	}
	if err := deps.Pods.OnPodChange(func(p *corev1.Pod) {
		if k.needsRewrite(p) && k.nodes.IsEdgeNode(p.Spec.NodeName) {
			k.queue.Add(types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
		}
	}); err != nil {
		return nil, fmt.Errorf("autonomy: %w", err)
	}
	// A pod can be bound before the node cache knows its node is an edge.
	if err := deps.Nodes.OnEdgeNodeAdded(func(node string) {
		for _, p := range k.pods.PodsOnNode(node) {
			if k.needsRewrite(p) {
				k.queue.Add(types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("autonomy: %w", err)
	}
	return k, nil
}

// Patched is the number of pods whose tolerations were rewritten.
func (k *Keeper) Patched() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.patched
}

// Run processes the queue until ctx is done.
func (k *Keeper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range k.cfg.Workers {
		wg.Go(func() {
			for {
				key, shutdown := k.queue.Get()
				if shutdown {
					return
				}
				err := k.sync(ctx, key)
				switch {
				case err == nil || ctx.Err() != nil:
					k.queue.Forget(key)
				case k.queue.NumRequeues(key) < 10:
					k.log.Warn("rewriting tolerations failed; retrying", "pod", key, "err", err)
					k.queue.AddRateLimited(key) // transient apiserver errors and conflicts
				default:
					k.log.Error("rewriting tolerations failed; giving up", "pod", key, "err", err)
					k.queue.Forget(key)
				}
				k.queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
	return nil
}

// needsRewrite reports whether p has a guarded toleration whose seconds
// differ from the configured value.
func (k *Keeper) needsRewrite(p *corev1.Pod) bool {
	if p.Annotations[AnnotationAllowEviction] == "true" || p.DeletionTimestamp != nil {
		return false
	}
	for _, t := range p.Spec.Tolerations {
		if isGuarded(t) && !sameSeconds(t.TolerationSeconds, k.cfg.TolerationSeconds) {
			return true
		}
	}
	return false
}

func isGuarded(t corev1.Toleration) bool {
	return t.Effect == corev1.TaintEffectNoExecute && guardedTaints[t.Key]
}

func sameSeconds(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Rewrite returns p's tolerations with the guarded ones set to seconds.
func Rewrite(tolerations []corev1.Toleration, seconds *int64) []corev1.Toleration {
	out := make([]corev1.Toleration, len(tolerations))
	for i, t := range tolerations {
		if isGuarded(t) {
			if seconds == nil {
				t.TolerationSeconds = nil
			} else {
				v := *seconds
				t.TolerationSeconds = &v
			}
		}
		out[i] = t
	}
	return out
}

func (k *Keeper) sync(ctx context.Context, key types.NamespacedName) error {
	p, ok := k.pods.Pod(key.Namespace, key.Name)
	if !ok || !k.needsRewrite(p) || !k.nodes.IsEdgeNode(p.Spec.NodeName) {
		return nil
	}
	// A merge patch replaces the whole list (tolerations have no merge key);
	// the resourceVersion makes it fail on a concurrent change instead of
	// overwriting it, and the retry reads the newer pod from the cache.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": p.ResourceVersion},
		"spec":     map[string]any{"tolerations": Rewrite(p.Spec.Tolerations, k.cfg.TolerationSeconds)},
	})
	if err != nil {
		return err
	}
	_, err = k.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch tolerations of %s: %w", key, err)
	}
	k.mu.Lock()
	k.patched++
	k.mu.Unlock()
	k.log.Debug("tolerations rewritten", "pod", key, "node", p.Spec.NodeName)
	return nil
}
