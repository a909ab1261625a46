package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEncryptedSecretsAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.db")
	key, err := LoadOrCreateKey(filepath.Join(dir, "keys", "store.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "keys", "store.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if again, err := LoadOrCreateKey(filepath.Join(dir, "keys", "store.key")); err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second load returned another key (%v)", err)
	}
	raw, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// A secret written before encryption was turned on.
	legacy := Object{Type: "secret", Namespace: "ns", Name: "old", Value: []byte(`{"data":{"k":"b2xk"}}`)}
	if err := raw.Apply(ctx, []Change{{Op: OpPut, Object: legacy}}); err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncrypted(raw, key, "secret")
	if err != nil {
		t.Fatal(err)
	}
	secret := Object{Type: "secret", Namespace: "ns", Name: "db", ResourceVersion: "7", Value: []byte(`{"data":{"password":"aHVudGVyMg=="}}`)}
	cm := Object{Type: "configmap", Namespace: "ns", Name: "cfg", Value: []byte(`{"data":{"a":"visible"}}`)}
	if err := enc.Apply(ctx, []Change{{Op: OpPut, Object: secret}, {Op: OpPut, Object: cm}}); err != nil {
		t.Fatal(err)
	}
	got, err := enc.Get(ctx, "secret", "ns", "db")
	if err != nil || !bytes.Equal(got.Value, secret.Value) || got.ResourceVersion != "7" {
		t.Fatalf("round trip %q %v", got.Value, err)
	}
	list, err := enc.List(ctx, "secret", "ns")
	if err != nil || len(list) != 2 || !bytes.Equal(list[0].Value, secret.Value) || !bytes.Equal(list[1].Value, legacy.Value) {
		t.Fatalf("list %v %v", list, err)
	}
	// At rest: sealed in the database, configmaps untouched.
	stored, _ := raw.Get(ctx, "secret", "ns", "db")
	if bytes.Contains(stored.Value, []byte("aHVudGVyMg")) || !bytes.HasPrefix(stored.Value, []byte(encMagic)) {
		t.Fatalf("secret stored in clear: %q", stored.Value)
	}
	if storedCM, _ := raw.Get(ctx, "configmap", "ns", "cfg"); !bytes.Equal(storedCM.Value, cm.Value) {
		t.Errorf("configmap changed at rest: %q", storedCM.Value)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	dbBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if wal, err := os.ReadFile(path + "-wal"); err == nil {
		dbBytes = append(dbBytes, wal...)
	}
	if bytes.Contains(dbBytes, []byte("aHVudGVyMg")) {
		t.Fatal("the database file holds the secret in clear text")
	}

	// A sealed value moved to another key, or read with another key, fails clearly.
	raw2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	moved := stored
	moved.Name = "elsewhere"
	if err := raw2.Apply(ctx, []Change{{Op: OpPut, Object: moved}}); err != nil {
		t.Fatal(err)
	}
	enc2, _ := NewEncrypted(raw2, key, "secret")
	if _, err := enc2.Get(ctx, "secret", "ns", "elsewhere"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("moved value: %v, want ErrDecrypt", err)
	}
	other := bytes.Repeat([]byte{7}, 32)
	enc3, _ := NewEncrypted(raw2, other, "secret")
	if _, err := enc3.Get(ctx, "secret", "ns", "db"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: %v, want ErrDecrypt", err)
	}
	if _, err := NewEncrypted(raw2, []byte("short"), "secret"); err == nil {
		t.Error("a short key was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "bad.key")); err == nil {
		t.Error("a 5-byte key file was accepted")
	}
}

func FuzzEncryptedOpen(f *testing.F) {
	key := bytes.Repeat([]byte{1}, 32)
	enc, err := NewEncrypted(NewMemory(), key, "secret")
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := enc.seal(Object{Type: "secret", Namespace: "n", Name: "s", Value: []byte("v")})
	f.Add(sealed.Value)
	f.Add([]byte(encMagic))
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, value []byte) {
		o, err := enc.open(Object{Type: "secret", Namespace: "n", Name: "s", Value: value})
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error %v does not wrap ErrDecrypt", err)
			}
			return
		}
		if !bytes.HasPrefix(value, []byte(encMagic)) && !bytes.Equal(o.Value, value) {
			t.Fatal("a clear-text value was changed")
		}
	})
}
