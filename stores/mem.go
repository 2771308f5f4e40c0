package stores

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Mem is a Store that keeps chunks in memory, for tests and for wiring
// examples. It copies data on the way in and out, so callers can never alias
// what it holds, and it implements Lister and MetaStore (its meta objects
// are a map of their own, which List never sees).
type Mem struct {
	name string

	mu     sync.RWMutex
	chunks map[ID][]byte
	meta   map[string][]byte
	closed bool
}

var (
	_ Store     = (*Mem)(nil)
	_ Lister    = (*Mem)(nil)
	_ MetaStore = (*Mem)(nil)
)

// NewMem returns an empty in-memory store called name.
func NewMem(name string) *Mem {
	return &Mem{name: name, chunks: make(map[ID][]byte), meta: make(map[string][]byte)}
}

// Name returns the name given to NewMem.
func (m *Mem) Name() string { return m.name }

// Type returns "mem".
func (m *Mem) Type() string { return "mem" }

// check reports why an operation may not run: a closed store or a done ctx.
// The caller holds m.mu.
func (m *Mem) check(ctx context.Context, op string, id ID) error {
	if m.closed {
		return fmt.Errorf("mem %s: %s %s: %w", m.name, op, id, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem %s: %s %s: %w", m.name, op, id, err)
	}
	return nil
}

// Get returns a copy of the chunk; one that is not of the size its bound
// allows (BoundOf) is ErrCorrupt.
func (m *Mem) Get(ctx context.Context, id ID) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "get", id); err != nil {
		return nil, err
	}
	data, ok := m.chunks[id]
	if !ok {
		return nil, fmt.Errorf("mem %s: get %s: %w", m.name, id, ErrNotFound)
	}
	if err := BoundOf(ctx, id).Check(int64(len(data))); err != nil {
		return nil, fmt.Errorf("mem %s: get %s: %w", m.name, id, err)
	}
	return append([]byte{}, data...), nil
}

// Put stores a copy of data under id unless id is already held.
func (m *Mem) Put(ctx context.Context, id ID, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "put", id); err != nil {
		return err
	}
	if _, ok := m.chunks[id]; !ok {
		m.chunks[id] = append([]byte{}, data...)
	}
	return nil
}

// Stat returns the chunk's size; one past its bound's max is ErrCorrupt.
func (m *Mem) Stat(ctx context.Context, id ID) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx, "stat", id); err != nil {
		return 0, err
	}
	data, ok := m.chunks[id]
	if !ok {
		return 0, fmt.Errorf("mem %s: stat %s: %w", m.name, id, ErrNotFound)
	}
	if max := BoundOf(ctx, id).Max; int64(len(data)) > max {
		return 0, fmt.Errorf("mem %s: stat %s: %w: %d bytes, more than any chunk (%d)", m.name, id, ErrCorrupt, len(data), max)
	}
	return int64(len(data)), nil
}

// Delete forgets the chunk; a missing chunk is not an error.
func (m *Mem) Delete(ctx context.Context, id ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, "delete", id); err != nil {
		return err
	}
	delete(m.chunks, id)
	return nil
}

// List calls fn for every chunk held when List started. fn runs without the
// store's lock held, so it may call back into the store (gc deletes while it
// lists).
func (m *Mem) List(ctx context.Context, fn func(id ID) error) error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return fmt.Errorf("mem %s: list: %w", m.name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		m.mu.RUnlock()
		return fmt.Errorf("mem %s: list: %w", m.name, err)
	}
	ids := make([]ID, 0, len(m.chunks))
	for id := range m.chunks {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem %s: list: %w", m.name, err)
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// checkMeta is check for a meta object: a closed store, a done ctx or a
// bad name. The caller holds m.mu.
func (m *Mem) checkMeta(ctx context.Context, op, name string) error {
	var err error
	switch {
	case m.closed:
		err = ErrClosed
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		err = ValidMetaName(name)
	}
	if err != nil {
		return fmt.Errorf("mem %s: %s %q: %w", m.name, op, name, err)
	}
	return nil
}

// PutMeta stores a copy of data under name, replacing what was there.
func (m *Mem) PutMeta(ctx context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMeta(ctx, "put meta", name); err != nil {
		return err
	}
	m.meta[name] = append([]byte{}, data...)
	return nil
}

// GetMeta returns a copy of the meta object, refusing one larger than max
// bytes.
func (m *Mem) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.checkMeta(ctx, "get meta", name); err != nil {
		return nil, err
	}
	data, ok := m.meta[name]
	if !ok {
		return nil, fmt.Errorf("mem %s: get meta %q: %w", m.name, name, ErrNotFound)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("mem %s: get meta %q: %w: %d bytes, more than the %d allowed", m.name, name, ErrCorrupt, len(data), max)
	}
	return append([]byte{}, data...), nil
}

// ListMeta returns the meta objects whose names start with prefix, sorted
// by name.
func (m *Mem) ListMeta(ctx context.Context, prefix string) ([]MetaInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("mem %s: list meta: %w", m.name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mem %s: list meta: %w", m.name, err)
	}
	var out []MetaInfo
	for name, data := range m.meta {
		if strings.HasPrefix(name, prefix) {
			out = append(out, MetaInfo{Name: name, Size: int64(len(data))})
		}
	}
	slices.SortFunc(out, func(a, b MetaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteMeta forgets the meta object; a missing one is not an error.
func (m *Mem) DeleteMeta(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkMeta(ctx, "delete meta", name); err != nil {
		return err
	}
	delete(m.meta, name)
	return nil
}

// Close makes every later call fail with ErrClosed and drops the chunks
// and meta objects.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("mem %s: close: %w", m.name, ErrClosed)
	}
	m.closed = true
	m.chunks = nil
	m.meta = nil
	return nil
}

// Len returns the number of chunks held, so tests can check what reached the
// store (or, behind a dropping Fault, what did not).
func (m *Mem) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.chunks)
}
