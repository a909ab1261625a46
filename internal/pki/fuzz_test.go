package pki

import (
	"strings"
	"testing"
	"time"
)

func FuzzParseToken(f *testing.F) {
	ca, err := NewCA(t0, 0)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := NewToken(ca, t0, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("")
	f.Add(".")
	f.Add(strings.Repeat("a", 64) + "..")
	f.Add(strings.Repeat("a", 64) + ".e30.e30.AA")
	f.Add(tok[:70])
	f.Fuzz(func(t *testing.T, s string) {
		hash, jwt, err := ParseToken(s)
		if err != nil {
			return
		}
		if len(hash) != 64 || strings.Count(jwt, ".") != 2 {
			t.Fatalf("ParseToken(%q) accepted hash %q jwt %q", s, hash, jwt)
		}
		// Parsed tokens reach VerifyJWT on the server: it must not panic
		// either, and a token not signed with the CA key must not verify.
		if err := VerifyJWT(jwt, ca.KeyDER, t0); err == nil && s != tok {
			t.Fatalf("forged token %q verified", s)
		}
	})
}

func FuzzVerifyJWT(f *testing.F) {
	key := []byte("key")
	good, err := NewJWT(key, t0, t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.AA")
	f.Fuzz(func(t *testing.T, s string) {
		_ = VerifyJWT(s, key, t0)
	})
}

func FuzzParseCSR(f *testing.F) {
	key, _, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	der, err := NewNodeCSR(key, "edge-1")
	if err != nil {
		f.Fatal(err)
	}
	ca, err := NewCA(t0, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(EncodeCSRPEM(der))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := ParseCSR(body)
		if err != nil {
			return
		}
		// Whatever parses is handed to the signer by the join server.
		_, _ = ca.SignNodeCSR(csr, "edge-1", t0, 0)
	})
}

func FuzzParsePEM(f *testing.F) {
	ca, err := NewCA(t0, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeCertPEM(ca.CertDER))
	f.Add(EncodeKeyPEM(ca.KeyDER))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseCertPEM(data)
		_, _, _ = ParseKeyPEM(data)
		_, _ = LoadCA(data, data)
	})
}
