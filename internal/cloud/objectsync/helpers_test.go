package objectsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// call is one write a fakeWriter saw: "apply ns/name rv" or "delete ns/name".
type call struct {
	verb, ns, name, rv string
}

func (c call) String() string {
	if strings.HasPrefix(c.verb, "apply") {
		return fmt.Sprintf("%s %s/%s rv=%s", c.verb, c.ns, c.name, c.rv)
	}
	return fmt.Sprintf("%s %s/%s", c.verb, c.ns, c.name)
}

// fakeWriter keeps records in a map and logs calls. hook, if set, runs
// before each call and may fail it.
type fakeWriter struct {
	hook func(c call) error

	mu      sync.Mutex
	calls   []call                                // guarded by mu
	records map[string]*unstructured.Unstructured // guarded by mu; by ns/name
}

func newFakeWriter() *fakeWriter {
	return &fakeWriter{records: map[string]*unstructured.Unstructured{}}
}

func (f *fakeWriter) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	rv, _, _ := unstructured.NestedString(obj.Object, "status", "objectResourceVersion")
	c := call{verb: "apply", ns: obj.GetNamespace(), name: obj.GetName(), rv: rv}
	if f.hook != nil {
		if err := f.hook(c); err != nil {
			f.log(c)
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	f.records[c.ns+"/"+c.name] = obj.DeepCopy()
	return nil
}

func (f *fakeWriter) delete(ctx context.Context, namespace, name string) error {
	c := call{verb: "delete", ns: namespace, name: name}
	if f.hook != nil {
		if err := f.hook(c); err != nil {
			f.log(c)
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	delete(f.records, namespace+"/"+name)
	return nil
}

// log records a failed call, marked with a "!" verb suffix.
func (f *fakeWriter) log(c call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.verb += "!"
	f.calls = append(f.calls, c)
}

func (f *fakeWriter) callStrings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.String())
	}
	return out
}

// recordRVs maps ns/name of every stored record to its resourceVersion.
func (f *fakeWriter) recordRVs() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, u := range f.records {
		rv, _, _ := unstructured.NestedString(u.Object, "status", "objectResourceVersion")
		out[k] = rv
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		ObjectSyncResource:        "ObjectSyncList",
		ClusterObjectSyncResource: "ClusterObjectSyncList",
		crdResource:               "CustomResourceDefinitionList",
	}, objs...)
}

// newTestStore returns a Store writing to a fakeWriter, and its log.
func newTestStore(t *testing.T, cfg Config, dyn *dynamicfake.FakeDynamicClient) (*Store, *fakeWriter, *syncBuffer) {
	t.Helper()
	if dyn == nil {
		dyn = newFakeDynamic()
	}
	logs := &syncBuffer{}
	s, err := New(cfg, Deps{Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fw := newFakeWriter()
	s.w = fw
	return s, fw, logs
}

// run starts s.Run and stops it when the test ends, checking its result.
func run(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
}

func flush(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func acked(uid, rv string) delivery.Acked {
	return delivery.Acked{UID: uid, APIVersion: "v1", Kind: "ConfigMap", ResourceVersion: rv}
}

var (
	keyCM  = wire.Resource{Namespace: "default", Type: wire.TypeConfigMap, Name: "cfg"}
	keyPod = wire.Resource{Namespace: "apps", Type: wire.TypePod, Name: "web-0"}
	keyPV  = wire.Resource{Type: wire.TypePersistentVolume, Name: "pv-1"}
)

var errUnavailable = errors.New("apiserver unavailable")
