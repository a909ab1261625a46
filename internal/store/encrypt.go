package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// encMagic prefixes every encrypted value; the byte after it is the format
// version. Values without it were written before encryption was on and are
// read as they are.
const encMagic = "kee\x01"

// ErrDecrypt: a stored value could not be decrypted with this key (wrong
// key file, or the value was tampered with or moved to another key).
var ErrDecrypt = errors.New("store: cannot decrypt value")

// Encrypted wraps a Store so that the values of the given types (secrets,
// service-account tokens) are sealed with AES-256-GCM before they reach the
// database. The object's key (type, namespace, name) is the additional
// data, so a sealed value cannot be moved to another key unnoticed. Keys,
// resource versions and the values of other types stay in clear text, so
// listing and ordering are unchanged.
//
// It protects a copied or stolen database file; it cannot protect against
// someone who can also read the key file (or the memory of edgecore).
type Encrypted struct {
	Store // the methods not overridden pass through
	aead  cipher.AEAD
	types map[string]bool
}

// NewEncrypted wraps inner; key must be 32 bytes.
func NewEncrypted(inner Store, key []byte, types ...string) (*Encrypted, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: encryption key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	e := &Encrypted{Store: inner, aead: aead, types: map[string]bool{}}
	for _, t := range types {
		e.types[t] = true
	}
	return e, nil
}

// LoadOrCreateKey reads a 32-byte key from path, creating it (0600, in a
// 0700 directory) with random bytes when it does not exist.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(key) != 32 {
			return nil, fmt.Errorf("store: key file %s holds %d bytes, want 32", path, len(key))
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("store: read key file: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: key file directory: %w", err)
	}
	// O_EXCL: two processes creating it at once must not end with two keys.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: create key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("store: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("store: write key file: %w", err)
	}
	return key, f.Close()
}

func additionalData(o Object) []byte {
	return []byte(o.Type + "\x00" + o.Namespace + "\x00" + o.Name)
}

func (e *Encrypted) seal(o Object) (Object, error) {
	if !e.types[o.Type] || len(o.Value) == 0 {
		return o, nil
	}
	nonce := make([]byte, e.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return o, err
	}
	out := make([]byte, 0, len(encMagic)+len(nonce)+len(o.Value)+e.aead.Overhead())
	out = append(out, encMagic...)
	out = append(out, nonce...)
	o.Value = e.aead.Seal(out, nonce, o.Value, additionalData(o))
	return o, nil
}

func (e *Encrypted) open(o Object) (Object, error) {
	if !e.types[o.Type] || len(o.Value) < len(encMagic) || string(o.Value[:len(encMagic)]) != encMagic {
		return o, nil
	}
	rest := o.Value[len(encMagic):]
	n := e.aead.NonceSize()
	if len(rest) < n {
		return o, fmt.Errorf("%w: %s: value too short", ErrDecrypt, keyString(o.Type, o.Namespace, o.Name))
	}
	plain, err := e.aead.Open(nil, rest[:n], rest[n:], additionalData(o))
	if err != nil {
		return o, fmt.Errorf("%w: %s: %v", ErrDecrypt, keyString(o.Type, o.Namespace, o.Name), err)
	}
	o.Value = plain
	return o, nil
}

// Apply implements Store, sealing the values of encrypted types.
func (e *Encrypted) Apply(ctx context.Context, changes []Change) error {
	sealed := make([]Change, len(changes))
	for i, c := range changes {
		if c.Op == OpPut {
			o, err := e.seal(c.Object)
			if err != nil {
				return fmt.Errorf("store: encrypt: %w", err)
			}
			c.Object = o
		}
		sealed[i] = c
	}
	return e.Store.Apply(ctx, sealed)
}

// Get implements Store.
func (e *Encrypted) Get(ctx context.Context, typ, namespace, name string) (Object, error) {
	o, err := e.Store.Get(ctx, typ, namespace, name)
	if err != nil {
		return o, err
	}
	return e.open(o)
}

// List implements Store. A value that does not decrypt fails the List,
// naming the object: serving it as if it were clear text would hand
// ciphertext to a pod.
func (e *Encrypted) List(ctx context.Context, typ, namespace string) ([]Object, error) {
	objs, err := e.Store.List(ctx, typ, namespace)
	if err != nil || !e.types[typ] {
		return objs, err
	}
	for i := range objs {
		if objs[i], err = e.open(objs[i]); err != nil {
			return nil, err
		}
	}
	return objs, nil
}
