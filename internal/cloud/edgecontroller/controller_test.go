package edgecontroller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon in init (client-go imports klog).
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// enqueued records Enqueue calls.
type enqueued struct {
	mu     sync.Mutex
	calls  []string       // guarded by mu; "node key" since the last take
	totals map[string]int // guarded by mu; every call, never reset
}

func (e *enqueued) enqueue(node string, key wire.Resource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := node + " " + key.String()
	e.calls = append(e.calls, s)
	if e.totals == nil {
		e.totals = map[string]int{}
	}
	e.totals[s]++
}

// take returns and forgets the calls so far.
func (e *enqueued) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls
	e.calls = nil
	return c
}

// expect waits until exactly the want pairs (in any order, each once) were
// enqueued since the last expect, then forgets them.
func (e *enqueued) expect(t *testing.T, what string, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		got := slices.Clone(e.calls)
		e.mu.Unlock()
		slices.Sort(got)
		if len(got) >= len(want) {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s: Enqueue calls (-want +got):\n%s", what, diff)
			}
			e.take()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out; enqueued %v, want %v", what, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func pod(ns, name, node, rv string, spec corev1.PodSpec) *corev1.Pod {
	spec.NodeName = node
	if len(spec.Containers) == 0 {
		spec.Containers = append(spec.Containers, corev1.Container{Name: "app", Image: "busybox"})
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv,
		UID: types.UID("uid-pod-" + name)}, Spec: spec}
}

func configMap(ns, name, rv string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv,
		UID: types.UID("uid-cm-" + name)}, Data: map[string]string{"k": "v-" + rv}}
}

func secret(ns, name, rv string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv,
		UID: types.UID("uid-secret-" + name)}, Data: map[string][]byte{"k": []byte("s-" + rv)}}
}

type env struct {
	c      *Controller
	client *fake.Clientset
	enq    *enqueued
	rv     int // sentinel resourceVersions; test goroutine only
}

// start runs a Controller on a fake clientset holding objs and waits until
// its caches are synced and its watches are open (the fake tracker does not
// replay events that happen between list and watch).
func start(t *testing.T, objs ...runtime.Object) *env {
	t.Helper()
	client := fake.NewClientset(append(sentinelPods(), objs...)...)
	var mu sync.Mutex
	watching := map[string]bool{}
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		mu.Lock()
		watching[a.GetResource().Resource] = true
		mu.Unlock()
		return true, w, nil
	})
	e := &env{client: client, enq: &enqueued{}}
	c, err := New(Deps{Client: client, Enqueue: e.enq.enqueue})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		open := watching["pods"] && watching["configmaps"] && watching["secrets"]
		mu.Unlock()
		if open && c.HasSynced() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not synced (HasSynced %v, watches %v)", c.HasSynced(), watching)
		}
		time.Sleep(time.Millisecond)
	}
	bg := context.Background()
	if _, err := client.CoreV1().ConfigMaps("sentinel").Create(bg, configMap("sentinel", "sentinel", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets("sentinel").Create(bg, secret("sentinel", "sentinel", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	return e
}

// Sentinel pods: one on node sentinel-r using configmap and secret
// "sentinel" (created by start once the pod is cached, so that exactly one
// Enqueue follows), one on node sentinel-p using nothing.
func sentinelPods() []runtime.Object {
	return []runtime.Object{
		pod("sentinel", "sentinel-ref", "sentinel-r", "1", corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("sentinel"), secretVolume("sentinel")}}),
		pod("sentinel", "sentinel-pod", "sentinel-p", "1", corev1.PodSpec{}),
	}
}

// settle waits until each informer's handler has processed every event so
// far, then forgets what was enqueued. A handler sees its informer's events
// in order, so once the Enqueue of a fresh change to that informer's
// sentinel arrives, everything before it was handled. Sentinel enqueues are
// counted over the whole test: each has a known number of sources.
func (e *env) settle(t *testing.T) {
	t.Helper()
	e.rv++
	rv := fmt.Sprint(e.rv)
	ctx := context.Background()
	core := e.client.CoreV1()
	if _, err := core.ConfigMaps("sentinel").Update(ctx, configMap("sentinel", "sentinel", rv), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets("sentinel").Update(ctx, secret("sentinel", "sentinel", rv), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Pods("sentinel").Update(ctx, pod("sentinel", "sentinel-pod", "sentinel-p", rv, corev1.PodSpec{}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitTotals(t, map[string]int{
		// the pod add, then old and new of each update
		"sentinel-p sentinel/pod/sentinel-pod": 1 + 2*e.rv,
		// the pod add, the create in start, then each update
		"sentinel-r sentinel/configmap/sentinel": 2 + e.rv,
		"sentinel-r sentinel/secret/sentinel":    2 + e.rv,
	})
	e.enq.take()
}

func (e *env) waitTotals(t *testing.T, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.enq.mu.Lock()
		got := map[string]int{}
		for k := range want {
			got[k] = e.enq.totals[k]
		}
		e.enq.mu.Unlock()
		if cmp.Equal(want, got) {
			return
		}
		for k, n := range got {
			if n > want[k] {
				t.Fatalf("%q enqueued %d times, want %d", k, n, want[k])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("informers did not settle: sentinel enqueues %v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func key(ns string, typ wire.ResourceType, name string) wire.Resource {
	return wire.Resource{Namespace: ns, Type: typ, Name: name}
}

func keyStrings(keys []wire.Resource) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

// everything is a pod using a configmap and a secret in every way a pod can.
func everything() corev1.PodSpec {
	return corev1.PodSpec{
		Volumes: []corev1.Volume{cmVolume("cm-vol"), secretVolume("sec-vol"),
			projected(cmProjection("cm-proj"), secretProjection("sec-proj"))},
		Containers: []corev1.Container{{Name: "app", Image: "busybox",
			Env:     []corev1.EnvVar{envCM("cm-env"), envSecret("sec-env")},
			EnvFrom: []corev1.EnvFromSource{envFromCM("cm-envfrom"), envFromSecret("sec-envfrom")}}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
	}
}

func fixture() []runtime.Object {
	objs := []runtime.Object{
		pod("default", "p1", "node-a", "11", everything()),
		pod("default", "p2", "node-b", "12", corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("cm-vol")}}),
		// A reference to something that does not exist (yet).
		pod("other", "p3", "node-a", "13", corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("missing")}}),
		configMap("default", "unused", "20"),
		configMap("other", "cm-vol", "21"), // same name, other namespace: not used
	}
	for _, n := range []string{"cm-vol", "cm-proj", "cm-env", "cm-envfrom"} {
		objs = append(objs, configMap("default", n, "30"))
	}
	for _, n := range []string{"sec-vol", "sec-proj", "sec-env", "sec-envfrom", "pull"} {
		objs = append(objs, secret("default", n, "40"))
	}
	return objs
}

func TestNewRequiresDeps(t *testing.T) {
	for name, deps := range map[string]Deps{
		"no client":  {Enqueue: func(string, wire.Resource) {}},
		"no enqueue": {Client: fake.NewClientset()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(deps); err == nil || !strings.Contains(err.Error(), "Client and Enqueue are required") {
				t.Fatalf("New = %v, want an error naming the required deps", err)
			}
		})
	}
}

func TestDesired(t *testing.T) {
	e := start(t, fixture()...)
	want := []string{
		"default/pod/p1",
		"default/configmap/cm-vol", "default/configmap/cm-proj", "default/configmap/cm-env", "default/configmap/cm-envfrom",
		"default/secret/sec-vol", "default/secret/sec-proj", "default/secret/sec-env", "default/secret/sec-envfrom", "default/secret/pull",
		"other/pod/p3", "other/configmap/missing",
	}
	slices.Sort(want)
	got := e.c.Desired("node-a")
	if diff := cmp.Diff(want, keyStrings(got)); diff != "" {
		t.Errorf("Desired(node-a) (-want +got):\n%s", diff)
	}
	if len(got) != len(want) {
		t.Errorf("Desired(node-a) has %d keys, want %d without duplicates", len(got), len(want))
	}
	if diff := cmp.Diff([]string{"default/configmap/cm-vol", "default/pod/p2"}, keyStrings(e.c.Desired("node-b"))); diff != "" {
		t.Errorf("Desired(node-b) (-want +got):\n%s", diff)
	}
	if got := e.c.Desired("node-z"); len(got) != 0 {
		t.Errorf("Desired of a node without pods = %v", got)
	}
}

func TestLookup(t *testing.T) {
	e := start(t, fixture()...)
	type want struct {
		ok         bool
		kind, rv   string
		uid        string
		dataSubstr string
	}
	for _, tc := range []struct {
		node string
		key  wire.Resource
		want want
	}{
		{"node-a", key("default", wire.TypePod, "p1"), want{true, "Pod", "11", "uid-pod-p1", `"nodeName":"node-a"`}},
		{"node-b", key("default", wire.TypePod, "p1"), want{}}, // another node's pod
		{"node-a", key("default", wire.TypePod, "nope"), want{}},
		{"node-a", key("default", wire.TypeConfigMap, "cm-vol"), want{true, "ConfigMap", "30", "uid-cm-cm-vol", `"data":{"k":"v-30"}`}},
		{"node-b", key("default", wire.TypeConfigMap, "cm-vol"), want{true, "ConfigMap", "30", "uid-cm-cm-vol", `"k":"v-30"`}},
		{"node-a", key("default", wire.TypeConfigMap, "cm-envfrom"), want{true, "ConfigMap", "30", "uid-cm-cm-envfrom", `"k"`}},
		{"node-b", key("default", wire.TypeConfigMap, "cm-env"), want{}}, // exists, used only on node-a
		{"node-a", key("default", wire.TypeConfigMap, "unused"), want{}}, // exists, used by no pod
		{"node-a", key("other", wire.TypeConfigMap, "cm-vol"), want{}},   // same name in a namespace no pod uses
		{"node-a", key("other", wire.TypeConfigMap, "missing"), want{}},  // used, does not exist
		{"node-a", key("default", wire.TypeSecret, "pull"), want{true, "Secret", "40", "uid-secret-pull", `"data":{"k":"`}},
		{"node-a", key("default", wire.TypeSecret, "sec-proj"), want{true, "Secret", "40", "uid-secret-sec-proj", `"k"`}},
		{"node-b", key("default", wire.TypeSecret, "sec-vol"), want{}},
		{"node-a", key("default", wire.TypeSecret, "cm-vol"), want{}},          // a configmap's name as a secret
		{"node-a", wire.Resource{Type: wire.TypeNode, Name: "node-a"}, want{}}, // not a type the controller serves
	} {
		t.Run(tc.node+" "+tc.key.String(), func(t *testing.T) {
			o, ok := e.c.Lookup(tc.node, tc.key)
			if ok != tc.want.ok {
				t.Fatalf("Lookup ok = %v, want %v", ok, tc.want.ok)
			}
			if !ok {
				return
			}
			if o.Resource != tc.key || o.Kind != tc.want.kind || o.APIVersion != "v1" || o.ResourceVersion != tc.want.rv || o.UID != tc.want.uid {
				t.Errorf("Lookup = %+v, want key %v kind %s v1 rv %s uid %s", o, tc.key, tc.want.kind, tc.want.rv, tc.want.uid)
			}
			var content struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(o.Content, &content); err != nil {
				t.Fatalf("Content is not JSON: %v", err)
			}
			if content.APIVersion != "v1" || content.Kind != tc.want.kind {
				t.Errorf("Content apiVersion %q kind %q, want v1 %s", content.APIVersion, content.Kind, tc.want.kind)
			}
			if m := content.Metadata; m.Name != tc.key.Name || m.Namespace != tc.key.Namespace || m.ResourceVersion != tc.want.rv || string(m.UID) != tc.want.uid {
				t.Errorf("Content metadata = %s/%s rv %s uid %s, want it to match the key and object", m.Namespace, m.Name, m.ResourceVersion, m.UID)
			}
			if !strings.Contains(string(o.Content), tc.want.dataSubstr) {
				t.Errorf("Content %s does not contain %s", o.Content, tc.want.dataSubstr)
			}
		})
	}
	// The type is set on a copy: the shared cache is not written.
	cached, _, _ := e.c.cms.GetIndexer().GetByKey("default/cm-vol")
	if k := cached.(*corev1.ConfigMap).Kind; k != "" {
		t.Errorf("cached configmap has kind %q: Lookup wrote to the informer cache", k)
	}
}

func TestEnqueueOnChanges(t *testing.T) {
	e := start(t, fixture()...)
	ctx := context.Background()
	core := e.client.CoreV1()
	// A configmap used on two nodes changes: both are told, once each.
	if _, err := core.ConfigMaps("default").Update(ctx, configMap("default", "cm-vol", "31"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "configmap update", "node-a default/configmap/cm-vol", "node-b default/configmap/cm-vol")
	if o, ok := e.c.Lookup("node-b", key("default", wire.TypeConfigMap, "cm-vol")); !ok || o.ResourceVersion != "31" {
		t.Errorf("after the update Lookup = %v rv %q, want rv 31", ok, o.ResourceVersion)
	}

	// An unused configmap changes: nobody is told. (The next change, on the
	// same informer, proves the first was processed.)
	if _, err := core.ConfigMaps("default").Update(ctx, configMap("default", "unused", "22"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.ConfigMaps("default").Update(ctx, configMap("default", "cm-env", "32"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "unused then used configmap update", "node-a default/configmap/cm-env")

	// A configmap a pod was waiting for appears.
	if _, err := core.ConfigMaps("other").Create(ctx, configMap("other", "missing", "50"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "configmap create", "node-a other/configmap/missing")
	if _, ok := e.c.Lookup("node-a", key("other", wire.TypeConfigMap, "missing")); !ok {
		t.Error("created configmap not found by Lookup")
	}

	// A secret is deleted.
	if err := core.Secrets("default").Delete(ctx, "sec-vol", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "secret delete", "node-a default/secret/sec-vol")
	if _, ok := e.c.Lookup("node-a", key("default", wire.TypeSecret, "sec-vol")); ok {
		t.Error("deleted secret still found by Lookup")
	}

	// A pod moves from node-b to node-c: both nodes hear about the pod and
	// what it uses (node-b to delete, node-c to add).
	if _, err := core.Pods("default").Update(ctx, pod("default", "p2", "node-c", "14", corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("cm-vol")}}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "pod move",
		"node-b default/pod/p2", "node-b default/configmap/cm-vol",
		"node-c default/pod/p2", "node-c default/configmap/cm-vol")
	if got := e.c.Desired("node-b"); len(got) != 0 {
		t.Errorf("Desired(node-b) after the move = %v, want nothing", got)
	}
	if _, ok := e.c.Lookup("node-b", key("default", wire.TypeConfigMap, "cm-vol")); ok {
		t.Error("node-b still gets cm-vol after its only user moved away")
	}
	if _, ok := e.c.Lookup("node-c", key("default", wire.TypeConfigMap, "cm-vol")); !ok {
		t.Error("node-c does not get cm-vol after the move")
	}

	// A pod stops using a configmap: the old reference is enqueued too, so
	// that delivery can delete it at the edge.
	if _, err := core.Pods("other").Update(ctx, pod("other", "p3", "node-a", "15", corev1.PodSpec{}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "reference dropped", "node-a other/pod/p3", "node-a other/configmap/missing", "node-a other/pod/p3")
	if _, ok := e.c.Lookup("node-a", key("other", wire.TypeConfigMap, "missing")); ok {
		t.Error("configmap still delivered after its last user dropped it")
	}

	// A pod is deleted: its node hears about the pod and everything it used.
	if err := core.Pods("default").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "pod delete",
		"node-a default/pod/p1",
		"node-a default/configmap/cm-vol", "node-a default/configmap/cm-proj", "node-a default/configmap/cm-env", "node-a default/configmap/cm-envfrom",
		"node-a default/secret/sec-vol", "node-a default/secret/sec-proj", "node-a default/secret/sec-env", "node-a default/secret/sec-envfrom", "node-a default/secret/pull")
	if _, ok := e.c.Lookup("node-a", key("default", wire.TypePod, "p1")); ok {
		t.Error("deleted pod still found by Lookup")
	}
	if diff := cmp.Diff([]string{"other/pod/p3"}, keyStrings(e.c.Desired("node-a"))); diff != "" {
		t.Errorf("Desired(node-a) after the delete (-want +got):\n%s", diff)
	}

	// Now the configmap used only by p1 changes: nobody is told; then one
	// used on node-c does.
	if _, err := core.ConfigMaps("default").Update(ctx, configMap("default", "cm-proj", "33"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.ConfigMaps("default").Update(ctx, configMap("default", "cm-vol", "34"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.enq.expect(t, "configmaps after the delete", "node-c default/configmap/cm-vol")
}

// Deletes observed only after a relist arrive as DeletedFinalStateUnknown.
func TestTombstones(t *testing.T) {
	e := start(t)
	p := pod("ns", "p", "node-a", "1", corev1.PodSpec{Volumes: []corev1.Volume{cmVolume("cm")}})
	e.c.podChanged(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: p}, nil)
	e.enq.expect(t, "pod tombstone", "node-a ns/pod/p", "node-a ns/configmap/cm")

	// With the pod in the cache, a configmap tombstone reaches its node.
	if err := e.c.pods.GetIndexer().Add(p); err != nil {
		t.Fatal(err)
	}
	e.c.refChanged(cache.DeletedFinalStateUnknown{Key: "ns/cm", Obj: configMap("ns", "cm", "1")}, wire.TypeConfigMap, byConfigMap)
	e.enq.expect(t, "configmap tombstone", "node-a ns/configmap/cm")
	e.c.refChanged("not an object", wire.TypeConfigMap, byConfigMap)
	e.c.podChanged("not a pod", nil)
	if got := e.enq.take(); len(got) != 0 {
		t.Errorf("garbage enqueued %v", got)
	}
}
