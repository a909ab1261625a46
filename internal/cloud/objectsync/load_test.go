package objectsync

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

var created = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// stored is recordObject as the apiserver returns it: with a creation time.
func stored(node string, key wire.Resource, a delivery.Acked, age time.Duration) *unstructured.Unstructured {
	u := recordObject(node, key, a)
	u.SetCreationTimestamp(metav1.NewTime(created.Add(-age)))
	return u
}

func TestRecordRoundTrip(t *testing.T) {
	for _, key := range []wire.Resource{keyCM, keyPod, keyPV,
		{Namespace: "kube-system", Type: wire.TypeServiceAccountToken, Name: "default.token"}} {
		a := delivery.Acked{UID: "0b4a1d7e-2c1f-4d5e-9a3b-77e0c4f1a2b3", APIVersion: "v1", Kind: "Thing", ResourceVersion: "123"}
		node, gotKey, gotA, err := decodeRecord(recordObject("edge.zone-1", key, a))
		if err != nil {
			t.Fatalf("decode %v: %v", key, err)
		}
		if node != "edge.zone-1" || gotKey != key || gotA != a {
			t.Errorf("round trip of %v: got %q %v %+v", key, node, gotKey, gotA)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := func() *unstructured.Unstructured { return recordObject("edge-1", keyCM, acked("u1", "5")) }
	tests := []struct {
		name   string
		mutate func(u *unstructured.Unstructured)
		want   string
	}{
		{"no node label", func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{LabelType: "configmap"}) },
			"ObjectSync default/edge-1.u1: label reliablesyncs.kubeedge.io/node missing"},
		{"no type label", func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{LabelNode: "edge-1"}) },
			"label reliablesyncs.kubeedge.io/type missing"},
		{"bad node label", func(u *unstructured.Unstructured) {
			u.SetLabels(map[string]string{LabelNode: "Edge", LabelType: "configmap"})
		}, `label reliablesyncs.kubeedge.io/node: wire: bad resource: node name "Edge"`},
		{"unknown type", func(u *unstructured.Unstructured) {
			u.SetLabels(map[string]string{LabelNode: "edge-1", LabelType: "gizmo"})
		}, `unknown resource type "gizmo"`},
		{"name of another node", func(u *unstructured.Unstructured) { u.SetName("edge-2.u1") },
			`name is not {node}.{objectUID} for node "edge-1"`},
		{"name without uid", func(u *unstructured.Unstructured) { u.SetName("edge-1.") },
			`name is not {node}.{objectUID}`},
		{"empty objectName", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "", "spec", "objectName")
		}, "spec.objectName is empty"},
		{"objectName not a string", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, int64(3), "spec", "objectName")
		}, "spec.objectName: .spec.objectName accessor error"},
		{"no resourceVersion", func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, "status") },
			"status.objectResourceVersion is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := good()
			tt.mutate(u)
			_, _, _, err := decodeRecord(u)
			if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeRecord = %v, want ErrInvalidRecord containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadAll(t *testing.T) {
	noLabels := recordObject("edge-1", keyPod, acked("u-nolabel", "1"))
	noLabels.SetLabels(nil)
	dyn := newFakeDynamic(
		stored("edge-1", keyCM, acked("u-cm", "11"), time.Hour),
		stored("edge-1", keyPV, acked("u-pv", "12"), time.Hour),
		stored("edge-2", keyCM, acked("u-cm", "13"), time.Hour),
		// Two incarnations of one key: the newer record wins, the older goes.
		stored("edge-2", keyPod, acked("u-pod-old", "1"), 2*time.Hour),
		stored("edge-2", keyPod, acked("u-pod-new", "2"), time.Minute),
		noLabels,
	)
	s, fw, logs := newTestStore(t, Config{}, dyn)
	got, err := s.LoadAll(context.Background())
	if err != nil {
		t.Fatalf("LoadAll: %v", err)
	}
	want := map[string]map[wire.Resource]delivery.Acked{
		"edge-1": {keyCM: acked("u-cm", "11"), keyPV: acked("u-pv", "12")},
		"edge-2": {keyCM: acked("u-cm", "13"), keyPod: acked("u-pod-new", "2")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadAll (-want +got):\n%s", diff)
	}
	l := logs.String()
	for _, w := range []string{
		"skipping acknowledgement record",
		"ObjectSync apps/edge-1.u-nolabel: label reliablesyncs.kubeedge.io/node missing",
		"two acknowledgement records for one key",
		"deleting=\"ObjectSync apps/edge-2.u-pod-old\"",
	} {
		if !strings.Contains(l, w) {
			t.Errorf("log lacks %q:\n%s", w, l)
		}
	}
	run(t, s)
	flush(t, s)
	if diff := cmp.Diff([]string{"delete apps/edge-2.u-pod-old"}, fw.callStrings()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// pagedDynamic serves List of objectsyncs from list, which sees the
// ListOptions (the fake dynamic client drops Limit and Continue).
type pagedDynamic struct {
	dynamic.Interface
	list func(opts metav1.ListOptions) (*unstructured.UnstructuredList, error)
}

func (d pagedDynamic) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	r := d.Interface.Resource(gvr)
	if gvr != ObjectSyncResource {
		return r
	}
	return pagedResource{NamespaceableResourceInterface: r, list: d.list}
}

type pagedResource struct {
	dynamic.NamespaceableResourceInterface
	list func(opts metav1.ListOptions) (*unstructured.UnstructuredList, error)
}

func (r pagedResource) List(_ context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	return r.list(opts)
}

func TestLoadAllPaginates(t *testing.T) {
	pages := map[string]struct {
		items []*unstructured.Unstructured
		next  string
	}{
		"":   {[]*unstructured.Unstructured{stored("edge-1", keyCM, acked("u1", "1"), 0)}, "p2"},
		"p2": {[]*unstructured.Unstructured{stored("edge-1", keyPod, acked("u2", "2"), 0)}, ""},
	}
	var continues []string
	expired := false
	dyn := pagedDynamic{Interface: newFakeDynamic(), list: func(opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
		if opts.Limit != 500 {
			t.Errorf("list with Limit %d, want 500", opts.Limit)
		}
		continues = append(continues, opts.Continue)
		if opts.Continue == "p2" && !expired {
			expired = true
			return nil, apierrors.NewResourceExpired("continue token too old")
		}
		p, ok := pages[opts.Continue]
		if !ok {
			t.Fatalf("list with unknown continue token %q", opts.Continue)
		}
		l := &unstructured.UnstructuredList{}
		l.SetContinue(p.next)
		for _, u := range p.items {
			l.Items = append(l.Items, *u)
		}
		return l, nil
	}}
	s, err := New(Config{}, Deps{Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadAll(context.Background())
	if err != nil {
		t.Fatalf("LoadAll: %v", err)
	}
	want := map[string]map[wire.Resource]delivery.Acked{"edge-1": {keyCM: acked("u1", "1"), keyPod: acked("u2", "2")}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadAll (-want +got):\n%s", diff)
	}
	// The expired token restarts the listing from the start.
	if diff := cmp.Diff([]string{"", "p2", "", "p2"}, continues); diff != "" {
		t.Errorf("continue tokens (-want +got):\n%s", diff)
	}
}

func TestLoadAllStopsOnRepeatedContinueToken(t *testing.T) {
	calls := 0
	dyn := pagedDynamic{Interface: newFakeDynamic(), list: func(opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
		calls++
		l := &unstructured.UnstructuredList{}
		l.SetContinue("same")
		return l, nil
	}}
	s, err := New(Config{}, Deps{Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.LoadAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), `returned continue token "same" twice`) || calls != 2 {
		t.Errorf("LoadAll = %v after %d lists, want an error about the repeated token after 2", err, calls)
	}
}

func TestLoadAllWithoutCRDs(t *testing.T) {
	dyn := newFakeDynamic()
	dyn.PrependReactor("list", "clusterobjectsyncs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(ClusterObjectSyncResource.GroupResource(), "")
	})
	s, _, _ := newTestStore(t, Config{}, dyn)
	_, err := s.LoadAll(context.Background())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "list clusterobjectsyncs.reliablesyncs.kubeedge.io (are the CRDs installed?)") {
		t.Errorf("LoadAll = %v, want a NotFound error asking about the CRDs", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, u := range []*unstructured.Unstructured{
		recordObject("edge-1", keyCM, acked("u1", "5")),
		recordObject("edge.zone", keyPV, acked("0b4a1d7e-2c1f", "77")),
	} {
		b, err := json.Marshal(u.Object)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"metadata":{"name":"a.b","labels":{"reliablesyncs.kubeedge.io/node":"a","reliablesyncs.kubeedge.io/type":"pod"}},"spec":{"objectName":7}}`))
	f.Add([]byte(`{"metadata":{"name":"a.","namespace":"x","labels":{"reliablesyncs.kubeedge.io/node":"a"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			return
		}
		u := &unstructured.Unstructured{Object: obj}
		node, key, a, err := decodeRecord(u)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("error %v does not wrap ErrInvalidRecord", err)
			}
			return
		}
		// What decodes must survive a rewrite unchanged.
		node2, key2, a2, err := decodeRecord(recordObject(node, key, a))
		if err != nil {
			t.Fatalf("re-decode of %q %v %+v: %v", node, key, a, err)
		}
		if node2 != node || key2 != key || a2 != a {
			t.Fatalf("round trip changed %q %v %+v into %q %v %+v", node, key, a, node2, key2, a2)
		}
	})
}
