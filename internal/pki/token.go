package pki

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Join tokens are hex(sha256(CA cert DER)) + "." + an HS256 JWT whose HMAC key
// is the CA private key DER, so every cloudcore replica holding the casecret
// can verify any replica's token. HS256 is implemented here rather than via a
// JWT library: it is a few lines, and a library would bring algorithm
// negotiation we must then disable.

var (
	// ErrTokenMalformed means the token or JWT does not have the expected shape.
	ErrTokenMalformed = errors.New("pki: malformed token")
	// ErrTokenSignature means the JWT was not signed with this CA's key.
	ErrTokenSignature = errors.New("pki: token signature does not verify")
	// ErrTokenExpired means the JWT's exp claim is not in the future.
	ErrTokenExpired = errors.New("pki: token expired")
)

const jwtHeaderB64 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" // {"alg":"HS256","typ":"JWT"}

var b64 = base64.RawURLEncoding

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
}

type jwtClaims struct {
	// Exp and Iat are float64 on decode because JWT libraries may write
	// NumericDate with a fraction.
	Exp *float64 `json:"exp"`
	Iat *float64 `json:"iat,omitempty"`
}

// NewToken returns a join token for ca, valid from now for ttl.
func NewToken(ca *CA, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("pki: token lifetime must be positive, got %s", ttl)
	}
	jwt, err := NewJWT(ca.KeyDER, now, now.Add(ttl))
	if err != nil {
		return "", err
	}
	return ca.Hash() + "." + jwt, nil
}

// NewJWT returns an HS256 JWT with claims iat and exp (whole seconds).
func NewJWT(hmacKey []byte, iat, exp time.Time) (string, error) {
	if len(hmacKey) == 0 {
		return "", errors.New("pki: JWT key is empty")
	}
	claims, err := json.Marshal(struct {
		Exp int64 `json:"exp"`
		Iat int64 `json:"iat"`
	}{exp.Unix(), iat.Unix()})
	if err != nil {
		return "", fmt.Errorf("pki: encode JWT claims: %w", err)
	}
	signed := jwtHeaderB64 + "." + b64.EncodeToString(claims)
	return signed + "." + b64.EncodeToString(hs256(hmacKey, signed)), nil
}

// ParseToken splits a join token into the pinned CA hash and the JWT,
// checking only their shape. Surrounding white space is ignored.
func ParseToken(token string) (caHash, jwt string, err error) {
	token = strings.TrimSpace(token)
	caHash, jwt, ok := strings.Cut(token, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: no '.' after the CA hash (want <64 hex chars>.<JWT>)", ErrTokenMalformed)
	}
	if len(caHash) != 64 {
		return "", "", fmt.Errorf("%w: CA hash is %d characters, want 64 lowercase hex characters", ErrTokenMalformed, len(caHash))
	}
	for _, c := range []byte(caHash) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", fmt.Errorf("%w: CA hash contains %q, want lowercase hex", ErrTokenMalformed, rune(c))
		}
	}
	if _, err := splitJWT(jwt); err != nil {
		return "", "", err
	}
	return caHash, jwt, nil
}

// VerifyJWT checks that jwt is an HS256 JWT signed with hmacKey whose exp
// claim is after now. Errors wrap ErrTokenMalformed, ErrTokenSignature or
// ErrTokenExpired.
func VerifyJWT(jwt string, hmacKey []byte, now time.Time) error {
	parts, err := splitJWT(jwt)
	if err != nil {
		return err
	}
	var hdr jwtHeader
	if err := json.Unmarshal(parts[0], &hdr); err != nil {
		return fmt.Errorf("%w: JWT header is not JSON: %v", ErrTokenMalformed, err)
	}
	if hdr.Alg != "HS256" {
		return fmt.Errorf("%w: JWT alg %q is not supported, want HS256", ErrTokenMalformed, hdr.Alg)
	}
	signed := jwt[:strings.LastIndexByte(jwt, '.')]
	if len(hmacKey) == 0 || !hmac.Equal(parts[2], hs256(hmacKey, signed)) {
		return fmt.Errorf("%w: it was not issued by this cloud's CA", ErrTokenSignature)
	}
	// Claims are only parsed once authenticated.
	var c jwtClaims
	if err := json.Unmarshal(parts[1], &c); err != nil {
		return fmt.Errorf("%w: JWT claims are not JSON: %v", ErrTokenMalformed, err)
	}
	if c.Exp == nil {
		return fmt.Errorf("%w: JWT has no exp claim", ErrTokenMalformed)
	}
	if math.IsNaN(*c.Exp) || math.IsInf(*c.Exp, 0) || math.Abs(*c.Exp) > 1<<53 {
		return fmt.Errorf("%w: JWT exp claim %v is out of range", ErrTokenMalformed, *c.Exp)
	}
	exp := time.Unix(int64(*c.Exp), 0)
	if !now.Before(exp) {
		return fmt.Errorf("%w at %s (now %s)", ErrTokenExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// splitJWT returns the three decoded base64url parts of jwt.
func splitJWT(jwt string) ([3][]byte, error) {
	var out [3][]byte
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return out, fmt.Errorf("%w: JWT has %d parts, want 3 (header.claims.signature)", ErrTokenMalformed, len(parts))
	}
	names := [3]string{"header", "claims", "signature"}
	for i, p := range parts {
		if p == "" {
			return out, fmt.Errorf("%w: JWT %s is empty", ErrTokenMalformed, names[i])
		}
		b, err := b64.DecodeString(p)
		if err != nil {
			return out, fmt.Errorf("%w: JWT %s is not base64url: %v", ErrTokenMalformed, names[i], err)
		}
		out[i] = b
	}
	return out, nil
}

func hs256(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}
