package stores

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// OpStats counts one kind of operation.
type OpStats struct {
	OK     int64 `json:"ok"`
	Errors int64 `json:"errors"`
	Bytes  int64 `json:"bytes"`
}

// ReadStats counts reads the way `zpool status` counts them per disk:
// failed reads and reads that returned bad data are kept apart.
type ReadStats struct {
	OK int64 `json:"ok"`
	// Errors counts reads that failed, including chunks the store did not
	// have (a read the index sends to a tier should find its chunk).
	Errors int64 `json:"errors"`
	// NotFound is the part of Errors where the chunk was missing.
	NotFound int64 `json:"not_found"`
	// ChecksumErrors counts reads that returned data failing verification
	// or that the store itself reported as ErrCorrupt. They are not in
	// Errors.
	ChecksumErrors int64 `json:"checksum_errors"`
	Bytes          int64 `json:"bytes"`
}

// MemberStats is the snapshot of one store of a tier.
type MemberStats struct {
	Name     string        `json:"name"`
	Type     string        `json:"type"`
	Writes   OpStats       `json:"writes"`
	Reads    ReadStats     `json:"reads"`
	WriteP50 time.Duration `json:"-"`
	WriteP99 time.Duration `json:"-"`
	ReadP50  time.Duration `json:"-"`
	ReadP99  time.Duration `json:"-"`
	WriteState
}

// TierStats is a snapshot of a tier's counters. At tier level a read is OK
// when any member answered with good data, an error when none did, and
// ChecksumErrors is the sum over the members (a tier can succeed while a
// member returned bad data, and that must still show). Latencies are those
// of whole tier calls, failover included.
type TierStats struct {
	Name     string        `json:"name"`
	Writes   OpStats       `json:"writes"`
	Reads    ReadStats     `json:"reads"`
	WriteP50 time.Duration `json:"-"`
	WriteP99 time.Duration `json:"-"`
	ReadP50  time.Duration `json:"-"`
	ReadP99  time.Duration `json:"-"`
	WriteState
	Stores []MemberStats `json:"stores"`
}

// WriteState is the latency histograms and when writes last succeeded
// and failed, for monitoring (not in the JSON of the stats): a store
// whose last write failed is failing now, whatever its totals say.
type WriteState struct {
	WriteLatency LatencyHistogram `json:"-"`
	ReadLatency  LatencyHistogram `json:"-"`
	// LastWriteOK and LastWriteError are the ends of the last write that
	// succeeded and of the last that failed (zero: none since the start
	// or the last ResetStats). Cancelled writes count as neither.
	LastWriteOK    time.Time `json:"-"`
	LastWriteError time.Time `json:"-"`
}

// WritesFailing reports whether the last write ended in an error.
func (w WriteState) WritesFailing() bool { return w.LastWriteError.After(w.LastWriteOK) }

// counters are the atomics behind OpStats, ReadStats and the latencies.
type counters struct {
	writesOK, writesErr, writesBytes                       atomic.Int64
	readsOK, readsErr, readsNotFound, readsBad, readsBytes atomic.Int64
	readLatency, writeLatency                              Latency
	lastWriteOK, lastWriteErr                              atomic.Int64 // unix nanoseconds
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (c *counters) writeState() WriteState {
	return WriteState{
		WriteLatency: c.writeLatency.Histogram(), ReadLatency: c.readLatency.Histogram(),
		LastWriteOK: unixTime(c.lastWriteOK.Load()), LastWriteError: unixTime(c.lastWriteErr.Load()),
	}
}

func (c *counters) writes() OpStats {
	return OpStats{OK: c.writesOK.Load(), Errors: c.writesErr.Load(), Bytes: c.writesBytes.Load()}
}

func (c *counters) reads() ReadStats {
	return ReadStats{
		OK:             c.readsOK.Load(),
		Errors:         c.readsErr.Load(),
		NotFound:       c.readsNotFound.Load(),
		ChecksumErrors: c.readsBad.Load(),
		Bytes:          c.readsBytes.Load(),
	}
}

func (c *counters) reset() {
	for _, v := range []*atomic.Int64{
		&c.writesOK, &c.writesErr, &c.writesBytes,
		&c.readsOK, &c.readsErr, &c.readsNotFound, &c.readsBad, &c.readsBytes,
		&c.lastWriteOK, &c.lastWriteErr,
	} {
		v.Store(0)
	}
	c.readLatency.Reset()
	c.writeLatency.Reset()
}

// Tier is an ordered list of stores acting as one (the primary or the safety
// tier): writes go to the first member that takes them, reads try members in
// order until one returns data that verifies. It implements Store, Lister,
// Syncer and MetaStore (through the members that keep meta objects), keeps
// per-member and per-tier counters, and is safe for concurrent use.
type Tier struct {
	name    string
	members []Store
	verify  func(id ID, data []byte) bool

	stats  []counters // one per member
	total  counters
	closed atomic.Bool
}

var (
	_ Store     = (*Tier)(nil)
	_ Lister    = (*Tier)(nil)
	_ Syncer    = (*Tier)(nil)
	_ MetaStore = (*Tier)(nil)
)

// NewTier returns a tier of members, tried in the given order. verify checks
// that data read from a member is the chunk id names (it hashes data); a
// member whose data fails it is counted as a checksum error and the next
// member is tried. A nil verify accepts everything.
func NewTier(name string, members []Store, verify func(id ID, data []byte) bool) *Tier {
	return &Tier{
		name:    name,
		members: append([]Store(nil), members...),
		verify:  verify,
		stats:   make([]counters, len(members)),
	}
}

// Name returns the tier's name ("primary", "safety").
func (t *Tier) Name() string { return t.name }

// Type returns "tier".
func (t *Tier) Type() string { return "tier" }

// Members returns the tier's stores in order. The slice is a copy.
func (t *Tier) Members() []Store { return append([]Store(nil), t.members...) }

// check reports why an operation may not start.
func (t *Tier) check(ctx context.Context, op string, id *ID) error {
	var err error
	if t.closed.Load() {
		err = ErrClosed
	} else {
		err = ctx.Err()
	}
	if err == nil {
		return nil
	}
	if id == nil {
		return fmt.Errorf("tier %s: %s: %w", t.name, op, err)
	}
	return fmt.Errorf("tier %s: %s %s: %w", t.name, op, id, err)
}

// cancelled reports whether err only says that the caller gave up (ctx is
// done). Such failures say nothing about the store and are not counted:
// reads that lose a `fastest` race are cancelled on purpose.
// A deadline whose cause is ErrTimeout is different: it is the store
// taking too long, a fault that must show in the store's error counters.
func cancelled(ctx context.Context, err error) bool {
	if ctx.Err() == nil || errors.Is(context.Cause(ctx), ErrTimeout) {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Put writes data to the first member that accepts it. When all fail the
// error joins every member's error.
func (t *Tier) Put(ctx context.Context, id ID, data []byte) error {
	if err := t.check(ctx, "put", &id); err != nil {
		return err
	}
	start := time.Now()
	var errs []error
	for i, m := range t.members {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		c := &t.stats[i]
		mstart := time.Now()
		err := m.Put(ctx, id, data)
		c.writeLatency.Observe(time.Since(mstart))
		if err == nil {
			now := time.Now().UnixNano()
			c.writesOK.Add(1)
			c.writesBytes.Add(int64(len(data)))
			c.lastWriteOK.Store(now)
			t.total.writesOK.Add(1)
			t.total.writesBytes.Add(int64(len(data)))
			t.total.lastWriteOK.Store(now)
			t.total.writeLatency.Observe(time.Since(start))
			return nil
		}
		if !cancelled(ctx, err) {
			c.writesErr.Add(1)
			c.lastWriteErr.Store(time.Now().UnixNano())
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
	}
	t.total.writeLatency.Observe(time.Since(start))
	if len(errs) == 0 {
		return fmt.Errorf("tier %s: put %s: tier has no stores", t.name, id)
	}
	joined := errors.Join(errs...)
	if !cancelled(ctx, joined) {
		t.total.writesErr.Add(1)
		t.total.lastWriteErr.Store(time.Now().UnixNano())
	}
	return fmt.Errorf("tier %s: put %s: %w", t.name, id, joined)
}

// outcome classifies why a member could not serve a read.
type outcome int

const (
	missing outcome = iota // the member does not hold the chunk
	bad                    // the member returned data that is not the chunk
	failed                 // the member could not answer
)

// memberError is one member's failure to serve a read.
type memberError struct {
	kind outcome
	err  error
}

// readError builds the error of a read no member could serve. It wraps
// ErrNotFound only when every member said not found, since a caller that
// sees ErrNotFound concludes the chunk is gone, not that a store is down; it
// wraps ErrCorrupt when any member returned bad data, and the other members'
// errors otherwise.
// what names the call and its chunk or object ("get <id>").
func (t *Tier) readError(what string, merrs []memberError) error {
	if len(merrs) == 0 {
		return fmt.Errorf("tier %s: %s: tier has no stores: %w", t.name, what, ErrNotFound)
	}
	allMissing := true
	for _, me := range merrs {
		if me.kind != missing {
			allMissing = false
		}
	}
	errs := make([]error, 0, len(merrs))
	for _, me := range merrs {
		if me.kind == missing && !allMissing {
			// Keep the message, drop the ErrNotFound it wraps.
			errs = append(errs, errors.New(me.err.Error()))
			continue
		}
		errs = append(errs, me.err)
	}
	return fmt.Errorf("tier %s: %s: %w", t.name, what, errors.Join(errs...))
}

// Get returns the chunk from the first member whose data verifies.
func (t *Tier) Get(ctx context.Context, id ID) ([]byte, error) {
	if err := t.check(ctx, "get", &id); err != nil {
		return nil, err
	}
	start := time.Now()
	var merrs []memberError
	for i, m := range t.members {
		if err := ctx.Err(); err != nil {
			merrs = append(merrs, memberError{failed, err})
			break
		}
		c := &t.stats[i]
		mstart := time.Now()
		data, err := m.Get(ctx, id)
		c.readLatency.Observe(time.Since(mstart))
		switch {
		case err == nil && (t.verify == nil || t.verify(id, data)):
			c.readsOK.Add(1)
			c.readsBytes.Add(int64(len(data)))
			t.total.readsOK.Add(1)
			t.total.readsBytes.Add(int64(len(data)))
			t.total.readLatency.Observe(time.Since(start))
			return data, nil
		case err == nil:
			c.readsBad.Add(1)
			t.total.readsBad.Add(1)
			merrs = append(merrs, memberError{bad, fmt.Errorf("%s: %w: data does not match its id", m.Name(), ErrCorrupt)})
		case errors.Is(err, ErrCorrupt):
			c.readsBad.Add(1)
			t.total.readsBad.Add(1)
			merrs = append(merrs, memberError{bad, fmt.Errorf("%s: %w", m.Name(), err)})
		case errors.Is(err, ErrNotFound):
			c.readsErr.Add(1)
			c.readsNotFound.Add(1)
			merrs = append(merrs, memberError{missing, fmt.Errorf("%s: %w", m.Name(), err)})
		default:
			if !cancelled(ctx, err) {
				c.readsErr.Add(1)
			}
			merrs = append(merrs, memberError{failed, fmt.Errorf("%s: %w", m.Name(), err)})
		}
	}
	t.total.readLatency.Observe(time.Since(start))
	err := t.readError("get "+id.String(), merrs)
	if !cancelled(ctx, err) {
		t.total.readsErr.Add(1)
		if errors.Is(err, ErrNotFound) {
			t.total.readsNotFound.Add(1)
		}
	}
	return nil, err
}

// Stat returns the size reported by the first member that holds the chunk.
// Stat is how callers ask "is it there?", so misses are not counted as read
// errors.
func (t *Tier) Stat(ctx context.Context, id ID) (int64, error) {
	if err := t.check(ctx, "stat", &id); err != nil {
		return 0, err
	}
	var merrs []memberError
	for _, m := range t.members {
		if err := ctx.Err(); err != nil {
			merrs = append(merrs, memberError{failed, err})
			break
		}
		size, err := m.Stat(ctx, id)
		switch {
		case err == nil:
			return size, nil
		case errors.Is(err, ErrNotFound):
			merrs = append(merrs, memberError{missing, fmt.Errorf("%s: %w", m.Name(), err)})
		case errors.Is(err, ErrCorrupt):
			merrs = append(merrs, memberError{bad, fmt.Errorf("%s: %w", m.Name(), err)})
		default:
			merrs = append(merrs, memberError{failed, fmt.Errorf("%s: %w", m.Name(), err)})
		}
	}
	return 0, t.readError("stat "+id.String(), merrs)
}

// Delete removes the chunk from every member, since failover may have put it
// in any of them. Members that do not hold it are fine.
func (t *Tier) Delete(ctx context.Context, id ID) error { return t.deleteFrom(ctx, id, false) }

// deleteFrom deletes id from every member, or (owned) from the members
// that are not shared.
func (t *Tier) deleteFrom(ctx context.Context, id ID, owned bool) error {
	if err := t.check(ctx, "delete", &id); err != nil {
		return err
	}
	var errs []error
	for _, m := range t.members {
		if owned && IsShared(m) {
			continue
		}
		if err := m.Delete(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tier %s: delete %s: %w", t.name, id, err)
	}
	return nil
}

// List calls fn once for every chunk any member holds. Members that cannot
// list (not Listers, or whose List wraps errors.ErrUnsupported) are skipped;
// if no member can list, List fails with an error wrapping
// errors.ErrUnsupported. Listing several members remembers every id seen, to
// report each once.
func (t *Tier) List(ctx context.Context, fn func(id ID) error) error {
	if err := t.check(ctx, "list", nil); err != nil {
		return err
	}
	var listers []Lister
	var names []string
	for _, m := range t.members {
		if l, ok := m.(Lister); ok {
			listers = append(listers, l)
			names = append(names, m.Name())
		}
	}
	var (
		mu     sync.Mutex // in case a member lists concurrently
		seen   map[ID]struct{}
		fnErr  error
		listed bool
	)
	if len(listers) > 1 {
		seen = make(map[ID]struct{})
	}
	each := func(id ID) error {
		mu.Lock()
		defer mu.Unlock()
		if fnErr != nil {
			return fnErr
		}
		if seen != nil {
			if _, dup := seen[id]; dup {
				return nil
			}
			seen[id] = struct{}{}
		}
		fnErr = fn(id)
		return fnErr
	}
	for i, l := range listers {
		err := l.List(ctx, each)
		mu.Lock()
		stop := fnErr
		mu.Unlock()
		if stop != nil {
			return stop
		}
		if errors.Is(err, errors.ErrUnsupported) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tier %s: list: %s: %w", t.name, names[i], err)
		}
		listed = true
	}
	if !listed {
		return fmt.Errorf("tier %s: list: no store of the tier can list: %w", t.name, errors.ErrUnsupported)
	}
	return nil
}

// Sync syncs every member that buffers durability.
func (t *Tier) Sync(ctx context.Context) error {
	if err := t.check(ctx, "sync", nil); err != nil {
		return err
	}
	var errs []error
	for _, m := range t.members {
		if s, ok := m.(Syncer); ok {
			if err := s.Sync(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tier %s: sync: %w", t.name, err)
	}
	return nil
}

// Close closes every member.
func (t *Tier) Close() error {
	if t.closed.Swap(true) {
		return fmt.Errorf("tier %s: close: %w", t.name, ErrClosed)
	}
	var errs []error
	for _, m := range t.members {
		if err := m.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tier %s: close: %w", t.name, err)
	}
	return nil
}

// Stats returns a snapshot of the tier's counters.
func (t *Tier) Stats() TierStats {
	s := TierStats{
		Name:     t.name,
		Writes:   t.total.writes(),
		Reads:    t.total.reads(),
		WriteP50: t.total.writeLatency.Quantile(0.5),
		WriteP99: t.total.writeLatency.Quantile(0.99),
		ReadP50:  t.total.readLatency.Quantile(0.5),
		ReadP99:  t.total.readLatency.Quantile(0.99),
		Stores:   make([]MemberStats, len(t.members)),
	}
	s.WriteState = t.total.writeState()
	for i, m := range t.members {
		c := &t.stats[i]
		s.Stores[i] = MemberStats{
			Name:     m.Name(),
			Type:     m.Type(),
			Writes:   c.writes(),
			Reads:    c.reads(),
			WriteP50: c.writeLatency.Quantile(0.5),
			WriteP99: c.writeLatency.Quantile(0.99),
			ReadP50:  c.readLatency.Quantile(0.5),
			ReadP99:  c.readLatency.Quantile(0.99),
		}
		s.Stores[i].WriteState = c.writeState()
	}
	return s
}

// ResetStats zeroes every counter of the tier and its members.
func (t *Tier) ResetStats() {
	t.total.reset()
	for i := range t.stats {
		t.stats[i].reset()
	}
}

// DeleteOwned is Delete on the members that are not shared (stores.Sharer):
// what gc removes, it removes only where no other tool may need it.
func (t *Tier) DeleteOwned(ctx context.Context, id ID) error { return t.deleteFrom(ctx, id, true) }

// Owned returns the tier's members that are not shared.
func (t *Tier) Owned() []Store {
	var out []Store
	for _, m := range t.members {
		if !IsShared(m) {
			out = append(out, m)
		}
	}
	return out
}
