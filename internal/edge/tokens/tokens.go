// Package tokens gives pods at the edge their service-account tokens.
//
// A token is requested from the API server through the cloud (a query on
// "{ns}/serviceaccounttoken/{serviceAccount}", bound to the pod) and kept in
// the edge store, so that a pod restarted while the cloud is unreachable —
// even after the edge host rebooted — still gets the token it had, for as
// long as that token is valid. A token is renewed once 80% of its lifetime
// has passed, as the kubelet does; until renewal succeeds the current one is
// served.
package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/wire"
)

// StoreType is the store type under which tokens are kept.
const StoreType = "serviceaccounttoken"

// ErrNoToken: no valid token is at hand and the cloud could not give one.
var ErrNoToken = errors.New("tokens: no valid token")

// Querier asks the cloud; the edge uplink implements it.
type Querier interface {
	Query(ctx context.Context, res wire.Resource, content any) (wire.Message, error)
}

// Deps are the Source's collaborators.
type Deps struct {
	Querier Querier
	Store   store.Store
	Clock   clock.PassiveClock
	Logger  *slog.Logger
}

// Source issues and caches tokens.
type Source struct {
	deps Deps
	log  *slog.Logger

	mu    sync.Mutex
	cache map[string]stored // guarded by mu; by store name
}

// stored is what the store keeps per token.
type stored struct {
	Token   string    `json:"token"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

func (s stored) renewAt() time.Time { return s.Issued.Add(s.Expires.Sub(s.Issued) * 8 / 10) }

// New builds a Source.
func New(deps Deps) (*Source, error) {
	if deps.Querier == nil || deps.Store == nil || deps.Clock == nil {
		return nil, errors.New("tokens: Querier, Store and Clock are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Source{deps: deps, log: deps.Logger.With("component", "tokens"), cache: map[string]stored{}}, nil
}

// storeName names a token of one pod instance for one request shape.
func storeName(pod *corev1.Pod, sa string, audiences []string, seconds int64) string {
	aud := slices.Clone(audiences)
	slices.Sort(aud)
	h := sha256.Sum256([]byte(strings.Join([]string{string(pod.UID), sa, strings.Join(aud, ","), fmt.Sprint(seconds)}, "\x00")))
	return pod.Name + "." + hex.EncodeToString(h[:6])
}

// Token returns a token of serviceAccount for pod, and when it expires.
func (s *Source) Token(ctx context.Context, pod *corev1.Pod, serviceAccount string, audiences []string, expirationSeconds int64) (string, time.Time, error) {
	name := storeName(pod, serviceAccount, audiences, expirationSeconds)
	now := s.deps.Clock.Now()
	cur, have := s.lookup(ctx, pod.Namespace, name)
	if have && now.Before(cur.renewAt()) {
		return cur.Token, cur.Expires, nil
	}
	fresh, err := s.request(ctx, pod, serviceAccount, audiences, expirationSeconds, now)
	if err != nil {
		if have && now.Before(cur.Expires) {
			s.log.Debug("token renewal failed; serving the current token", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return cur.Token, cur.Expires, nil
		}
		return "", time.Time{}, fmt.Errorf("%w for %s/%s (service account %q): %w", ErrNoToken, pod.Namespace, pod.Name, serviceAccount, err)
	}
	value, err := json.Marshal(fresh)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := s.deps.Store.Apply(ctx, []store.Change{{Op: store.OpPut, Object: store.Object{
		Type: StoreType, Namespace: pod.Namespace, Name: name, Value: value}}}); err != nil {
		// Still usable now; only a restart while offline would miss it.
		s.log.Warn("token not persisted", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	s.mu.Lock()
	s.cache[pod.Namespace+"/"+name] = fresh
	s.mu.Unlock()
	return fresh.Token, fresh.Expires, nil
}

func (s *Source) lookup(ctx context.Context, namespace, name string) (stored, bool) {
	s.mu.Lock()
	cur, ok := s.cache[namespace+"/"+name]
	s.mu.Unlock()
	if ok {
		return cur, true
	}
	obj, err := s.deps.Store.Get(ctx, StoreType, namespace, name)
	if err != nil {
		return stored{}, false
	}
	if err := json.Unmarshal(obj.Value, &cur); err != nil || cur.Token == "" {
		s.log.Warn("stored token is unreadable; requesting a new one", "name", namespace+"/"+name)
		return stored{}, false
	}
	s.mu.Lock()
	s.cache[namespace+"/"+name] = cur
	s.mu.Unlock()
	return cur, true
}

func (s *Source) request(ctx context.Context, pod *corev1.Pod, sa string, audiences []string, seconds int64, now time.Time) (stored, error) {
	req := authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: audiences,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if seconds > 0 {
		req.Spec.ExpirationSeconds = &seconds
	}
	m, err := s.deps.Querier.Query(ctx, wire.Resource{Namespace: pod.Namespace, Type: wire.TypeServiceAccountToken, Name: sa}, req)
	if err != nil {
		return stored{}, err
	}
	var got authenticationv1.TokenRequest
	if err := json.Unmarshal(m.Content, &got); err != nil {
		return stored{}, fmt.Errorf("tokens: answer is not a TokenRequest: %w", err)
	}
	if got.Status.Token == "" || !got.Status.ExpirationTimestamp.After(now) {
		return stored{}, fmt.Errorf("tokens: answer holds no valid token (expires %s)", got.Status.ExpirationTimestamp)
	}
	return stored{Token: got.Status.Token, Issued: now, Expires: got.Status.ExpirationTimestamp.Time}, nil
}

// Forget removes the tokens of a pod that left the node.
func (s *Source) Forget(ctx context.Context, pod *corev1.Pod) error {
	objs, err := s.deps.Store.List(ctx, StoreType, pod.Namespace)
	if err != nil {
		return err
	}
	var changes []store.Change
	s.mu.Lock()
	for _, o := range objs {
		if strings.HasPrefix(o.Name, pod.Name+".") {
			changes = append(changes, store.Change{Op: store.OpDelete, Object: o})
			delete(s.cache, o.Namespace+"/"+o.Name)
		}
	}
	s.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	return s.deps.Store.Apply(ctx, changes)
}
