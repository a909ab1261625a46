package tokens

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

type fakeCloud struct {
	mu      sync.Mutex
	clk     *clocktesting.FakePassiveClock
	offline bool
	calls   int
	last    authenticationv1.TokenRequest
}

func (f *fakeCloud) Query(ctx context.Context, res wire.Resource, content any) (wire.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.offline {
		return wire.Message{}, errors.New("not connected")
	}
	f.last = content.(authenticationv1.TokenRequest)
	out := f.last
	out.Status = authenticationv1.TokenRequestStatus{
		Token:               res.Name + "-token-" + string(rune('a'+f.calls)),
		ExpirationTimestamp: metav1.NewTime(f.clk.Now().Add(time.Hour)),
	}
	return wire.New(f.clk.Now(), "cloud", "resource", wire.OpResponse, res, out)
}

func TestTokenCachedRenewedAndServedOffline(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cloud := &fakeCloud{clk: clk}
	st := store.NewMemory()
	src, err := New(Deps{Querier: cloud, Store: st, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-1"}}
	ctx := context.Background()
	tok, exp, err := src.Token(ctx, pod, "default", []string{"api"}, 3600)
	if err != nil || tok == "" || !exp.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("first token %q %s %v", tok, exp, err)
	}
	if ref := cloud.last.Spec.BoundObjectRef; ref == nil || ref.UID != "uid-1" || ref.Name != "p" || *cloud.last.Spec.ExpirationSeconds != 3600 {
		t.Fatalf("request %+v is not bound to the pod", cloud.last.Spec)
	}
	// Before 80% of the lifetime: cached, no query.
	clk.SetTime(clk.Now().Add(47 * time.Minute))
	if again, _, _ := src.Token(ctx, pod, "default", []string{"api"}, 3600); again != tok || cloud.calls != 1 {
		t.Fatalf("token %q after %d calls: want the cached one", again, cloud.calls)
	}
	// Past 80% and offline: the current token is still served.
	clk.SetTime(clk.Now().Add(2 * time.Minute))
	cloud.offline = true
	if again, _, err := src.Token(ctx, pod, "default", []string{"api"}, 3600); err != nil || again != tok {
		t.Fatalf("offline renewal: %q %v, want the current token", again, err)
	}
	// A new Source on the same store (edgecore restarted offline) finds it.
	src2, _ := New(Deps{Querier: cloud, Store: st, Clock: clk})
	if again, _, err := src2.Token(ctx, pod, "default", []string{"api"}, 3600); err != nil || again != tok {
		t.Fatalf("after restart: %q %v", again, err)
	}
	// Expired and offline: a clear error.
	clk.SetTime(clk.Now().Add(time.Hour))
	if _, _, err := src2.Token(ctx, pod, "default", []string{"api"}, 3600); !errors.Is(err, ErrNoToken) {
		t.Fatalf("expired offline: %v", err)
	}
	// Back online: renewed.
	cloud.offline = false
	if fresh, _, err := src2.Token(ctx, pod, "default", []string{"api"}, 3600); err != nil || fresh == tok {
		t.Fatalf("renewal: %q %v", fresh, err)
	}
	if err := src2.Forget(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if objs, _ := st.List(ctx, StoreType, "ns"); len(objs) != 0 {
		t.Errorf("%d tokens left after Forget", len(objs))
	}
}
