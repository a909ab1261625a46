package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/autonomy"
)

func podWithToleration(ns, name, node string, seconds *int64, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: new(bool),
			Containers:                   []corev1.Container{{Name: "app", Image: "localhost/kubeedge/busybox:1"}},
		},
	}
	if seconds != nil {
		p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds}}
	}
	return p
}

func guardedSeconds(p *corev1.Pod, key string) (seconds *int64, found bool) {
	for _, t := range p.Spec.Tolerations {
		if t.Key == key && t.Effect == corev1.TaintEffectNoExecute {
			return t.TolerationSeconds, true
		}
	}
	return nil, false
}

// TestUnreachableEdgeKeepsItsPods: the taint-eviction controller of the
// real controller manager evicts pods of an unreachable node once their
// toleration runs out. Pods on an edge node get their tolerations rewritten
// by cloudcore (the admission default of 300 s, and here a short 8 s window
// that keeps the test fast), so they stay through an outage longer than the
// window and through the reconnect; a pod that opted out is evicted,
// which shows the window really passed with the taint in place.
func TestUnreachableEdgeKeepsItsPods(t *testing.T) {
	cp := controlPlane(t)
	c := startCloud(t, cp, freePorts(t))
	ns, node := "evict", "evict-a"
	mustCreateNS(t, cp.Client, ns)
	// The node lifecycle controller evicts nothing in a zone where no node
	// is Ready (it assumes the cloud lost the zone): a second edge node in
	// the same, private zone stays connected so that eviction is real.
	zone := map[string]string{"topology.kubernetes.io/zone": "evict-zone", "topology.kubernetes.io/region": "evict-region"}
	tok := token(t, cp.Client)
	cfg := edgeConfig(t, t.TempDir(), node, c.ports, tok, "websocket")
	cfg.Modules.Edged.NodeLabels = zone
	e := startEdge(t, cfg)
	healthy := edgeConfig(t, t.TempDir(), "evict-healthy", c.ports, tok, "websocket")
	healthy.Modules.Edged.NodeLabels = zone
	startEdge(t, healthy)
	waitFor(t, 30*time.Second, "Ready", func() (bool, error) {
		a, err := nodeReady(cp.Client, node)
		b, err2 := nodeReady(cp.Client, "evict-healthy")
		return a && b, errors.Join(err, err2)
	})

	ctx := context.Background()
	short := int64(8)
	for _, p := range []*corev1.Pod{
		podWithToleration(ns, "defaulted", node, nil, nil), // admission adds 300 s
		podWithToleration(ns, "short", node, &short, nil),
		podWithToleration(ns, "opted-out", node, &short, map[string]string{autonomy.AnnotationAllowEviction: "true"}),
	} {
		if _, err := cp.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) *corev1.Pod {
		p, err := cp.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The default: the admission plugin's 300 s become "forever" for both
	// taints, on every pod that did not opt out.
	for _, name := range []string{"defaulted", "short"} {
		waitFor(t, 30*time.Second, name+"'s tolerations rewritten", func() (bool, error) {
			p := get(name)
			for _, key := range []string{corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady} {
				if s, ok := guardedSeconds(p, key); !ok || s != nil {
					return false, nil
				}
			}
			return true, nil
		})
	}
	if s, _ := guardedSeconds(get("opted-out"), corev1.TaintNodeUnreachable); s == nil || *s != short {
		t.Fatalf("the opted-out pod's toleration was changed to %v", s)
	}
	uids := map[string]string{}
	for _, name := range []string{"defaulted", "short"} {
		uids[name] = string(get(name).UID)
	}

	e.stop()
	waitFor(t, 90*time.Second, "the unreachable taint", func() (bool, error) {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == corev1.TaintNodeUnreachable && taint.Effect == corev1.TaintEffectNoExecute {
				return true, nil
			}
		}
		return false, nil
	})
	waitFor(t, 60*time.Second, "the opted-out pod to be evicted", func() (bool, error) {
		return get("opted-out").DeletionTimestamp != nil, nil
	})
	for _, name := range []string{"defaulted", "short"} {
		if p := get(name); p.DeletionTimestamp != nil {
			t.Fatalf("pod %s was evicted from the unreachable edge node", name)
		}
	}

	// Reconnect: Ready again, and the kept pods are the same objects.
	startEdge(t, cfg)
	waitFor(t, 30*time.Second, "Ready again", func() (bool, error) { return nodeReady(cp.Client, node) })
	for name, uid := range uids {
		if p := get(name); string(p.UID) != uid || p.DeletionTimestamp != nil {
			t.Fatalf("pod %s changed across the outage (uid %s → %s, deleting %v)", name, uid, p.UID, p.DeletionTimestamp)
		}
	}
	if c.Autonomy.Patched() < 2 {
		t.Errorf("patched %d pods, want at least 2", c.Autonomy.Patched())
	}
}
