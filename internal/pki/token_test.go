package pki

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJWTHeaderConstant(t *testing.T) {
	got, err := base64.RawURLEncoding.DecodeString(jwtHeaderB64)
	if err != nil || string(got) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header decodes to %q, %v", got, err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	tok, err := NewToken(ca, t0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hash, jwt, err := ParseToken(" " + tok + "\n")
	if err != nil {
		t.Fatalf("ParseToken: %v", err)
	}
	if hash != ca.Hash() {
		t.Errorf("hash = %s, want CA hash %s", hash, ca.Hash())
	}
	if hash+"."+jwt != tok {
		t.Errorf("ParseToken parts do not reassemble the token")
	}
	if err := VerifyJWT(jwt, ca.KeyDER, t0.Add(24*time.Hour-time.Second)); err != nil {
		t.Errorf("VerifyJWT just before expiry: %v", err)
	}
	err = VerifyJWT(jwt, ca.KeyDER, t0.Add(24*time.Hour))
	if !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("VerifyJWT at expiry = %v, want ErrTokenExpired", err)
	}
	wantErr(t, err, "token expired at 2030-01-03T03:04:05Z")

	other := newTestCA(t)
	if err := VerifyJWT(jwt, other.KeyDER, t0); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("VerifyJWT with another CA's key = %v, want ErrTokenSignature", err)
	}
	if _, err := NewToken(ca, t0, 0); err == nil {
		t.Error("NewToken with zero ttl succeeded")
	}
}

func TestVerifyJWTRejects(t *testing.T) {
	key := []byte("k")
	good, err := NewJWT(key, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	sign := func(hdr, claims string) string {
		s := enc([]byte(hdr)) + "." + enc([]byte(claims))
		return s + "." + enc(hs256(key, s))
	}
	for _, tc := range []struct {
		name, jwt, want string
		is              error
	}{
		{"two parts", parts[0] + "." + parts[1], "JWT has 2 parts", ErrTokenMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", "signature is empty", ErrTokenMalformed},
		{"not base64", parts[0] + ".!!." + parts[2], "claims is not base64url", ErrTokenMalformed},
		{"alg none", sign(`{"alg":"none"}`, `{"exp":9999999999}`), `alg "none" is not supported`, ErrTokenMalformed},
		{"header not json", sign(`[`, `{}`), "header is not JSON", ErrTokenMalformed},
		{"tampered claims", parts[0] + "." + enc([]byte(`{"exp":9999999999}`)) + "." + parts[2], "not issued by this cloud", ErrTokenSignature},
		{"no exp", sign(`{"alg":"HS256"}`, `{"iat":1}`), "no exp claim", ErrTokenMalformed},
		{"exp string", sign(`{"alg":"HS256"}`, `{"exp":"soon"}`), "claims are not JSON", ErrTokenMalformed},
		{"exp huge", sign(`{"alg":"HS256"}`, `{"exp":1e300}`), "out of range", ErrTokenMalformed},
		{"fractional exp expired", sign(`{"alg":"HS256"}`, `{"exp":1.5}`), "token expired at 1970", ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyJWT(tc.jwt, key, t0)
			wantErr(t, err, tc.want)
			if !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	if err := VerifyJWT(sign(`{"alg":"HS256"}`, `{"exp":1.9e9}`), key, t0.AddDate(-10, 0, 0)); err != nil {
		t.Errorf("float exp from another JWT library rejected: %v", err)
	}
}

func TestParseTokenRejects(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, tc := range []struct{ tok, want string }{
		{"", "no '.'"},
		{hash, "no '.'"},
		{"abc.a.b.c", "CA hash is 3 characters"},
		{strings.ToUpper(hash) + ".a.b.c", "CA hash contains 'A'"},
		{strings.Repeat("g", 64) + ".a.b.c", "CA hash contains 'g'"},
		{hash + ".a.b", "JWT has 2 parts"},
		{hash + ".a.b.c.d", "JWT has 4 parts"},
		{hash + ".e30..e30", "claims is empty"},
		{hash + ".e3+.e30.e30", "header is not base64url"},
	} {
		_, _, err := ParseToken(tc.tok)
		wantErr(t, err, tc.want)
		if !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("ParseToken(%q) error %v is not ErrTokenMalformed", tc.tok, err)
		}
	}
}
