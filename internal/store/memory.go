package store

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Memory is a Store in memory with the same semantics as SQLite (validation,
// errors, ordering, copying of values), for unit tests of other packages.
// Nothing survives Close.
type Memory struct {
	mu      sync.RWMutex
	objects map[memKey]Object // guarded by mu; values are private copies
	closed  bool              // guarded by mu
}

type memKey struct{ typ, namespace, name string }

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{objects: make(map[memKey]Object)}
}

// Apply implements Store.
func (m *Memory) Apply(ctx context.Context, changes []Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("store: apply: %w", ErrClosed)
	}
	if err := validateChanges(changes); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: apply: begin: %w", err)
	}
	for _, c := range changes {
		o := c.Object
		k := memKey{o.Type, o.Namespace, o.Name}
		switch c.Op {
		case OpPut:
			o.Value = clone(o.Value)
			m.objects[k] = o
		case OpDelete:
			delete(m.objects, k)
		}
	}
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, typ, namespace, name string) (Object, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Object{}, fmt.Errorf("store: get: %w", ErrClosed)
	}
	if err := validateGet(typ, namespace, name); err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("store: get %s: %w", keyString(typ, namespace, name), err)
	}
	o, ok := m.objects[memKey{typ, namespace, name}]
	if !ok {
		return Object{}, notFound(typ, namespace, name)
	}
	o.Value = clone(o.Value)
	return o, nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context, typ, namespace string) ([]Object, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("store: list: %w", ErrClosed)
	}
	if err := validateList(typ, namespace); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list type %q namespace %q: %w", typ, namespace, err)
	}
	var out []Object
	for k, o := range m.objects {
		if k.typ == typ && (namespace == "" || k.namespace == namespace) {
			o.Value = clone(o.Value)
			out = append(out, o)
		}
	}
	// Byte-wise string order is SQLite's BINARY collation on UTF-8 text.
	sort.Slice(out, func(i, j int) bool {
		if c := strings.Compare(out[i].Namespace, out[j].Namespace); c != 0 {
			return c < 0
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Count implements Store.
func (m *Memory) Count(ctx context.Context) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, fmt.Errorf("store: count: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return len(m.objects), nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.objects = nil
	return nil
}

// clone copies v so that neither the caller nor the store sees the other's
// later writes; empty values become nil, as SQLite reads them back.
func clone(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return bytes.Clone(v)
}
