package stores

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInjected is the error a Fault returns for a rule that names no other
// effect, so tests can tell an injected failure from a real one.
var ErrInjected = errors.New("injected fault")

// Op names a Store operation a Fault rule applies to.
type Op int

// The operations a Fault can disturb.
const (
	OpGet Op = iota
	OpPut
	OpStat
	OpDelete
	OpList
	OpSync
	OpPutMeta
	OpGetMeta
	OpListMeta
	OpDeleteMeta
	numOps
)

// String returns the operation's lower-case name ("get", "put-meta").
func (op Op) String() string {
	switch op {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpStat:
		return "stat"
	case OpDelete:
		return "delete"
	case OpList:
		return "list"
	case OpSync:
		return "sync"
	case OpPutMeta:
		return "put-meta"
	case OpGetMeta:
		return "get-meta"
	case OpListMeta:
		return "list-meta"
	case OpDeleteMeta:
		return "delete-meta"
	}
	return fmt.Sprintf("op(%d)", int(op))
}

// Rule describes what a Fault does to the calls of one operation. Effects
// combine in this order: Delay, then Fail, else Drop, else Corrupt. A rule
// with no effect at all (Rule{}) fails calls with ErrInjected, so the
// shortest rule is the most common one: "this store is down".
type Rule struct {
	// Fail makes matching calls return an error wrapping Fail without
	// reaching the inner store.
	Fail error
	// Delay holds matching calls this long before anything else happens,
	// or until their context is done (then they return its error).
	Delay time.Duration
	// Corrupt flips a byte of what Get or GetMeta returns, or of what Put
	// or PutMeta stores (empty data gains a byte instead). Other operations
	// ignore it.
	Corrupt bool
	// Drop loses the call silently: Put, Delete, PutMeta and DeleteMeta
	// return nil without reaching the inner store, Get, Stat and GetMeta
	// report ErrNotFound, List and ListMeta list nothing, Sync syncs
	// nothing.
	Drop bool
	// IDs limits the rule to these chunks; empty means every chunk. List,
	// Sync and the meta operations have no id and ignore it.
	IDs []ID
	// Count limits the rule to the next Count matching calls, after which it
	// is removed; 0 means every call until Clear.
	Count int
}

// hasEffect reports whether the rule asks for anything beyond failing.
func (r Rule) hasEffect() bool {
	return r.Fail != nil || r.Delay > 0 || r.Corrupt || r.Drop
}

// activeRule is a Rule as a Fault holds it: with its ids as a set and its
// remaining count.
type activeRule struct {
	rule      Rule
	ids       map[ID]struct{}
	remaining int // only meaningful when rule.Count > 0
}

// Fault wraps a Store and misbehaves on demand, so tests can drive the tier,
// the dual manager and the filesystem through failures, slow stores, silent
// corruption and lost writes. With no rules it forwards every call
// unchanged. Rules can be changed at any time, also while calls are in
// flight; Fault is safe for concurrent use. It always implements Lister,
// Syncer and MetaStore: List forwards to the inner store or fails with an
// error wrapping errors.ErrUnsupported, Sync forwards or succeeds (a store
// that is not a Syncer has nothing to sync), and the meta calls forward or
// fail with an error wrapping ErrNoMeta.
type Fault struct {
	inner Store

	mu    sync.Mutex
	rules [numOps]*activeRule

	calls    [numOps]atomic.Int64
	injected [numOps]atomic.Int64
	// closed is the Fault's own, so List and Sync report ErrClosed even
	// when the inner store has no List or Sync to say so.
	closed atomic.Bool
}

var (
	_ Store     = (*Fault)(nil)
	_ Lister    = (*Fault)(nil)
	_ Syncer    = (*Fault)(nil)
	_ MetaStore = (*Fault)(nil)
)

// NewFault wraps inner with no rules set.
func NewFault(inner Store) *Fault {
	return &Fault{inner: inner}
}

// Inner returns the wrapped store, so a test can reach past the faults (to
// check what really got stored).
func (f *Fault) Inner() Store { return f.inner }

// Set makes r the rule for op, replacing any earlier one.
func (f *Fault) Set(op Op, r Rule) {
	if op < 0 || op >= numOps {
		return
	}
	a := &activeRule{rule: r, remaining: r.Count}
	if len(r.IDs) > 0 {
		a.ids = make(map[ID]struct{}, len(r.IDs))
		for _, id := range r.IDs {
			a.ids[id] = struct{}{}
		}
		a.rule.IDs = slices.Clone(r.IDs)
	}
	f.mu.Lock()
	f.rules[op] = a
	f.mu.Unlock()
}

// Clear removes the rules of the given operations, or all rules when none
// are given.
func (f *Fault) Clear(ops ...Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ops) == 0 {
		f.rules = [numOps]*activeRule{}
		return
	}
	for _, op := range ops {
		if op >= 0 && op < numOps {
			f.rules[op] = nil
		}
	}
}

// Calls returns how many calls of op the Fault has seen.
func (f *Fault) Calls(op Op) int64 {
	if op < 0 || op >= numOps {
		return 0
	}
	return f.calls[op].Load()
}

// Injected returns how many calls of op a rule applied to.
func (f *Fault) Injected(op Op) int64 {
	if op < 0 || op >= numOps {
		return 0
	}
	return f.injected[op].Load()
}

// take counts a call and returns the rule that applies to it, consuming one
// use of a counted rule.
func (f *Fault) take(op Op, id *ID) (Rule, bool) {
	f.calls[op].Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.rules[op]
	if a == nil {
		return Rule{}, false
	}
	if a.ids != nil && id != nil {
		if _, ok := a.ids[*id]; !ok {
			return Rule{}, false
		}
	}
	if a.rule.Count > 0 {
		a.remaining--
		if a.remaining <= 0 {
			f.rules[op] = nil
		}
	}
	f.injected[op].Add(1)
	return a.rule, true
}

// begin applies the rule for a call (ok reports whether one applies): it
// waits out the delay and returns the error the call must fail with, if any.
func (f *Fault) begin(ctx context.Context, op Op, id *ID) (r Rule, ok bool, err error) {
	return f.beginNamed(ctx, op, id, "")
}

// beginMeta is begin for a meta call: it names the object in its errors,
// and checks that the inner store keeps meta objects and that name is
// valid (so that a dropped call with a bad name still fails).
func (f *Fault) beginMeta(ctx context.Context, op Op, name string, validate bool) (MetaStore, Rule, bool, error) {
	r, ok, err := f.beginNamed(ctx, op, nil, name)
	if err != nil {
		return nil, r, ok, err
	}
	ms, can := f.inner.(MetaStore)
	if !can {
		err = ErrNoMeta
	} else if validate {
		err = ValidMetaName(name)
	}
	if err != nil {
		return nil, r, ok, fmt.Errorf("fault %s: %s %s: %w", f.inner.Name(), op, strconv.Quote(name), err)
	}
	return ms, r, ok, nil
}

// beginNamed is begin, with the meta object's name (if not "") in errors.
func (f *Fault) beginNamed(ctx context.Context, op Op, id *ID, name string) (r Rule, ok bool, err error) {
	wrap := func(err error) error {
		what := op.String()
		if id != nil {
			what += " " + id.String()
		}
		if name != "" {
			what += " " + strconv.Quote(name)
		}
		return fmt.Errorf("fault %s: %s: %w", f.inner.Name(), what, err)
	}
	if f.closed.Load() {
		return r, false, wrap(ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return r, false, wrap(err) // before any rule: a dropped call still changes nothing
	}
	r, ok = f.take(op, id)
	if !ok {
		return r, false, nil
	}
	if r.Delay > 0 {
		t := time.NewTimer(r.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return r, true, wrap(ctx.Err())
		}
	}
	switch {
	case r.Fail != nil:
		return r, true, wrap(r.Fail)
	case !r.hasEffect():
		return r, true, wrap(ErrInjected)
	}
	return r, true, nil
}

// corrupt returns a copy of data with one byte changed.
func corrupt(data []byte) []byte {
	if len(data) == 0 {
		return []byte{0xff}
	}
	out := slices.Clone(data)
	out[len(out)/2] ^= 0xff
	return out
}

// Name returns the inner store's name: a Fault stands in for it in stats.
func (f *Fault) Name() string { return f.inner.Name() }

// Type returns the inner store's type.
func (f *Fault) Type() string { return f.inner.Type() }

// Get forwards to the inner store under the OpGet rule.
func (f *Fault) Get(ctx context.Context, id ID) ([]byte, error) {
	r, ok, err := f.begin(ctx, OpGet, &id)
	if err != nil {
		return nil, err
	}
	if ok && r.Drop {
		return nil, fmt.Errorf("fault %s: get %s: dropped: %w", f.inner.Name(), id, ErrNotFound)
	}
	data, err := f.inner.Get(ctx, id)
	if err == nil && ok && r.Corrupt {
		data = corrupt(data)
	}
	return data, err
}

// Put forwards to the inner store under the OpPut rule.
func (f *Fault) Put(ctx context.Context, id ID, data []byte) error {
	r, ok, err := f.begin(ctx, OpPut, &id)
	if err != nil {
		return err
	}
	if ok && r.Drop {
		return nil
	}
	if ok && r.Corrupt {
		data = corrupt(data)
	}
	return f.inner.Put(ctx, id, data)
}

// Stat forwards to the inner store under the OpStat rule.
func (f *Fault) Stat(ctx context.Context, id ID) (int64, error) {
	r, ok, err := f.begin(ctx, OpStat, &id)
	if err != nil {
		return 0, err
	}
	if ok && r.Drop {
		return 0, fmt.Errorf("fault %s: stat %s: dropped: %w", f.inner.Name(), id, ErrNotFound)
	}
	return f.inner.Stat(ctx, id)
}

// Delete forwards to the inner store under the OpDelete rule.
func (f *Fault) Delete(ctx context.Context, id ID) error {
	r, ok, err := f.begin(ctx, OpDelete, &id)
	if err != nil {
		return err
	}
	if ok && r.Drop {
		return nil
	}
	return f.inner.Delete(ctx, id)
}

// List forwards to the inner store under the OpList rule, or fails with an
// error wrapping errors.ErrUnsupported when the inner store cannot list.
func (f *Fault) List(ctx context.Context, fn func(id ID) error) error {
	r, ok, err := f.begin(ctx, OpList, nil)
	if err != nil {
		return err
	}
	l, can := f.inner.(Lister)
	if !can {
		return fmt.Errorf("fault %s: list: %w", f.inner.Name(), errors.ErrUnsupported)
	}
	if ok && r.Drop {
		return nil
	}
	return l.List(ctx, fn)
}

// Sync forwards to the inner store under the OpSync rule. When the inner
// store is not a Syncer it has nothing buffered, and Sync succeeds.
func (f *Fault) Sync(ctx context.Context) error {
	r, ok, err := f.begin(ctx, OpSync, nil)
	if err != nil {
		return err
	}
	if ok && r.Drop {
		return nil
	}
	if s, can := f.inner.(Syncer); can {
		return s.Sync(ctx)
	}
	return nil
}

// PutMeta forwards to the inner store under the OpPutMeta rule.
func (f *Fault) PutMeta(ctx context.Context, name string, data []byte) error {
	ms, r, ok, err := f.beginMeta(ctx, OpPutMeta, name, true)
	if err != nil {
		return err
	}
	if ok && r.Drop {
		return nil
	}
	if ok && r.Corrupt {
		data = corrupt(data)
	}
	return ms.PutMeta(ctx, name, data)
}

// GetMeta forwards to the inner store under the OpGetMeta rule.
func (f *Fault) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	ms, r, ok, err := f.beginMeta(ctx, OpGetMeta, name, true)
	if err != nil {
		return nil, err
	}
	if ok && r.Drop {
		return nil, fmt.Errorf("fault %s: get-meta %q: dropped: %w", f.inner.Name(), name, ErrNotFound)
	}
	data, err := ms.GetMeta(ctx, name, max)
	if err == nil && ok && r.Corrupt {
		data = corrupt(data)
	}
	return data, err
}

// ListMeta forwards to the inner store under the OpListMeta rule.
func (f *Fault) ListMeta(ctx context.Context, prefix string) ([]MetaInfo, error) {
	ms, r, ok, err := f.beginMeta(ctx, OpListMeta, prefix, false)
	if err != nil {
		return nil, err
	}
	if ok && r.Drop {
		return nil, nil
	}
	return ms.ListMeta(ctx, prefix)
}

// DeleteMeta forwards to the inner store under the OpDeleteMeta rule.
func (f *Fault) DeleteMeta(ctx context.Context, name string) error {
	ms, r, ok, err := f.beginMeta(ctx, OpDeleteMeta, name, true)
	if err != nil {
		return err
	}
	if ok && r.Drop {
		return nil
	}
	return ms.DeleteMeta(ctx, name)
}

// Close closes the inner store; rules do not apply to it.
func (f *Fault) Close() error {
	f.closed.Store(true)
	return f.inner.Close()
}
