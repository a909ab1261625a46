package objectsync

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// countingWriter counts the applies that reach the apiserver.
type countingWriter struct {
	writer
	applies atomic.Int64
}

func (c *countingWriter) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	c.applies.Add(1)
	return c.writer.apply(ctx, obj)
}

func uid(node, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, node) }

func TestStoreAgainstAPIServer(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.ControlPlaneOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	rc := rest.CopyConfig(cp.RESTConfig)
	rc.QPS, rc.Burst = 500, 1000 // the test writes hundreds of records
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := InstallCRDs(ctx, dyn); err != nil {
			t.Fatalf("InstallCRDs #%d: %v", i+1, err)
		}
	}
	for _, ns := range []string{"ns-a", "ns-b"} {
		if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	logs := &syncBuffer{}
	newStore := func() *Store {
		s, err := New(Config{}, Deps{Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// 100 keys on each of 2 nodes: namespaced pods and configmaps in two
	// namespaces, every tenth key a cluster-scoped PersistentVolume. Each
	// is acked three times before the writers start, so the writes coalesce.
	nodes := []string{"edge-a", "edge-b.zone-1"}
	want := map[string]map[wire.Resource]delivery.Acked{}
	type ack struct {
		node string
		key  wire.Resource
		a    delivery.Acked
	}
	var last []ack
	s1 := newStore()
	cw := &countingWriter{writer: s1.w}
	s1.w = cw
	for n, node := range nodes {
		want[node] = map[wire.Resource]delivery.Acked{}
		for i := range 100 {
			key := wire.Resource{Namespace: []string{"ns-a", "ns-b"}[i%2], Type: wire.TypeConfigMap, Name: fmt.Sprintf("cm-%d", i)}
			apiVersion, kind := "v1", "ConfigMap"
			switch {
			case i%10 == 0:
				key = wire.Resource{Type: wire.TypePersistentVolume, Name: fmt.Sprintf("pv-%d", i)}
				kind = "PersistentVolume"
			case i%3 == 0:
				key.Type, key.Name, kind = wire.TypePod, fmt.Sprintf("pod-%d", i), "Pod"
			}
			var prev delivery.Acked
			for v := 1; v <= 3; v++ {
				a := delivery.Acked{UID: uid(n, i), APIVersion: apiVersion, Kind: kind, ResourceVersion: fmt.Sprint(1000*i + v)}
				s1.Record(node, key, a, prev)
				prev = a
			}
			want[node][key] = prev
			last = append(last, ack{node, key, prev})
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s1.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if err := s1.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := cw.applies.Load(); got != 200 {
		t.Errorf("%d applies reached the apiserver, want 200 (one per key after coalescing)", got)
	}
	load := func(what string) {
		t.Helper()
		got, err := newStore().LoadAll(ctx)
		if err != nil {
			t.Fatalf("LoadAll %s: %v", what, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("LoadAll %s (-want +got):\n%s", what, diff)
		}
	}
	load("after the first writes")

	// A recreated object (new UID) replaces its record; forgotten keys lose theirs.
	recreated, forgotNS, forgotCluster := last[1], last[3], last[110]
	if forgotCluster.key.Namespace != "" || forgotNS.key.Namespace == "" {
		t.Fatalf("test set-up: wrong keys picked: %v %v", forgotNS.key, forgotCluster.key)
	}
	newAck := recreated.a
	newAck.UID, newAck.ResourceVersion = uid(9, 1), "99999"
	s1.Record(recreated.node, recreated.key, newAck, recreated.a)
	s1.Forget(forgotNS.node, forgotNS.key, forgotNS.a)
	s1.Forget(forgotCluster.node, forgotCluster.key, forgotCluster.a)
	// A record in a namespace that does not exist is refused by the
	// apiserver; it must be dropped rather than retried forever.
	s1.Record("edge-a", wire.Resource{Namespace: "no-such-ns", Type: wire.TypeSecret, Name: "s"}, acked(uid(7, 7), "1"), delivery.Acked{})
	if err := s1.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	want[recreated.node][recreated.key] = newAck
	delete(want[forgotNS.node], forgotNS.key)
	delete(want[forgotCluster.node], forgotCluster.key)
	load("after recreate and forget")
	if l := logs.String(); !strings.Contains(l, "record dropped") || !strings.Contains(l, "no-such-ns") {
		t.Errorf("the record in a missing namespace was not reported as dropped:\n%s", l)
	}
	osRes := dyn.Resource(ObjectSyncResource)
	for _, gone := range []struct{ ns, name string }{
		{recreated.key.Namespace, RecordName(recreated.node, recreated.a.UID)},
		{forgotNS.key.Namespace, RecordName(forgotNS.node, forgotNS.a.UID)},
	} {
		if _, err := osRes.Namespace(gone.ns).Get(ctx, gone.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("record %s/%s: Get = %v, want NotFound", gone.ns, gone.name, err)
		}
	}
	if _, err := dyn.Resource(ClusterObjectSyncResource).Get(ctx, RecordName(forgotCluster.node, forgotCluster.a.UID), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("forgotten cluster record: Get = %v, want NotFound", err)
	}

	// What kubectl users see.
	bin, err := testenv.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	table := kubectl("get", "objectsyncs", "-A")
	header := strings.Fields(strings.SplitN(table, "\n", 2)[0])
	if diff := cmp.Diff([]string{"NAMESPACE", "NAME", "KIND", "OBJECTNAME", "RESOURCEVERSION", "AGE"}, header); diff != "" {
		t.Errorf("kubectl get objectsyncs -A columns (-want +got):\n%s", diff)
	}
	pod := last[6] // edge-a's pod-6 in ns-a
	wantRow := []string{pod.key.Namespace, "edge-a." + pod.a.UID, "Pod", pod.key.Name, pod.a.ResourceVersion}
	found := false
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && slices.Equal(f[:5], wantRow) {
			found = true
		}
	}
	if !found {
		t.Errorf("kubectl get objectsyncs -A has no row %q:\n%s", wantRow, table)
	}
	names := strings.Fields(kubectl("get", "os", "-n", "ns-b", "-l", LabelNode+"=edge-b.zone-1", "-o", "name"))
	if len(names) != 50 || !slices.Contains(names, "objectsync.reliablesyncs.kubeedge.io/edge-b.zone-1."+uid(1, 1)) {
		t.Errorf("kubectl get os -n ns-b -l node=edge-b.zone-1: %d names, want 50 incl. edge-b.zone-1.%s: %q", len(names), uid(1, 1), names)
	}
	cluster := kubectl("get", "clusterobjectsyncs", "-o", "name")
	if !strings.Contains(cluster, "clusterobjectsync.reliablesyncs.kubeedge.io/edge-a."+uid(0, 0)+"\n") ||
		strings.Contains(cluster, RecordName(forgotCluster.node, forgotCluster.a.UID)) {
		t.Errorf("kubectl get clusterobjectsyncs -o name:\n%s", cluster)
	}
}
