package certs

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenKeeper(t *testing.T) {
	ca, err := pki.NewCA(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientset()
	// The first write fails, to exercise the retry.
	var failures atomic.Int32
	failures.Store(1)
	c.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures.Add(-1) >= 0 {
			return true, nil, errors.New("apiserver unavailable")
		}
		return false, nil, nil
	})
	clk := clocktesting.NewFakeClock(t0)
	k, err := NewTokenKeeper(Config{TokenRefresh: time.Hour}, TokenKeeperDeps{Client: c, CA: ca, Clock: clk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()

	if _, err := k.CurrentToken(ctx); err == nil {
		t.Error("CurrentToken succeeded before any token was written")
	}
	eventually(t, "retry timer", clk.HasWaiters)
	clk.Step(time.Second)

	var first string
	eventually(t, "first token", func() bool {
		first, err = k.CurrentToken(ctx)
		return err == nil
	})
	hash, jwt, err := pki.ParseToken(first)
	if err != nil {
		t.Fatal(err)
	}
	if hash != ca.Hash() {
		t.Errorf("token pins %s, want CA hash %s", hash, ca.Hash())
	}
	// Valid for twice the refresh period from when it was written.
	written := t0.Add(time.Second)
	if err := pki.VerifyJWT(jwt, ca.KeyDER, written.Add(2*time.Hour-time.Second)); err != nil {
		t.Errorf("token not valid until 2x refresh: %v", err)
	}
	if err := pki.VerifyJWT(jwt, ca.KeyDER, written.Add(2*time.Hour)); !errors.Is(err, pki.ErrTokenExpired) {
		t.Errorf("token still valid after 2x refresh: %v", err)
	}

	eventually(t, "refresh timer", clk.HasWaiters)
	clk.Step(time.Hour)
	eventually(t, "refreshed token", func() bool {
		tok, err := k.CurrentToken(ctx)
		return err == nil && tok != first
	})
	tok, _ := k.CurrentToken(ctx)
	_, jwt, _ = pki.ParseToken(tok)
	if err := pki.VerifyJWT(jwt, ca.KeyDER, written.Add(3*time.Hour-time.Second)); err != nil {
		t.Errorf("refreshed token not valid for 2x refresh from the refresh: %v", err)
	}
}

func TestNewTokenKeeperErrors(t *testing.T) {
	if _, err := NewTokenKeeper(Config{}, TokenKeeperDeps{}); err == nil || !strings.Contains(err.Error(), "needs a Kubernetes client") {
		t.Errorf("NewTokenKeeper without client = %v", err)
	}
	if _, err := NewTokenKeeper(Config{}, TokenKeeperDeps{Client: fake.NewClientset()}); err == nil || !strings.Contains(err.Error(), "needs the CA") {
		t.Errorf("NewTokenKeeper without CA = %v", err)
	}
}
