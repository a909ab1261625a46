package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// Retry bounds for a failed token write. The previous token stays valid for
// another refresh period, so retries need not be aggressive.
const (
	tokenRetryMin = time.Second
	tokenRetryMax = time.Minute
)

// TokenKeeperDeps are the TokenKeeper's collaborators.
type TokenKeeperDeps struct {
	Client kubernetes.Interface
	CA     *pki.CA
	Clock  clock.Clock
	Logger *slog.Logger
}

// TokenKeeper writes a fresh join token into the tokensecret periodically.
// Replicas may all run one: tokens are signed with the shared CA key, so
// whichever was written last verifies everywhere.
type TokenKeeper struct {
	cfg  Config
	deps TokenKeeperDeps
}

// NewTokenKeeper validates cfg (after defaults) and deps.
func NewTokenKeeper(cfg Config, deps TokenKeeperDeps) (*TokenKeeper, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Client == nil:
		return nil, errors.New("certs: token keeper needs a Kubernetes client")
	case deps.CA == nil:
		return nil, errors.New("certs: token keeper needs the CA")
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = cfg.Logger
	}
	return &TokenKeeper{cfg: cfg, deps: deps}, nil
}

// Run writes a token now and then every TokenRefresh until ctx is done,
// retrying failed writes with capped backoff. It returns nil when ctx ends.
func (k *TokenKeeper) Run(ctx context.Context) error {
	retry := tokenRetryMin
	for {
		wait := k.cfg.TokenRefresh
		if err := k.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = min(retry, k.cfg.TokenRefresh)
			retry = min(2*retry, tokenRetryMax)
			k.deps.Logger.Warn("writing join token failed; retrying", "secret", k.cfg.Namespace+"/"+TokenSecret, "in", wait, "err", err)
		} else {
			retry = tokenRetryMin
		}
		t := k.deps.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// CurrentToken returns the token stored in the tokensecret.
func (k *TokenKeeper) CurrentToken(ctx context.Context) (string, error) {
	s, err := k.deps.Client.CoreV1().Secrets(k.cfg.Namespace).Get(ctx, TokenSecret, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("certs: read join token: %w", err)
	}
	tok := string(s.Data[TokenKey])
	if tok == "" {
		return "", fmt.Errorf("certs: secret %s/%s has no %q key", k.cfg.Namespace, TokenSecret, TokenKey)
	}
	return tok, nil
}

// refresh writes a new token, creating the secret if needed.
func (k *TokenKeeper) refresh(ctx context.Context) error {
	tok, err := pki.NewToken(k.deps.CA, k.deps.Clock.Now(), 2*k.cfg.TokenRefresh)
	if err != nil {
		return err
	}
	secrets := k.deps.Client.CoreV1().Secrets(k.cfg.Namespace)
	// Another replica may create or update the secret between our calls;
	// a few attempts settle it, and the loser's token is just as valid.
	for range 3 {
		s, err := secrets.Get(ctx, TokenSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: TokenSecret},
				Type:       corev1.SecretTypeOpaque,
				Data:       map[string][]byte{TokenKey: []byte(tok)},
			}, metav1.CreateOptions{})
		case err == nil:
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[TokenKey] = []byte(tok)
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("certs: write secret %s/%s: %w", k.cfg.Namespace, TokenSecret, err)
		}
	}
	return fmt.Errorf("certs: write secret %s/%s: kept conflicting with concurrent writers", k.cfg.Namespace, TokenSecret)
}
