package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/edge/hub"
	"github.com/kubeedge-go/kubeedge/internal/edgeapi"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSender records what is sent and is connected while up is true.
type fakeSender struct {
	mu         sync.Mutex
	up         bool
	upCh       chan struct{}
	sent       []wire.Message
	deferrable int // how many of sent came through SendDeferrable
}

func newFakeSender(up bool) *fakeSender {
	s := &fakeSender{upCh: make(chan struct{})}
	if up {
		s.setUp(true)
	}
	return s
}

func (s *fakeSender) setUp(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up == s.up {
		return
	}
	s.up = up
	if up {
		close(s.upCh)
	} else {
		s.upCh = make(chan struct{})
	}
}

func (s *fakeSender) Send(ctx context.Context, m wire.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return hub.ErrNotConnected
	}
	s.sent = append(s.sent, m)
	return nil
}

// SendDeferrable records m like Send and counts it as deferrable.
func (s *fakeSender) SendDeferrable(ctx context.Context, m wire.Message) error {
	if err := s.Send(ctx, m); err != nil {
		return err
	}
	s.mu.Lock()
	s.deferrable++
	s.mu.Unlock()
	return nil
}

func (s *fakeSender) WaitConnected(ctx context.Context) error {
	s.mu.Lock()
	ch := s.upCh
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *fakeSender) messages() []wire.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.Message(nil), s.sent...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func start(t *testing.T, cfg Config, s Sender, clk *clocktesting.FakeClock) *Uplink {
	t.Helper()
	u, err := New(cfg, Deps{Sender: s, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = u.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return u
}

func statusOf(t *testing.T, m wire.Message) edgeapi.PodStatusRequest {
	t.Helper()
	var r edgeapi.PodStatusRequest
	if err := json.Unmarshal(m.Content, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func phase(p corev1.PodPhase) corev1.PodStatus { return corev1.PodStatus{Phase: p} }

func ack(m wire.Message) wire.Message { return wire.NewAck(time.Now(), wire.SourceCloudHub, m) }

func TestOfflineStatusesCoalesceAndArriveOnConnect(t *testing.T) {
	s := newFakeSender(false)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{}, s, clk)
	u.PodStatus("default", "a", "uid-a", phase(corev1.PodPending))
	u.PodStatus("default", "a", "uid-a", phase(corev1.PodRunning))
	u.PodStatus("default", "b", "uid-b", phase(corev1.PodRunning))
	if got := u.Stats(); got.Pending != 2 || got.Coalesced != 1 {
		t.Fatalf("stats %+v, want 2 pending, 1 coalesced", got)
	}
	s.setUp(true)
	waitFor(t, "two statuses sent", func() bool { return len(s.messages()) == 2 })
	msgs := s.messages()
	if r := statusOf(t, msgs[0]); msgs[0].Resource.String() != "default/podstatus/a" || r.Status.Phase != corev1.PodRunning || r.UID != "uid-a" || r.Name != "a" {
		t.Errorf("first message %s %+v: want the newest status of a", msgs[0].Resource, r)
	}
	if msgs[0].Operation != wire.OpUpdate {
		t.Errorf("operation %q", msgs[0].Operation)
	}
	for _, m := range msgs {
		if !u.HandleReply(ack(m)) {
			t.Errorf("ack of %s not recognised", m.Resource)
		}
	}
	if got := u.Stats(); got.Pending != 0 || got.Acked != 2 {
		t.Errorf("stats %+v after acks", got)
	}
}

func TestOneInFlightPerPodAndNewestWins(t *testing.T) {
	s := newFakeSender(true)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{}, s, clk)
	u.PodStatus("ns", "p", "u1", phase(corev1.PodPending))
	waitFor(t, "first send", func() bool { return len(s.messages()) == 1 })
	u.PodStatus("ns", "p", "u1", phase(corev1.PodRunning))
	u.PodStatus("ns", "p", "u1", phase(corev1.PodSucceeded))
	// Nothing more may go out before the first is acknowledged.
	u.PodStatus("ns", "other", "u2", phase(corev1.PodRunning))
	waitFor(t, "the other pod's status", func() bool { return len(s.messages()) == 2 })
	if got := s.messages()[1].Resource.Name; got != "other" {
		t.Fatalf("second message is about %q while p was in flight", got)
	}
	u.HandleReply(ack(s.messages()[0]))
	waitFor(t, "the newest status of p", func() bool { return len(s.messages()) == 3 })
	if r := statusOf(t, s.messages()[2]); r.Status.Phase != corev1.PodSucceeded {
		t.Errorf("resent phase %s, want Succeeded", r.Status.Phase)
	}
}

func TestUnackedReportIsResentAfterTimeout(t *testing.T) {
	s := newFakeSender(true)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{AckTimeout: time.Second}, s, clk)
	u.PodTerminated("ns", "gone", "uid-g")
	waitFor(t, "deletion sent", func() bool { return len(s.messages()) == 1 })
	m := s.messages()[0]
	var d edgeapi.PodDeletion
	if err := json.Unmarshal(m.Content, &d); err != nil || d.UID != "uid-g" || m.Operation != wire.OpDelete || m.Resource.String() != "ns/pod/gone" {
		t.Fatalf("deletion message %s %s %s (%v)", m.Operation, m.Resource, m.Content, err)
	}
	waitFor(t, "resend", func() bool {
		clk.Step(300 * time.Millisecond)
		return len(s.messages()) >= 2
	})
	second := s.messages()[1]
	if second.Header.ID == m.Header.ID {
		t.Error("resent with the same message id")
	}
	// The late ack of the first copy is not mistaken for the second's.
	if u.HandleReply(ack(m)) {
		t.Error("a stale ack was taken")
	}
	u.HandleReply(ack(second))
	if got := u.Stats(); got.Pending != 0 || got.Resent < 1 {
		t.Errorf("stats %+v", got)
	}
}

func TestRefusedReportIsDropped(t *testing.T) {
	s := newFakeSender(true)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{}, s, clk)
	u.PodStatus("ns", "p", "u", phase(corev1.PodRunning))
	waitFor(t, "sent", func() bool { return len(s.messages()) == 1 })
	u.HandleReply(wire.NewError(time.Now(), wire.SourceCloudHub, s.messages()[0].Header.ID, "pod ns/p is not bound to node x"))
	if got := u.Stats(); got.Pending != 0 || got.Refused != 1 {
		t.Errorf("stats %+v, want the report dropped", got)
	}
}

func TestDisconnectRequeuesInFlight(t *testing.T) {
	s := newFakeSender(true)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{}, s, clk)
	u.PodStatus("ns", "p", "u", phase(corev1.PodRunning))
	waitFor(t, "sent", func() bool { return len(s.messages()) == 1 })
	s.setUp(false)
	u.Disconnected()
	s.setUp(true)
	waitFor(t, "sent again on the new session", func() bool { return len(s.messages()) == 2 })
}

func TestEventsAreBoundedAndSentAfterReports(t *testing.T) {
	s := newFakeSender(false)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{MaxEvents: 2}, s, clk)
	for _, name := range []string{"e1", "e2", "e3"} {
		u.Event(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Reason: "Started"})
	}
	u.PodStatus("ns", "p", "u", phase(corev1.PodRunning))
	s.setUp(true)
	waitFor(t, "status and two events", func() bool { return len(s.messages()) == 3 })
	msgs := s.messages()
	if msgs[0].Resource.Type != wire.TypePodStatus || msgs[1].Resource.Name != "e2" || msgs[2].Resource.Name != "e3" {
		t.Errorf("order %s %s %s: want the status first, then e2, e3", msgs[0].Resource, msgs[1].Resource, msgs[2].Resource)
	}
	if got := u.Stats(); got.EventsDropped != 1 || got.EventsSent != 2 {
		t.Errorf("stats %+v", got)
	}
	s.mu.Lock()
	deferrable := s.deferrable
	s.mu.Unlock()
	if deferrable != 2 {
		t.Errorf("%d messages went through SendDeferrable, want the 2 events (and not the status)", deferrable)
	}
}

func TestQuery(t *testing.T) {
	s := newFakeSender(true)
	clk := clocktesting.NewFakeClock(time.Now())
	u := start(t, Config{QueryTimeout: time.Second}, s, clk)
	res := wire.Resource{Namespace: "ns", Type: wire.TypeServiceAccountToken, Name: "default"}

	type result struct {
		m   wire.Message
		err error
	}
	ask := func() chan result {
		ch := make(chan result, 1)
		go func() {
			m, err := u.Query(context.Background(), res, map[string]string{"q": "1"})
			ch <- result{m, err}
		}()
		return ch
	}

	// Answered.
	ch := ask()
	waitFor(t, "query sent", func() bool { return len(s.messages()) == 1 })
	q := s.messages()[0]
	if q.Operation != wire.OpQuery {
		t.Fatalf("operation %q", q.Operation)
	}
	answer, _ := wire.New(time.Now(), wire.SourceCloudHub, wire.GroupResource, wire.OpResponse, res, map[string]string{"token": "t"})
	answer.Header.ParentID = q.Header.ID
	if !u.HandleReply(answer) {
		t.Fatal("answer not taken")
	}
	r := <-ch
	var body map[string]string
	if r.err != nil || DecodeContent(r.m, &body) != nil || body["token"] != "t" {
		t.Fatalf("answer %v %v", body, r.err)
	}

	// Refused.
	ch = ask()
	waitFor(t, "second query", func() bool { return len(s.messages()) == 2 })
	u.HandleReply(wire.NewError(time.Now(), wire.SourceCloudHub, s.messages()[1].Header.ID, "no such service account"))
	if r := <-ch; !errors.Is(r.err, ErrRefused) {
		t.Errorf("refused query: %v", r.err)
	}

	// Not answered.
	ch = ask()
	waitFor(t, "third query", func() bool { return len(s.messages()) == 3 })
	waitFor(t, "timeout", func() bool {
		clk.Step(200 * time.Millisecond)
		select {
		case r := <-ch:
			if !errors.Is(r.err, ErrTimeout) {
				t.Errorf("unanswered query: %v", r.err)
			}
			return true
		default:
			return false
		}
	})

	// Offline: fails at once.
	s.setUp(false)
	if _, err := u.Query(context.Background(), res, nil); !errors.Is(err, hub.ErrNotConnected) {
		t.Errorf("offline query: %v", err)
	}
}
