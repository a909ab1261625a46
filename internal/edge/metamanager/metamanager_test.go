package metamanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingStore wraps the in-memory store: it counts Apply calls, records
// each batch, can be made to fail, and counts Applies that have returned so
// that the sender can tell whether an ack was sent before or after.
type countingStore struct {
	*store.Memory

	mu       sync.Mutex
	calls    int              // guarded by mu
	returned int              // guarded by mu; Applies that have returned successfully
	batches  [][]store.Change // guarded by mu
	fail     error            // guarded by mu; returned by Apply when set
}

func newCountingStore() *countingStore { return &countingStore{Memory: store.NewMemory()} }

func (s *countingStore) Apply(ctx context.Context, changes []store.Change) error {
	s.mu.Lock()
	s.calls++
	s.batches = append(s.batches, append([]store.Change(nil), changes...))
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	if err := s.Memory.Apply(ctx, changes); err != nil {
		return err
	}
	s.mu.Lock()
	s.returned++
	s.mu.Unlock()
	return nil
}

func (s *countingStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *countingStore) stats() (calls, returned int, batches [][]store.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.returned, append([][]store.Change(nil), s.batches...)
}

// sent is one reply with the number of successful Applies at the moment it was sent.
type sent struct {
	m             wire.Message
	appliedBefore int
}

type fakeSender struct {
	st *countingStore

	mu   sync.Mutex
	msgs []sent // guarded by mu
}

func (f *fakeSender) SendNow(_ context.Context, m wire.Message) error {
	_, returned, _ := f.st.stats()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, sent{m: m, appliedBefore: returned})
	return nil
}

func (f *fakeSender) sent() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.msgs...)
}

// waitSent polls until at least n replies were sent.
func (f *fakeSender) waitSent(t *testing.T, n int) []sent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := f.sent()
		if len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d replies; got %d: %+v", n, len(s), s)
		}
		time.Sleep(time.Millisecond)
	}
}

type harness struct {
	mm     *MetaManager
	st     *countingStore
	sender *fakeSender

	mu      sync.Mutex
	changed []store.Change // guarded by mu
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{st: newCountingStore()}
	h.sender = &fakeSender{st: h.st}
	mm, err := New(cfg, Deps{
		Store: h.st, Sender: h.sender,
		Clock: clocktesting.NewFakePassiveClock(time.Unix(1700000000, 0)),
		Changed: func(c store.Change) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.changed = append(h.changed, c)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.mm = mm
	return h
}

// queue hands msgs to the MetaManager before it runs, so that Run finds them
// all waiting and takes them as one batch (up to BatchSize).
func (h *harness) queue(msgs ...wire.Message) {
	for _, m := range msgs {
		h.mm.Handle(context.Background(), m)
	}
}

// run starts Run and returns a function that stops it and waits for it.
func (h *harness) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.mm.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func cmMsg(id string, op wire.Operation, ns, name, rv string) wire.Message {
	content := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":%q,"resourceVersion":%q},"data":{"k":"v"}}`, name, ns, rv)
	m := wire.Message{
		Header:    wire.Header{ID: id},
		Source:    wire.SourceEdgeController,
		Group:     wire.GroupResource,
		Operation: op,
		Resource:  wire.Resource{Namespace: ns, Type: wire.TypeConfigMap, Name: name},
	}
	if op != wire.OpDelete {
		m.Content = []byte(content)
	}
	return m
}

func TestNewRequiresDeps(t *testing.T) {
	st := store.NewMemory()
	clk := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
	for name, deps := range map[string]Deps{
		"no store":  {Sender: &fakeSender{}, Clock: clk},
		"no sender": {Store: st, Clock: clk},
		"no clock":  {Store: st, Sender: &fakeSender{}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(Config{}, deps)
			if err == nil || !strings.Contains(err.Error(), "Store, Sender and Clock are required") {
				t.Fatalf("New = %v, want an error naming the required deps", err)
			}
		})
	}
}

func TestBatchIsOneApplyAndAcksFollowIt(t *testing.T) {
	const n = 20
	h := newHarness(t, Config{BatchSize: 64, QueueSize: 64})
	var msgs []wire.Message
	for i := range n {
		msgs = append(msgs, cmMsg(fmt.Sprintf("id-%d", i), wire.OpInsert, "default", fmt.Sprintf("cm-%d", i), fmt.Sprint(100+i)))
	}
	h.queue(msgs...)
	stop := h.run(t)
	replies := h.sender.waitSent(t, n)
	stop()

	calls, _, batches := h.st.stats()
	if calls != 1 {
		t.Fatalf("Apply called %d times for %d queued messages, want 1", calls, n)
	}
	if len(batches[0]) != n {
		t.Fatalf("the batch holds %d changes, want %d", len(batches[0]), n)
	}
	if len(replies) != n {
		t.Fatalf("got %d replies, want %d", len(replies), n)
	}
	for i, r := range replies {
		if r.m.Operation != wire.OpResponse || r.m.Header.ParentID != msgs[i].Header.ID {
			t.Errorf("reply %d = %s parent %q, want a response to %q (in order)", i, r.m.Operation, r.m.Header.ParentID, msgs[i].Header.ID)
		}
		if s, _ := r.m.ContentString(); s != wire.ContentOK {
			t.Errorf("reply %d content = %q, want %q", i, s, wire.ContentOK)
		}
		if r.appliedBefore != 1 {
			t.Errorf("ack of %q was sent with %d Applies returned, want it sent after the Apply returned", r.m.Header.ParentID, r.appliedBefore)
		}
		if r.m.Source != wire.SourceMetaManager || r.m.Resource != msgs[i].Resource {
			t.Errorf("reply %d source %q resource %v, want %q %v", i, r.m.Source, r.m.Resource, wire.SourceMetaManager, msgs[i].Resource)
		}
	}
	for i := range n {
		o, err := h.st.Get(context.Background(), "configmap", "default", fmt.Sprintf("cm-%d", i))
		if err != nil {
			t.Fatalf("object %d not stored: %v", i, err)
		}
		if o.ResourceVersion != fmt.Sprint(100+i) || string(o.Value) != string(msgs[i].Content) {
			t.Errorf("object %d = rv %q value %s, want rv %d and the message content", i, o.ResourceVersion, o.Value, 100+i)
		}
	}
	want := Stats{Received: n, Persisted: n, Rejected: 0, Batches: 1}
	if diff := cmp.Diff(want, h.mm.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.changed) != n || h.changed[0].Object.Name != "cm-0" || h.changed[n-1].Object.Name != fmt.Sprintf("cm-%d", n-1) {
		t.Errorf("Changed saw %d changes, want %d in message order", len(h.changed), n)
	}
}

func TestBatchSizeSplitsBatches(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 4, QueueSize: 16})
	for i := range 10 {
		h.queue(cmMsg(fmt.Sprintf("id-%d", i), wire.OpInsert, "default", fmt.Sprintf("cm-%d", i), "1"))
	}
	stop := h.run(t)
	h.sender.waitSent(t, 10)
	stop()
	_, _, batches := h.st.stats()
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	if diff := cmp.Diff([]int{4, 4, 2}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	if got := h.mm.Stats(); got.Batches != 3 || got.Persisted != 10 {
		t.Errorf("Stats = %+v, want 3 batches and 10 persisted", got)
	}
}

func TestFailingApplySendsNoAcks(t *testing.T) {
	h := newHarness(t, Config{})
	h.st.setFail(errors.New("disk on fire"))
	msgs := []wire.Message{
		cmMsg("a", wire.OpInsert, "default", "a", "1"),
		cmMsg("b", wire.OpInsert, "default", "b", "1"),
	}
	h.queue(msgs...)
	stop := h.run(t)
	// The failed batch is followed by a retransmission that succeeds: its
	// acks are the first replies, proving the failed batch sent none.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if calls, _, _ := h.st.stats(); calls == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Apply was never called")
		}
		time.Sleep(time.Millisecond)
	}
	h.st.setFail(nil)
	retry := []wire.Message{cmMsg("a2", wire.OpInsert, "default", "a", "1")}
	h.mm.Handle(context.Background(), retry[0])
	replies := h.sender.waitSent(t, 1)
	stop()
	if len(replies) != 1 || replies[0].m.Header.ParentID != "a2" {
		t.Fatalf("replies = %+v, want only the ack of the retransmission a2", replies)
	}
	if _, err := h.st.Get(context.Background(), "configmap", "default", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("object of the failed batch: Get = %v, want ErrNotFound", err)
	}
	want := Stats{Received: 3, Persisted: 1, Rejected: 0, Batches: 1}
	if diff := cmp.Diff(want, h.mm.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestInvalidMessagesAreRejectedWithoutBlockingTheBatch(t *testing.T) {
	valid := cmMsg("ok", wire.OpInsert, "default", "good", "7")
	withContent := func(m wire.Message, c string) wire.Message { m.Content = []byte(c); return m }
	tests := []struct {
		name string
		msg  wire.Message
		want string // substring of the error reply
	}{
		{"content is a string", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"), `"hello"`),
			"content of insert default/configmap/x is not a JSON object"},
		{"content is an array", withContent(cmMsg("bad", wire.OpUpdate, "default", "x", "1"), `[{"metadata":{}}]`),
			"content of update default/configmap/x is not a JSON object"},
		{"content is empty", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"), ``),
			"is not a JSON object"},
		{"content is truncated JSON", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"), `{"metadata":{"name":`),
			"content of insert default/configmap/x: unexpected end of JSON input"},
		{"name differs from the route", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"), `{"metadata":{"name":"y","namespace":"default"}}`),
			"content names default/y but the route says default/configmap/x"},
		{"namespace differs from the route", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"), `{"metadata":{"name":"x","namespace":"other"}}`),
			"content names other/x but the route says default/configmap/x"},
		{"unsupported type", wire.Message{Header: wire.Header{ID: "bad"}, Operation: wire.OpUpdate,
			Resource: wire.Resource{Namespace: "default", Type: wire.TypePodStatus, Name: "p"}, Content: []byte(`{"metadata":{"name":"p","namespace":"default"}}`)},
			`resource type "podstatus" is not stored at the edge`},
		{"unsupported operation", withContent(cmMsg("bad", wire.OpPatch, "default", "x", "1"), `{"metadata":{"name":"x","namespace":"default"}}`),
			`operation "patch" is not supported for configmap`},
		{"query operation", cmMsg("bad", wire.OpQuery, "default", "x", "1"),
			`operation "query" is not supported for configmap`},
		{"empty name", wire.Message{Header: wire.Header{ID: "bad"}, Operation: wire.OpInsert,
			Resource: wire.Resource{Namespace: "default", Type: wire.TypeConfigMap}, Content: []byte(`{"metadata":{"namespace":"default"}}`)},
			`resource "default/configmap" names no object`},
		// A resourceVersion the store cannot hold must be rejected alone;
		// passed to Apply it would fail the whole batch, every time the cloud
		// retransmits it.
		{"resourceVersion with a NUL byte", func() wire.Message {
			m := cmMsg("bad", wire.OpInsert, "default", "x", "1")
			m.Header.ResourceVersion = "1\x002"
			return m
		}(), `resourceVersion "1\x002" of default/configmap/x`},
		{"metadata.resourceVersion with a NUL byte", withContent(cmMsg("bad", wire.OpInsert, "default", "x", "1"),
			`{"metadata":{"name":"x","namespace":"default","resourceVersion":"9\u0000"}}`),
			`resourceVersion "9\x00" of default/configmap/x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.queue(tc.msg, valid)
			stop := h.run(t)
			replies := h.sender.waitSent(t, 2)
			stop()
			if len(replies) != 2 {
				t.Fatalf("got %d replies, want 2: %+v", len(replies), replies)
			}
			rej, ack := replies[0].m, replies[1].m
			if rej.Operation != wire.OpError || rej.Header.ParentID != "bad" {
				t.Fatalf("first reply = %s to %q, want an error reply to %q", rej.Operation, rej.Header.ParentID, "bad")
			}
			if txt, ok := rej.ContentString(); !ok || !strings.Contains(txt, tc.want) {
				t.Errorf("error reply says %q, want it to contain %q", txt, tc.want)
			}
			if ack.Operation != wire.OpResponse || ack.Header.ParentID != "ok" {
				t.Errorf("second reply = %s to %q, want the ack of the valid message", ack.Operation, ack.Header.ParentID)
			}
			calls, _, batches := h.st.stats()
			if calls != 1 || len(batches[0]) != 1 || batches[0][0].Object.Name != "good" {
				t.Errorf("Apply calls %d, batches %+v; want one Apply holding only the valid message", calls, batches)
			}
			if _, err := h.st.Get(context.Background(), "configmap", "default", "good"); err != nil {
				t.Errorf("valid object not stored: %v", err)
			}
			want := Stats{Received: 2, Persisted: 1, Rejected: 1, Batches: 1}
			if diff := cmp.Diff(want, h.mm.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOnlyInvalidMessagesApplyNothing(t *testing.T) {
	h := newHarness(t, Config{})
	bad := cmMsg("bad", wire.OpInsert, "default", "x", "1")
	bad.Content = []byte(`"x"`)
	h.queue(bad)
	stop := h.run(t)
	replies := h.sender.waitSent(t, 1)
	stop()
	if replies[0].m.Operation != wire.OpError {
		t.Errorf("reply = %s, want error", replies[0].m.Operation)
	}
	if calls, _, _ := h.st.stats(); calls != 0 {
		t.Errorf("Apply called %d times for a batch with nothing valid, want 0", calls)
	}
	if got := h.mm.Stats(); got.Batches != 0 || got.Rejected != 1 {
		t.Errorf("Stats = %+v, want no batch and one rejection", got)
	}
}

func TestDeleteRemoves(t *testing.T) {
	h := newHarness(t, Config{})
	h.queue(cmMsg("put", wire.OpInsert, "default", "cm", "1"),
		cmMsg("other", wire.OpInsert, "default", "keep", "1"))
	stop := h.run(t)
	h.sender.waitSent(t, 2)
	if _, err := h.st.Get(context.Background(), "configmap", "default", "cm"); err != nil {
		t.Fatalf("before delete: %v", err)
	}
	h.mm.Handle(context.Background(), cmMsg("del", wire.OpDelete, "default", "cm", "2"))
	// Deleting a missing key is acknowledged too (redelivered deletes).
	h.mm.Handle(context.Background(), cmMsg("del-again", wire.OpDelete, "default", "never-there", "2"))
	replies := h.sender.waitSent(t, 4)
	stop()
	for _, r := range replies[2:] {
		if r.m.Operation != wire.OpResponse {
			t.Errorf("reply to %q = %s, want an ack", r.m.Header.ParentID, r.m.Operation)
		}
	}
	if _, err := h.st.Get(context.Background(), "configmap", "default", "cm"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: Get = %v, want ErrNotFound", err)
	}
	if _, err := h.st.Get(context.Background(), "configmap", "default", "keep"); err != nil {
		t.Errorf("unrelated object gone: %v", err)
	}
	if n, _ := h.st.Count(context.Background()); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var ops []string
	for _, c := range h.changed {
		ops = append(ops, c.Op.String()+" "+c.Object.Name)
	}
	if diff := cmp.Diff([]string{"put cm", "put keep", "delete cm", "delete never-there"}, ops); diff != "" {
		t.Errorf("Changed (-want +got):\n%s", diff)
	}
}

func TestLaterChangeInBatchWins(t *testing.T) {
	h := newHarness(t, Config{})
	h.queue(cmMsg("1", wire.OpInsert, "default", "cm", "1"),
		cmMsg("2", wire.OpUpdate, "default", "cm", "2"),
		cmMsg("3", wire.OpDelete, "default", "other", "3"),
		cmMsg("4", wire.OpInsert, "default", "other", "4"))
	stop := h.run(t)
	h.sender.waitSent(t, 4)
	stop()
	if calls, _, _ := h.st.stats(); calls != 1 {
		t.Fatalf("Apply calls = %d, want 1", calls)
	}
	for name, rv := range map[string]string{"cm": "2", "other": "4"} {
		o, err := h.st.Get(context.Background(), "configmap", "default", name)
		if err != nil || o.ResourceVersion != rv {
			t.Errorf("%s = rv %q, %v; want rv %q", name, o.ResourceVersion, err, rv)
		}
	}
}

func TestResourceVersionAndClusterScope(t *testing.T) {
	h := newHarness(t, Config{})
	fromHeader := cmMsg("h", wire.OpInsert, "default", "a", "from-content")
	fromHeader.Header.ResourceVersion = "from-header"
	fromContent := cmMsg("c", wire.OpInsert, "default", "b", "from-content")
	node := wire.Message{
		Header: wire.Header{ID: "n"}, Operation: wire.OpUpdate,
		Resource: wire.Resource{Type: wire.TypeNode, Name: "edge-1"},
		Content:  []byte(`{"kind":"Node","metadata":{"name":"edge-1","resourceVersion":"55"}}`),
	}
	h.queue(fromHeader, fromContent, node)
	stop := h.run(t)
	replies := h.sender.waitSent(t, 3)
	stop()
	for _, r := range replies {
		if r.m.Operation != wire.OpResponse {
			t.Fatalf("reply to %q = %s, want ack", r.m.Header.ParentID, r.m.Operation)
		}
	}
	for _, tc := range []struct{ typ, ns, name, rv string }{
		{"configmap", "default", "a", "from-header"},
		{"configmap", "default", "b", "from-content"},
		{"node", "", "edge-1", "55"},
	} {
		o, err := h.st.Get(context.Background(), tc.typ, tc.ns, tc.name)
		if err != nil {
			t.Errorf("%s %s/%s: %v", tc.typ, tc.ns, tc.name, err)
			continue
		}
		if o.ResourceVersion != tc.rv {
			t.Errorf("%s %s/%s rv = %q, want %q", tc.typ, tc.ns, tc.name, o.ResourceVersion, tc.rv)
		}
	}
}

func TestHandleReturnsWhenContextEndsWithFullQueue(t *testing.T) {
	h := newHarness(t, Config{QueueSize: 1})
	h.queue(cmMsg("1", wire.OpInsert, "default", "a", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.mm.Handle(ctx, cmMsg("2", wire.OpInsert, "default", "b", "1")) // blocks: queue full, nothing runs
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Handle did not return after its context ended")
	}
	if got := h.mm.Stats().Received; got != 2 {
		t.Errorf("Received = %d, want 2", got)
	}
}
