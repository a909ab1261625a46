package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BenchmarkDeliver1000Objects measures the time from an edge's session start
// until 1,000 pods bound to it (already in the apiserver) are persisted in
// its SQLite store and acknowledged. Each iteration uses a new node, so
// nothing was acknowledged before. Run with -benchtime=Nx.
func BenchmarkDeliver1000Objects(b *testing.B) {
	if shared == nil {
		b.Skip(sharedReason)
	}
	cp := shared
	rc := rest.CopyConfig(cp.RESTConfig)
	rc.QPS, rc.Burst = 500, 1000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	p := freePorts(b)
	c := startCloud(b, cp, p)
	tok := token(b, cp.Client)
	ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	const objects = 1000
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		node := fmt.Sprintf("bench-node-%d", i)
		createPods(b, client, ns, node, objects)
		waitFor(b, 60*time.Second, "the informer to see the pods", func() (bool, error) {
			return len(c.Edges.Desired(node)) == objects, nil
		})
		e := startEdge(b, edgeConfig(b, b.TempDir(), node, p, tok, "websocket"))
		waitFor(b, 30*time.Second, "the session", func() (bool, error) { return c.Hub.Session(node) != nil, nil })
		start := c.Hub.Session(node).ConnectedAt
		b.StartTimer()
		for len(c.Delivery.AckedVersions(node)) < objects {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		total += time.Since(start)
		if n, err := e.store(b).Count(context.Background()); err != nil || n != objects {
			b.Fatalf("edge store holds %d objects (%v), want %d", n, err, objects)
		}
		e.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/1000-acked")
}

func createPods(b *testing.B, client kubernetes.Interface, ns, node string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-p%d", node, i), Namespace: ns, Labels: map[string]string{"app": "bench"}},
				Spec: corev1.PodSpec{
					NodeName:                     node,
					AutomountServiceAccountToken: new(bool),
					Containers:                   []corev1.Container{{Name: "c", Image: "localhost/kubeedge/busybox:1", Command: []string{"sleep", "3600"}}},
				},
			}
			if _, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
