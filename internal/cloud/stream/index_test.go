package stream

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeedge-go/kubeedge/internal/cloud/nodes"
	"github.com/kubeedge-go/kubeedge/internal/tunnel"
)

func node(name string, edge bool, port int32, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if edge {
		n.Labels[nodes.LabelEdgeRole] = ""
	}
	for i, a := range addrs {
		typ := corev1.NodeInternalIP
		if i == len(addrs)-1 && strings.ContainsAny(a, "abcdefghijklmnopqrstuvwxyz") && !strings.Contains(a, ":") {
			typ = corev1.NodeHostName
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	return n
}

func target(t *testing.T, s string) tunnel.Target {
	t.Helper()
	tg, err := tunnel.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestAddrIndex(t *testing.T) {
	x := newAddrIndex()
	x.set(node("edge-a", true, 10350, "127.0.0.2", "edge-a"))
	x.set(node("edge-b", true, 10350, "::ffff:127.0.0.3", "edge-b"))
	x.set(node("edge-v6", true, 10350, "fd00:0::1"))
	x.set(node("edge-noport", true, 0, "127.0.0.9"))
	x.set(node("cloud-1", false, 10250, "10.1.0.1", "cloud-1"))
	x.set(node("dup-1", true, 10350, "127.0.0.7"))
	x.set(node("dup-2", true, 10350, "127.0.0.7"))
	x.set(node("mixed-cloud", false, 10350, "127.0.0.8"))
	x.set(node("mixed-edge", true, 10350, "127.0.0.8"))
	x.set(node("bad-addr", true, 10350, "not an address!"))

	for _, tc := range []struct {
		target, node, err string
		is                error
	}{
		{target: "127.0.0.2:10350", node: "edge-a"},
		{target: "edge-a:10350", node: "edge-a"},
		{target: "127.0.0.3:10350", node: "edge-b"},
		{target: "[::ffff:127.0.0.3]:10350", node: "edge-b"},
		{target: "[fd00::1]:10350", node: "edge-v6"},
		{target: "127.0.0.9:10250", node: "edge-noport"},
		{target: "10.1.0.1:10250"},
		{target: "cloud-1:10250"},
		{target: "10.96.0.10:443"},
		{target: "127.0.0.2:22", err: `127.0.0.2:22 is an address of edge node "edge-a" (kubelet port 10350)`, is: ErrNotKubeletPort},
		{target: "127.0.0.7:10350", err: `nodes "dup-1", "dup-2"`, is: ErrAmbiguous},
		{target: "127.0.0.8:10350", err: `nodes "mixed-cloud", "mixed-edge"`, is: ErrAmbiguous},
	} {
		t.Run(tc.target, func(t *testing.T) {
			r, err := x.Lookup(target(t, tc.target))
			if tc.err != "" {
				if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Lookup = %+v, %v; want %v containing %q", r, err, tc.is, tc.err)
				}
				return
			}
			if err != nil || r.Node != tc.node {
				t.Fatalf("Lookup = %+v, %v; want node %q", r, err, tc.node)
			}
		})
	}

	// Updates replace, deletes remove.
	x.set(node("edge-a", true, 10351, "127.0.0.20"))
	if r, err := x.Lookup(target(t, "127.0.0.20:10351")); err != nil || r.Node != "edge-a" {
		t.Fatalf("after update: %+v, %v", r, err)
	}
	if r, err := x.Lookup(target(t, "127.0.0.2:10350")); err != nil || r.Node != "" {
		t.Fatalf("old address after update: %+v, %v", r, err)
	}
	x.remove("dup-2")
	if r, err := x.Lookup(target(t, "127.0.0.7:10350")); err != nil || r.Node != "dup-1" {
		t.Fatalf("after removing the twin: %+v, %v", r, err)
	}
	for _, n := range []string{"edge-a", "edge-b", "edge-v6", "edge-noport", "cloud-1", "dup-1", "mixed-cloud", "mixed-edge", "bad-addr", "never"} {
		x.remove(n)
	}
	if len(x.nodes) != 0 || len(x.byKey) != 0 || len(x.edges) != 0 {
		t.Fatalf("index not empty after removing everything: %v %v %v", x.nodes, x.byKey, x.edges)
	}
}

// NodeIndex follows a (fake) apiserver through its informer.
func TestNodeIndexFollowsNodes(t *testing.T) {
	client := fake.NewClientset(node("edge-a", true, 10350, "127.0.0.2"))
	x, err := NewNodeIndex(client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Lookup(target(t, "127.0.0.2:10350")); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Lookup before sync: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "sync", x.HasSynced)
	if r, err := x.Lookup(target(t, "127.0.0.2:10350")); err != nil || r.Node != "edge-a" {
		t.Fatalf("Lookup = %+v, %v", r, err)
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node("edge-b", true, 10350, "127.0.0.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge-b", func() bool { r, _ := x.Lookup(target(t, "127.0.0.3:10350")); return r.Node == "edge-b" })
	if err := client.CoreV1().Nodes().Delete(ctx, "edge-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge-a gone", func() bool { r, err := x.Lookup(target(t, "127.0.0.2:10350")); return err == nil && r.Node == "" })
}
