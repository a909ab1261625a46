package objectsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubeedge-go/kubeedge/internal/cloud/delivery"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMerge(t *testing.T) {
	a := func(uid string) *delivery.Acked { x := acked(uid, "rv-"+uid); return &x }
	tests := []struct {
		name         string
		older, newer *op
		want         *op
	}{
		{"nothing older", nil, &op{apply: a("u1")}, &op{apply: a("u1")}},
		{"nothing newer", &op{apply: a("u1")}, nil, &op{apply: a("u1")}},
		{"newer version of one object", &op{apply: a("u1")}, &op{apply: a("u1")}, &op{apply: a("u1")}},
		{"recreated object deletes the old record", &op{apply: a("u1")}, recordOp(*a("u2"), *a("u1")),
			&op{apply: a("u2"), deletes: []string{"u1"}}},
		{"recreated without prev still deletes what older wrote", &op{apply: a("u1")}, &op{apply: a("u2")},
			&op{apply: a("u2"), deletes: []string{"u1"}}},
		{"forget cancels an apply", &op{apply: a("u1")}, forgetOp(*a("u1")), &op{deletes: []string{"u1"}}},
		{"forget keeps older deletes", &op{apply: a("u2"), deletes: []string{"u1"}}, forgetOp(*a("u2")),
			&op{deletes: []string{"u1", "u2"}}},
		{"record after forget of the same uid recreates it", forgetOp(*a("u1")), recordOp(*a("u1"), delivery.Acked{}),
			&op{apply: a("u1")}},
		{"deletes are not repeated", &op{deletes: []string{"u1"}}, &op{deletes: []string{"u1"}}, &op{deletes: []string{"u1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := merge(tt.older, tt.newer)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(op{})); diff != "" {
				t.Errorf("merge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordsBeforeRunCoalesce(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{Workers: 2}, nil)
	for i := 1; i <= 5; i++ {
		s.Record("edge-1", keyCM, acked("u-cm", fmt.Sprint(i)), acked("u-cm", fmt.Sprint(i-1)))
	}
	s.Record("edge-1", keyPV, acked("u-pv", "7"), delivery.Acked{})
	s.Record("edge-1", keyPV, acked("u-pv", "8"), acked("u-pv", "7"))
	if got := s.Pending(); got != 2 {
		t.Errorf("Pending before Run = %d, want 2 (one per key)", got)
	}
	run(t, s)
	flush(t, s)
	want := map[string]string{"default/edge-1.u-cm": "5", "/edge-1.u-pv": "8"}
	if diff := cmp.Diff(want, fw.recordRVs()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if calls := fw.callStrings(); len(calls) != 2 {
		t.Errorf("calls = %q, want one apply per key", calls)
	}
	if got := s.Pending(); got != 0 {
		t.Errorf("Pending after Flush = %d, want 0", got)
	}
}

func TestRecordedObjectIsKubeEdgeShaped(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{}, nil)
	run(t, s)
	s.Record("edge-1", keyPod, delivery.Acked{UID: "9f1c", APIVersion: "v1", Kind: "Pod", ResourceVersion: "42"}, delivery.Acked{})
	flush(t, s)
	fw.mu.Lock()
	got := fw.records["apps/edge-1.9f1c"]
	fw.mu.Unlock()
	if got == nil {
		t.Fatalf("no record apps/edge-1.9f1c; have %v", fw.recordRVs())
	}
	want := map[string]any{
		"apiVersion": "reliablesyncs.kubeedge.io/v1alpha1",
		"kind":       "ObjectSync",
		"metadata": map[string]any{
			"name": "edge-1.9f1c", "namespace": "apps",
			"labels": map[string]any{"reliablesyncs.kubeedge.io/node": "edge-1", "reliablesyncs.kubeedge.io/type": "pod"},
		},
		"spec":   map[string]any{"objectAPIVersion": "v1", "objectKind": "Pod", "objectName": "web-0"},
		"status": map[string]any{"objectResourceVersion": "42"},
	}
	if diff := cmp.Diff(want, got.Object); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
}

func TestRecordNewUIDDeletesOldRecordFirst(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{}, nil)
	run(t, s)
	s.Record("edge-1", keyCM, acked("u1", "10"), delivery.Acked{})
	flush(t, s)
	s.Record("edge-1", keyCM, acked("u2", "20"), acked("u1", "10"))
	flush(t, s)
	wantCalls := []string{
		"apply default/edge-1.u1 rv=10",
		"delete default/edge-1.u1",
		"apply default/edge-1.u2 rv=20",
	}
	if diff := cmp.Diff(wantCalls, fw.callStrings()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"default/edge-1.u2": "20"}, fw.recordRVs()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestForgetBeforeWriteOnlyDeletes(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{}, nil)
	s.Record("edge-1", keyCM, acked("u1", "10"), delivery.Acked{})
	s.Forget("edge-1", keyCM, acked("u1", "10"))
	s.Forget("edge-2", keyCM, delivery.Acked{}) // never recorded: nothing to do
	run(t, s)
	flush(t, s)
	if diff := cmp.Diff([]string{"delete default/edge-1.u1"}, fw.callStrings()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestFailedWriteRetriesWithNewestState(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{Workers: 1}, nil)
	inFirst := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	fails := 0
	fw.hook = func(c call) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(inFirst)
			<-release
			return errUnavailable
		}
		if c.verb == "delete" && fails < 2 {
			fails++ // only this goroutine (one worker) touches fails
			return errUnavailable
		}
		return nil
	}
	run(t, s)
	s.Record("edge-1", keyCM, acked("u1", "1"), delivery.Acked{})
	<-inFirst
	// While the first write hangs, the object is recreated and acked again.
	s.Record("edge-1", keyCM, acked("u2", "2"), acked("u1", "1"))
	s.Record("edge-1", keyCM, acked("u2", "3"), acked("u2", "2"))
	close(release)
	flush(t, s)
	wantCalls := []string{
		"apply! default/edge-1.u1 rv=1",
		"delete! default/edge-1.u1",
		"delete! default/edge-1.u1",
		"delete default/edge-1.u1",
		"apply default/edge-1.u2 rv=3",
	}
	if diff := cmp.Diff(wantCalls, fw.callStrings()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"default/edge-1.u2": "3"}, fw.recordRVs()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestRetryRepeatsOnlyWhatFailed(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{Workers: 1}, nil)
	failedApply := false
	fw.hook = func(c call) error {
		if c.verb == "apply" && !failedApply {
			failedApply = true
			return errUnavailable
		}
		return nil
	}
	s.Record("edge-1", keyCM, acked("u2", "5"), acked("u1", "4"))
	run(t, s)
	flush(t, s)
	wantCalls := []string{
		"delete default/edge-1.u1",
		"apply! default/edge-1.u2 rv=5",
		"apply default/edge-1.u2 rv=5",
	}
	if diff := cmp.Diff(wantCalls, fw.callStrings()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestPermanentErrorDropsWrite(t *testing.T) {
	gr := schema.GroupResource{Group: Group, Resource: "objectsyncs"}
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: Group, Kind: "ObjectSync"}, "x", field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), "x", "bad")}), true},
		{"bad request", apierrors.NewBadRequest("nope"), true},
		{"namespace missing", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "gone"), true},
		{"namespace terminating", &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}},
		}}, true},
		{"CRD not installed yet", apierrors.NewNotFound(gr, ""), false},
		{"server timeout", apierrors.NewServerTimeout(gr, "apply", 1), false},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("busy")), false},
		{"network", errUnavailable, false},
		{"wrapped invalid", fmt.Errorf("apply: %w", apierrors.NewBadRequest("nope")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permanent(tt.err); got != tt.permanent {
				t.Errorf("permanent(%v) = %v, want %v", tt.err, got, tt.permanent)
			}
		})
	}

	s, fw, logs := newTestStore(t, Config{}, nil)
	fw.hook = func(c call) error {
		if c.name == "edge-1.u-bad" {
			return tests[0].err
		}
		return nil
	}
	run(t, s)
	s.Record("edge-1", keyCM, acked("u-bad", "1"), delivery.Acked{})
	s.Record("edge-1", keyPod, acked("u-ok", "1"), delivery.Acked{})
	flush(t, s)
	if diff := cmp.Diff(map[string]string{"apps/edge-1.u-ok": "1"}, fw.recordRVs()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if l := logs.String(); !strings.Contains(l, "record dropped") || !strings.Contains(l, "ObjectSync default/edge-1.u-bad") {
		t.Errorf("log does not report the dropped record by name:\n%s", l)
	}
}

func TestRecordRejectsWhatCannotBeWritten(t *testing.T) {
	long := strings.Repeat("n", 64)
	tests := []struct {
		name    string
		node    string
		key     wire.Resource
		a       delivery.Acked
		wantLog string
	}{
		{"empty uid", "edge-1", keyCM, acked("", "1"), "empty object UID"},
		{"empty resourceVersion", "edge-1", keyCM, acked("u1", ""), "empty resourceVersion"},
		{"node name too long for a label", long, keyCM, acked("u1", "1"), "cannot be the value of label reliablesyncs.kubeedge.io/node"},
		{"bad node name", "Edge_1", keyCM, acked("u1", "1"), `node name \"Edge_1\"`},
		{"unknown type", "edge-1", wire.Resource{Namespace: "default", Type: "gadget", Name: "x"}, acked("u1", "1"), `unknown resource type \"gadget\"`},
		{"no object name", "edge-1", wire.Resource{Namespace: "default", Type: wire.TypePodList}, acked("u1", "1"), "has no object name"},
		{"uid makes the name invalid", "edge-1", keyCM, acked("U_1", "1"), `record name \"edge-1.U_1\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, logs := newTestStore(t, Config{}, nil)
			s.Record(tt.node, tt.key, tt.a, delivery.Acked{})
			if got := s.Pending(); got != 0 {
				t.Errorf("Pending = %d, want 0 (nothing queued)", got)
			}
			l := logs.String()
			if !strings.Contains(l, "acknowledgement not recorded") || !strings.Contains(l, tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, l)
			}
		})
	}
	s, _, logs := newTestStore(t, Config{}, nil)
	s.Forget("edge-1", keyCM, acked("U_1", "1"))
	if s.Pending() != 0 || !strings.Contains(logs.String(), "deletion not recorded") {
		t.Errorf("Forget with an impossible record name: pending %d, log:\n%s", s.Pending(), logs.String())
	}
}

func TestFlushReportsPendingOnTimeout(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{}, nil)
	fw.hook = func(call) error { return errUnavailable }
	run(t, s)
	s.Record("edge-1", keyCM, acked("u1", "1"), delivery.Acked{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := s.Flush(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 keys still pending") {
		t.Errorf("Flush = %v, want a deadline error counting 1 pending key", err)
	}
}

func TestRunTwice(t *testing.T) {
	s, _, _ := newTestStore(t, Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Errorf("second Run = %v, want ErrAlreadyRun", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.Dynamic is required") {
		t.Errorf("New without Dynamic = %v", err)
	}
	if _, err := New(Config{Workers: -1}, Deps{Dynamic: newFakeDynamic()}); err == nil || !strings.Contains(err.Error(), "Workers -1 is negative") {
		t.Errorf("New with Workers -1 = %v", err)
	}
}

func TestShutdownWithWriteInFlight(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan struct{})
	fw.hook = func(call) error {
		close(entered)
		<-ctx.Done() // a write that only ends when Run's context does
		return ctx.Err()
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Record("edge-1", keyCM, acked("u1", "1"), delivery.Acked{})
	<-entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := s.Pending(); got != 1 {
		t.Errorf("Pending after shutdown = %d, want the unwritten key kept (1)", got)
	}
}

// TestConcurrentAcks has many goroutines ack many keys while workers write;
// in the end each key's record holds its last version, and for objects that
// were recreated only the newest incarnation has a record.
func TestConcurrentAcks(t *testing.T) {
	s, fw, _ := newTestStore(t, Config{Workers: 4}, nil)
	var calls sync.Map
	fw.hook = func(c call) error {
		// Every third attempt of a record fails once, to mix retries in.
		n, _ := calls.LoadOrStore(c.String(), new(int))
		p := n.(*int)
		if len(c.name)%3 == 0 && *p == 0 {
			*p = 1
			return errUnavailable
		}
		return nil
	}
	run(t, s)
	const nodes, keys, versions = 4, 50, 6
	want := map[string]string{}
	var wg sync.WaitGroup
	for n := range nodes {
		node := fmt.Sprintf("edge-%d", n)
		for k := range keys {
			key := wire.Resource{Namespace: "default", Type: wire.TypeSecret, Name: fmt.Sprintf("s-%d", k)}
			lastUID := fmt.Sprintf("k%d-u%d", k, (versions-1)/3)
			want["default/"+node+"."+lastUID] = fmt.Sprint(versions - 1)
			wg.Go(func() {
				var prev delivery.Acked
				for v := range versions {
					a := acked(fmt.Sprintf("k%d-u%d", k, v/3), fmt.Sprint(v)) // recreated every 3 versions
					s.Record(node, key, a, prev)
					prev = a
				}
			})
		}
	}
	wg.Wait()
	flush(t, s)
	if diff := cmp.Diff(want, fw.recordRVs()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}
