package delivery

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is a mutable desired state.
type fakeSource struct {
	mu   sync.Mutex
	objs map[string]map[wire.Resource]Object
}

func newSource() *fakeSource { return &fakeSource{objs: map[string]map[wire.Resource]Object{}} }

func (s *fakeSource) set(node string, key wire.Resource, rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs[node] == nil {
		s.objs[node] = map[wire.Resource]Object{}
	}
	s.objs[node][key] = Object{Resource: key, UID: "uid-" + key.Name, Kind: "ConfigMap", APIVersion: "v1", ResourceVersion: rv, Content: []byte(`{"rv":"` + rv + `"}`)}
}

func (s *fakeSource) Desired(node string) []wire.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Resource
	for k := range s.objs[node] {
		out = append(out, k)
	}
	return out
}

func (s *fakeSource) Lookup(node string, key wire.Resource) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[node][key]
	return o, ok
}

func (s *fakeSource) HasSynced() bool { return true }

// fakeAcks records what delivery persisted.
type fakeAcks struct {
	mu      sync.Mutex
	initial map[string]map[wire.Resource]Acked
	current map[string]map[wire.Resource]Acked
}

func (a *fakeAcks) LoadAll(context.Context) (map[string]map[wire.Resource]Acked, error) {
	return a.initial, nil
}

func (a *fakeAcks) Record(node string, key wire.Resource, ack Acked, _ Acked) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current == nil {
		a.current = map[string]map[wire.Resource]Acked{}
	}
	if a.current[node] == nil {
		a.current[node] = map[wire.Resource]Acked{}
	}
	a.current[node][key] = ack
}

func (a *fakeAcks) Forget(node string, key wire.Resource, _ Acked) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.current[node], key)
}

func (a *fakeAcks) snapshot() map[string]map[wire.Resource]Acked {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]map[wire.Resource]Acked{}
	for n, m := range a.current {
		out[n] = map[wire.Resource]Acked{}
		for k, v := range m {
			out[n][k] = v
		}
	}
	return out
}

// fakeSender captures messages.
type fakeSender struct {
	mu   sync.Mutex
	msgs []wire.Message
}

func (s *fakeSender) Send(m wire.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	return nil
}

func (s *fakeSender) take() []wire.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.msgs
	s.msgs = nil
	return out
}

func (s *fakeSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

type env struct {
	src   *fakeSource
	acks  *fakeAcks
	clock *clocktesting.FakeClock
	d     *Delivery
	stop  func()
}

func start(t *testing.T, cfg Config, initial map[string]map[wire.Resource]Acked) *env {
	t.Helper()
	e := &env{src: newSource(), acks: &fakeAcks{initial: initial}, clock: clocktesting.NewFakeClock(time.Unix(1700000000, 0))}
	d, err := New(cfg, Deps{Source: e.src, Acks: e.acks, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(e.stop)
	return e
}

func key(name string) wire.Resource {
	return wire.Resource{Namespace: "default", Type: wire.TypeConfigMap, Name: name}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ackAll acknowledges every message the sender captured and returns them.
func ackAll(e *env, node string, s *fakeSender) []wire.Message {
	msgs := s.take()
	for _, m := range msgs {
		e.d.Ack(node, m.Header.ID)
	}
	return msgs
}

func TestWindowAndAcks(t *testing.T) {
	e := start(t, Config{Window: 4}, nil)
	for i := range 10 {
		e.src.set("n1", key(fmt.Sprint("c", i)), "1")
	}
	s := &fakeSender{}
	e.d.Connected("n1", s)
	waitFor(t, "a full window", func() bool { return s.count() == 4 })
	// The window holds: nothing more is sent until something is acked.
	if got := e.d.Pending("n1"); got != 10 {
		t.Fatalf("Pending = %d, want 10", got)
	}
	total := 0
	for total < 10 {
		var msgs []wire.Message
		waitFor(t, "more messages", func() bool { return s.count() > 0 })
		msgs = ackAll(e, "n1", s)
		for _, m := range msgs {
			if m.Operation != wire.OpInsert || m.Header.ResourceVersion != "1" {
				t.Fatalf("message %+v: want insert at rv 1", m)
			}
		}
		total += len(msgs)
	}
	waitFor(t, "all acks recorded", func() bool { return len(e.acks.snapshot()["n1"]) == 10 })
	if st := e.d.Stats(); st.Sent != 10 || st.Acked != 10 || st.Retried != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestCoalescesToNewestAndOneInFlightPerKey(t *testing.T) {
	e := start(t, Config{Window: 8}, nil)
	s := &fakeSender{}
	e.src.set("n1", key("a"), "1")
	e.d.Connected("n1", s)
	waitFor(t, "first send", func() bool { return s.count() == 1 })
	// Three updates while v1 is in flight: only the newest goes out, after the ack.
	for _, rv := range []string{"2", "3", "4"} {
		e.src.set("n1", key("a"), rv)
		e.d.Enqueue("n1", key("a"))
	}
	first := ackAll(e, "n1", s)
	if len(first) != 1 || first[0].Header.ResourceVersion != "1" {
		t.Fatalf("first = %+v", first)
	}
	waitFor(t, "the newest version", func() bool { return s.count() == 1 })
	msgs := ackAll(e, "n1", s)
	if msgs[0].Operation != wire.OpUpdate || msgs[0].Header.ResourceVersion != "4" || string(msgs[0].Content) != `{"rv":"4"}` {
		t.Fatalf("second message = %+v, want update at rv 4", msgs[0])
	}
	waitFor(t, "ack recorded", func() bool { return e.acks.snapshot()["n1"][key("a")].ResourceVersion == "4" })
	// Nothing more to send.
	e.d.Enqueue("n1", key("a"))
	waitFor(t, "queue idle", func() bool { return e.d.Pending("n1") == 0 })
	if s.count() != 0 {
		t.Fatalf("resent an acknowledged version: %+v", s.take())
	}
}

func TestRetransmitWithBackoff(t *testing.T) {
	e := start(t, Config{Window: 8, RetryInitial: 5 * time.Second, RetryMax: 20 * time.Second}, nil)
	s := &fakeSender{}
	e.src.set("n1", key("a"), "1")
	e.d.Connected("n1", s)
	waitFor(t, "first send", func() bool { return s.count() == 1 })
	first := s.take()[0]
	// Before the deadline nothing is resent.
	e.clock.Step(4 * time.Second)
	if s.count() != 0 {
		t.Fatal("resent before the retry deadline")
	}
	e.clock.Step(2 * time.Second)
	waitFor(t, "retransmit", func() bool { return s.count() == 1 })
	second := s.take()[0]
	if second.Header.ID == first.Header.ID || second.Header.ResourceVersion != "1" {
		t.Fatalf("retransmit = %+v", second)
	}
	// The late ack of the first attempt is ignored; the second's is taken.
	e.d.Ack("n1", first.Header.ID)
	// Back-off doubled: 10 s now.
	e.clock.Step(6 * time.Second)
	if s.count() != 0 {
		t.Fatal("second retry came before the doubled back-off")
	}
	e.clock.Step(5 * time.Second)
	waitFor(t, "second retransmit", func() bool { return s.count() == 1 })
	third := s.take()[0]
	e.d.Ack("n1", third.Header.ID)
	waitFor(t, "ack recorded", func() bool { return e.acks.snapshot()["n1"][key("a")].ResourceVersion == "1" })
	if st := e.d.Stats(); st.Retried != 2 || st.Acked != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestRestartResendsOnlyChangesAndDeletes(t *testing.T) {
	// What an earlier cloudcore recorded: a@1, b@1, gone@1.
	initial := map[string]map[wire.Resource]Acked{"n1": {
		key("a"):    {UID: "uid-a", ResourceVersion: "1"},
		key("b"):    {UID: "uid-b", ResourceVersion: "1"},
		key("gone"): {UID: "uid-gone", ResourceVersion: "1"},
	}}
	e := start(t, Config{Window: 8}, initial)
	e.src.set("n1", key("a"), "1") // unchanged
	e.src.set("n1", key("b"), "2") // changed while cloudcore was down
	e.src.set("n1", key("c"), "1") // new
	s := &fakeSender{}
	e.d.Connected("n1", s)
	waitFor(t, "the differences", func() bool { return s.count() == 3 })
	got := map[string]string{}
	for _, m := range ackAll(e, "n1", s) {
		got[m.Resource.Name] = string(m.Operation) + "@" + m.Header.ResourceVersion
	}
	want := map[string]string{"b": "update@2", "c": "insert@1", "gone": "delete@1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	waitFor(t, "deletion forgotten", func() bool {
		snap := e.acks.snapshot()["n1"]
		_, gone := snap[key("gone")]
		return !gone && snap[key("b")].ResourceVersion == "2" && snap[key("c")].ResourceVersion == "1"
	})
}

func TestRecreatedObjectIsResent(t *testing.T) {
	initial := map[string]map[wire.Resource]Acked{"n1": {key("a"): {UID: "old", ResourceVersion: "1"}}}
	e := start(t, Config{}, initial)
	e.src.set("n1", key("a"), "1") // same RV string, new UID "uid-a"
	s := &fakeSender{}
	e.d.Connected("n1", s)
	waitFor(t, "resend", func() bool { return s.count() == 1 })
	if m := s.take()[0]; m.Operation != wire.OpUpdate {
		t.Fatalf("op = %s, want update", m.Operation)
	}
}

func TestDisconnectDropsInflightAndReconnectResends(t *testing.T) {
	e := start(t, Config{Window: 8}, nil)
	s1 := &fakeSender{}
	e.src.set("n1", key("a"), "1")
	e.d.Connected("n1", s1)
	waitFor(t, "send", func() bool { return s1.count() == 1 })
	lost := s1.take()[0]
	e.d.Disconnected("n1", s1)
	// Changes while offline are not sent anywhere.
	e.src.set("n1", key("a"), "2")
	e.d.Enqueue("n1", key("a"))
	s2 := &fakeSender{}
	e.d.Connected("n1", s2)
	waitFor(t, "resend on the new session", func() bool { return s2.count() == 1 })
	m := s2.take()[0]
	if m.Header.ResourceVersion != "2" || m.Operation != wire.OpInsert {
		t.Fatalf("resend = %+v, want insert at rv 2", m)
	}
	e.d.Ack("n1", lost.Header.ID) // an ack from the dead session changes nothing
	if len(e.d.AckedVersions("n1")) != 0 {
		t.Fatal("a stale ack was recorded")
	}
	e.d.Ack("n1", m.Header.ID)
	if e.d.AckedVersions("n1")[key("a")].ResourceVersion != "2" {
		t.Fatal("ack not recorded")
	}
	// A Disconnected for a session that was already replaced is ignored.
	e.d.Disconnected("n1", s1)
	e.src.set("n1", key("b"), "1")
	e.d.Enqueue("n1", key("b"))
	waitFor(t, "send on the live session", func() bool { return s2.count() == 1 })
}

func TestNodesAreIsolated(t *testing.T) {
	e := start(t, Config{}, nil)
	e.src.set("n1", key("a"), "1")
	e.src.set("n2", key("b"), "1")
	s1, s2 := &fakeSender{}, &fakeSender{}
	e.d.Connected("n1", s1)
	e.d.Connected("n2", s2)
	waitFor(t, "both", func() bool { return s1.count() == 1 && s2.count() == 1 })
	if a, b := s1.take()[0], s2.take()[0]; a.Resource.Name != "a" || b.Resource.Name != "b" {
		t.Fatalf("n1 got %s, n2 got %s", a.Resource, b.Resource)
	}
}

func BenchmarkDeliver1000(b *testing.B) {
	for b.Loop() {
		src := newSource()
		for i := range 1000 {
			src.set("n1", key(fmt.Sprint("c", i)), "1")
		}
		d, err := New(Config{Window: 64}, Deps{Source: src, Acks: &fakeAcks{}, Clock: clocktesting.NewFakeClock(time.Now())})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.Run(ctx); close(done) }()
		s := &ackingSender{d: d}
		d.Connected("n1", s)
		for d.Stats().Acked < 1000 {
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
		<-done
	}
}

// ackingSender acknowledges each message as soon as it is sent.
type ackingSender struct{ d *Delivery }

func (s *ackingSender) Send(m wire.Message) error {
	go s.d.Ack("n1", m.Header.ID)
	return nil
}

type staticSource struct {
	typ    wire.ResourceType
	synced bool
}

func (s staticSource) Desired(node string) []wire.Resource {
	return []wire.Resource{{Namespace: "ns", Type: s.typ, Name: node}}
}

func (s staticSource) Lookup(node string, key wire.Resource) (Object, bool) {
	if key.Type != s.typ || key.Name != node {
		return Object{}, false
	}
	return Object{Resource: key, ResourceVersion: string(s.typ)}, true
}

func (s staticSource) HasSynced() bool { return s.synced }

func TestComposite(t *testing.T) {
	c := Composite{staticSource{typ: wire.TypePod, synced: true}, staticSource{typ: wire.TypeDevice, synced: false}}
	if got := c.Desired("n1"); len(got) != 2 || got[0].Type != wire.TypePod || got[1].Type != wire.TypeDevice {
		t.Fatalf("Desired = %v", got)
	}
	if o, ok := c.Lookup("n1", wire.Resource{Namespace: "ns", Type: wire.TypeDevice, Name: "n1"}); !ok || o.ResourceVersion != "device" {
		t.Errorf("Lookup(device) = %v %v", o, ok)
	}
	if _, ok := c.Lookup("n1", wire.Resource{Namespace: "ns", Type: wire.TypeSecret, Name: "n1"}); ok {
		t.Error("Lookup of a type no source serves succeeded")
	}
	if c.HasSynced() {
		t.Error("HasSynced with an unsynced source")
	}
}
