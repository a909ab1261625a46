package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
)

// DefaultKubeletPort is the port the apiserver dials for a node that reports
// no kubelet endpoint (its --kubelet-port default).
const DefaultKubeletPort = 10250

// Errors of a lookup, wrapped with detail.
var (
	// ErrAmbiguous: several nodes, at least one of them an edge node,
	// report the target address and kubelet port.
	ErrAmbiguous = errors.New("stream: ambiguous target")
	// ErrNotKubeletPort: the target is an edge node's address with another
	// port than its kubelet's.
	ErrNotKubeletPort = errors.New("stream: not an edge kubelet port")
	// ErrNotSynced: the node cache has not synced yet.
	ErrNotSynced = errors.New("stream: node cache not synced yet")
)

// Route is where a CONNECT target goes: to edge node Node through a
// tunnel, or (Node empty) directly.
type Route struct {
	Node string
}

// Router maps CONNECT targets to routes.
type Router interface {
	Lookup(t tunnel.Target) (Route, error)
}

// Addresser gives the addresses a node's kubelet serving certificate may
// name: those it reports that route to it alone.
type Addresser interface {
	NodeAddresses(node string) (dnsNames []string, ips []net.IP, err error)
}

// addrIndex maps (address, kubelet port) to nodes. It has no I/O: the
// informer feeds it with set and remove.
type addrIndex struct {
	mu    sync.RWMutex
	nodes map[string]nodeAddrs        // guarded by mu; by node name
	byKey map[tunnel.Target][]string  // guarded by mu; node names, sorted
	edges map[string]map[string]int32 // guarded by mu; host -> edge node -> kubelet port
}

type nodeAddrs struct {
	edge bool
	port int
	keys []tunnel.Target
}

func newAddrIndex() *addrIndex {
	return &addrIndex{nodes: map[string]nodeAddrs{}, byKey: map[tunnel.Target][]string{}, edges: map[string]map[string]int32{}}
}

// set indexes n, replacing what was indexed for its name.
func (x *addrIndex) set(n *corev1.Node) {
	_, edge := n.Labels[nodes.LabelEdgeRole]
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port <= 0 || port > 65535 {
		port = DefaultKubeletPort
	}
	na := nodeAddrs{edge: edge, port: port}
	for _, a := range n.Status.Addresses {
		h, err := tunnel.CanonicalHost(a.Address)
		if err != nil {
			continue // nothing can CONNECT to it either
		}
		k := tunnel.Target{Host: h, Port: port}
		if !slices.Contains(na.keys, k) {
			na.keys = append(na.keys, k)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(n.Name)
	x.nodes[n.Name] = na
	for _, k := range na.keys {
		names := append(x.byKey[k], n.Name)
		sort.Strings(names)
		x.byKey[k] = names
		if edge {
			if x.edges[k.Host] == nil {
				x.edges[k.Host] = map[string]int32{}
			}
			x.edges[k.Host][n.Name] = int32(port)
		}
	}
}

func (x *addrIndex) remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(name)
}

func (x *addrIndex) removeLocked(name string) {
	old, ok := x.nodes[name]
	if !ok {
		return
	}
	delete(x.nodes, name)
	for _, k := range old.keys {
		names := slices.DeleteFunc(x.byKey[k], func(s string) bool { return s == name })
		if len(names) == 0 {
			delete(x.byKey, k)
		} else {
			x.byKey[k] = names
		}
		if m := x.edges[k.Host]; m != nil {
			delete(m, name)
			if len(m) == 0 {
				delete(x.edges, k.Host)
			}
		}
	}
}

// Lookup implements Router.
func (x *addrIndex) Lookup(t tunnel.Target) (Route, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	names := x.byKey[t]
	var edges []string
	for _, n := range names {
		if x.nodes[n].edge {
			edges = append(edges, n)
		}
	}
	switch {
	case len(edges) == 1 && len(names) == 1:
		return Route{Node: edges[0]}, nil
	case len(edges) > 0:
		return Route{}, fmt.Errorf("%w: %s is the address and kubelet port of nodes %s; give each edge node a distinct address",
			ErrAmbiguous, t, quoteAll(names))
	case len(names) > 0:
		return Route{}, nil // a cloud node's kubelet
	}
	if m := x.edges[t.Host]; len(m) > 0 {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%q (kubelet port %d)", n, m[n]))
		}
		return Route{}, fmt.Errorf("%w: %s is an address of edge node %s; only the kubelet port is reachable through cloudstream",
			ErrNotKubeletPort, t, strings.Join(parts, ", "))
	}
	return Route{}, nil
}

// NodeAddresses implements Addresser.
func (x *addrIndex) NodeAddresses(node string) ([]string, []net.IP, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	na, ok := x.nodes[node]
	if !ok || len(na.keys) == 0 {
		return nil, nil, fmt.Errorf("node %q reports no addresses (yet)", node)
	}
	var dns []string
	var ips []net.IP
	for _, k := range na.keys {
		if names := x.byKey[k]; len(names) != 1 {
			continue // shared with another node: routes to neither, certifies neither
		}
		if a, err := netip.ParseAddr(k.Host); err == nil {
			ips = append(ips, net.IP(a.AsSlice()))
		} else {
			dns = append(dns, k.Host)
		}
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, nil, fmt.Errorf("node %q shares every address it reports with other nodes", node)
	}
	return dns, ips, nil
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// NodeIndex is a Router fed by a Node informer.
type NodeIndex struct {
	*addrIndex
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
}

var (
	_ Router    = (*NodeIndex)(nil)
	_ Addresser = (*NodeIndex)(nil)
)

// NewNodeIndex builds an index of every Node's addresses; Run feeds it.
func NewNodeIndex(client kubernetes.Interface) (*NodeIndex, error) {
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Core().V1().Nodes().Informer()
	// Keep only what routing needs: thousands of full Node objects would
	// cost megabytes for nothing.
	if err := inf.SetTransform(func(obj any) (any, error) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return obj, nil
		}
		slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion}}
		slim.Status.Addresses = n.Status.Addresses
		slim.Status.DaemonEndpoints = n.Status.DaemonEndpoints
		return slim, nil
	}); err != nil {
		return nil, fmt.Errorf("stream: node informer: %w", err)
	}
	x := &NodeIndex{addrIndex: newAddrIndex(), factory: f, informer: inf}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { x.setObj(obj) },
		UpdateFunc: func(_, obj any) { x.setObj(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				x.remove(n.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("stream: node informer: %w", err)
	}
	return x, nil
}

func (x *NodeIndex) setObj(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		x.set(n)
	}
}

// Run feeds the index until ctx is done.
func (x *NodeIndex) Run(ctx context.Context) error {
	x.factory.Start(ctx.Done())
	<-ctx.Done()
	x.factory.Shutdown()
	return nil
}

// HasSynced reports whether the index holds every Node.
func (x *NodeIndex) HasSynced() bool { return x.informer.HasSynced() }

// Lookup implements Router; it fails until the index has synced.
func (x *NodeIndex) Lookup(t tunnel.Target) (Route, error) {
	if !x.informer.HasSynced() {
		return Route{}, ErrNotSynced
	}
	return x.addrIndex.Lookup(t)
}

// NodeAddresses implements Addresser; it fails until the index has synced.
func (x *NodeIndex) NodeAddresses(node string) ([]string, []net.IP, error) {
	if !x.informer.HasSynced() {
		return nil, nil, ErrNotSynced
	}
	return x.addrIndex.NodeAddresses(node)
}
