package edgecontroller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// Index names on the pod informer.
const (
	byNode      = "node"
	byConfigMap = "configmap"
	bySecret    = "secret"
)

// Deps are the controller's collaborators.
type Deps struct {
	Client kubernetes.Interface
	// Enqueue tells delivery that key may have changed for node.
	Enqueue func(node string, key wire.Resource)
	Logger  *slog.Logger
}

// Controller is the EdgeController's object source.
type Controller struct {
	deps       Deps
	log        *slog.Logger
	factory    informers.SharedInformerFactory
	pods       cache.SharedIndexInformer
	cms        cache.SharedIndexInformer
	secrets    cache.SharedIndexInformer
	podFactory informers.SharedInformerFactory
}

var _ delivery.Source = (*Controller)(nil)

// New builds the informers; nothing runs until Run.
func New(deps Deps) (*Controller, error) {
	if deps.Client == nil || deps.Enqueue == nil {
		return nil, errors.New("edgecontroller: Client and Enqueue are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	c := &Controller{deps: deps, log: deps.Logger.With("component", "edgecontroller")}
	// Managed fields are never sent to edges; dropping them halves cache memory.
	strip := informers.WithTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	})
	c.factory = informers.NewSharedInformerFactoryWithOptions(deps.Client, 0, strip)
	// Only pods bound to some node matter; the apiserver filters the rest.
	podFactory := informers.NewSharedInformerFactoryWithOptions(deps.Client, 0, strip,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	c.pods = podFactory.Core().V1().Pods().Informer()
	if err := c.pods.AddIndexers(cache.Indexers{
		byNode:      func(obj any) ([]string, error) { return []string{obj.(*corev1.Pod).Spec.NodeName}, nil },
		byConfigMap: func(obj any) ([]string, error) { return refKeys(obj.(*corev1.Pod), wire.TypeConfigMap), nil },
		bySecret:    func(obj any) ([]string, error) { return refKeys(obj.(*corev1.Pod), wire.TypeSecret), nil },
	}); err != nil {
		return nil, fmt.Errorf("edgecontroller: add indexers: %w", err)
	}
	c.cms = c.factory.Core().V1().ConfigMaps().Informer()
	c.secrets = c.factory.Core().V1().Secrets().Informer()
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podChanged(nil, obj) },
		UpdateFunc: func(old, obj any) { c.podChanged(old, obj) },
		DeleteFunc: func(obj any) { c.podChanged(obj, nil) },
	}); err != nil {
		return nil, err
	}
	for _, ref := range []struct {
		inf   cache.SharedIndexInformer
		typ   wire.ResourceType
		index string
	}{{c.cms, wire.TypeConfigMap, byConfigMap}, {c.secrets, wire.TypeSecret, bySecret}} {
		changed := func(obj any) { c.refChanged(obj, ref.typ, ref.index) }
		if _, err := ref.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: changed, UpdateFunc: func(_, obj any) { changed(obj) }, DeleteFunc: changed,
		}); err != nil {
			return nil, err
		}
	}
	c.podFactory = podFactory
	return c, nil
}

// Run starts the informers and blocks until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	c.podFactory.Start(ctx.Done())
	<-ctx.Done()
	c.factory.Shutdown()
	c.podFactory.Shutdown()
	return nil
}

// HasSynced reports whether every cache has its initial list.
func (c *Controller) HasSynced() bool {
	return c.pods.HasSynced() && c.cms.HasSynced() && c.secrets.HasSynced()
}

// Pod returns the cached pod namespace/name (shared: do not modify it).
func (c *Controller) Pod(namespace, name string) (*corev1.Pod, bool) {
	o, ok, _ := c.pods.GetIndexer().GetByKey(namespace + "/" + name)
	if !ok {
		return nil, false
	}
	p, ok := o.(*corev1.Pod)
	return p, ok
}

// PodsOnNode returns the cached pods bound to node (shared: do not modify).
func (c *Controller) PodsOnNode(node string) []*corev1.Pod {
	objs, _ := c.pods.GetIndexer().ByIndex(byNode, node)
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

// OnPodChange calls f, from the informer's goroutine, with every added or
// updated pod bound to a node. f must not block.
func (c *Controller) OnPodChange(f func(*corev1.Pod)) error {
	call := func(obj any) {
		if p := asPod(obj); p != nil && p.Spec.NodeName != "" {
			f(p)
		}
	}
	_, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: call, UpdateFunc: func(_, obj any) { call(obj) },
	})
	return err
}

// Desired lists the keys node should hold.
func (c *Controller) Desired(node string) []wire.Resource {
	objs, _ := c.pods.GetIndexer().ByIndex(byNode, node)
	seen := map[wire.Resource]bool{}
	var out []wire.Resource
	add := func(k wire.Resource) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		add(wire.Resource{Namespace: p.Namespace, Type: wire.TypePod, Name: p.Name})
		for _, typ := range []wire.ResourceType{wire.TypeConfigMap, wire.TypeSecret} {
			for _, name := range refNames(p, typ) {
				add(wire.Resource{Namespace: p.Namespace, Type: typ, Name: name})
			}
		}
	}
	return out
}

// Lookup returns key's object as node should hold it.
func (c *Controller) Lookup(node string, key wire.Resource) (delivery.Object, bool) {
	nsName := key.Namespace + "/" + key.Name
	switch key.Type {
	case wire.TypePod:
		o, ok, _ := c.pods.GetIndexer().GetByKey(nsName)
		if !ok || o.(*corev1.Pod).Spec.NodeName != node {
			return delivery.Object{}, false
		}
		return toObject(key, o.(*corev1.Pod), "Pod")
	case wire.TypeConfigMap:
		if !c.usedOn(node, byConfigMap, nsName) {
			return delivery.Object{}, false
		}
		o, ok, _ := c.cms.GetIndexer().GetByKey(nsName)
		if !ok {
			return delivery.Object{}, false
		}
		return toObject(key, o.(*corev1.ConfigMap), "ConfigMap")
	case wire.TypeSecret:
		if !c.usedOn(node, bySecret, nsName) {
			return delivery.Object{}, false
		}
		o, ok, _ := c.secrets.GetIndexer().GetByKey(nsName)
		if !ok {
			return delivery.Object{}, false
		}
		return toObject(key, o.(*corev1.Secret), "Secret")
	}
	return delivery.Object{}, false
}

// usedOn reports whether a pod on node references the object nsName.
func (c *Controller) usedOn(node, index, nsName string) bool {
	objs, _ := c.pods.GetIndexer().ByIndex(index, nsName)
	for _, o := range objs {
		if o.(*corev1.Pod).Spec.NodeName == node {
			return true
		}
	}
	return false
}

type object interface {
	runtime.Object
	metav1.Object
}

func toObject(key wire.Resource, o object, kind string) (delivery.Object, bool) {
	// Cached objects are shared: set the type on a copy.
	cp := o.DeepCopyObject()
	cp.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	b, err := json.Marshal(cp)
	if err != nil {
		return delivery.Object{}, false
	}
	return delivery.Object{
		Resource: key, UID: string(o.GetUID()), APIVersion: "v1", Kind: kind,
		ResourceVersion: o.GetResourceVersion(), Content: b,
	}, true
}

func (c *Controller) podChanged(oldObj, newObj any) {
	for _, obj := range []any{oldObj, newObj} {
		p := asPod(obj)
		if p == nil || p.Spec.NodeName == "" {
			continue
		}
		c.deps.Enqueue(p.Spec.NodeName, wire.Resource{Namespace: p.Namespace, Type: wire.TypePod, Name: p.Name})
		for _, typ := range []wire.ResourceType{wire.TypeConfigMap, wire.TypeSecret} {
			for _, name := range refNames(p, typ) {
				c.deps.Enqueue(p.Spec.NodeName, wire.Resource{Namespace: p.Namespace, Type: typ, Name: name})
			}
		}
	}
}

func (c *Controller) refChanged(obj any, typ wire.ResourceType, index string) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	key := wire.Resource{Namespace: m.GetNamespace(), Type: typ, Name: m.GetName()}
	pods, _ := c.pods.GetIndexer().ByIndex(index, m.GetNamespace()+"/"+m.GetName())
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.(*corev1.Pod).Spec.NodeName] = true
	}
	for n := range nodes {
		c.deps.Enqueue(n, key)
	}
}

func asPod(obj any) *corev1.Pod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}
