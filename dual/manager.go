package dual

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/stores"
)

// Tier names, as used in stats, pending records and logs.
const (
	TierPrimary = "primary"
	TierSafety  = "safety"
)

// Pending is the durable list of chunks a tier is missing after a
// one-sided write failure. The index implements it; it must survive a
// restart so the backfill can finish what a crash interrupted.
type Pending interface {
	AddPending(ctx context.Context, tier string, ids []stores.ID) error
	RemovePending(ctx context.Context, tier string, id stores.ID) error
	ListPending(ctx context.Context, tier string, limit int) ([]stores.ID, error)
	CountPending(ctx context.Context) (map[string]int64, error)
}

// ErrWrite is wrapped by a Put error that the require policy does not
// accept: the chunk is not safely stored and nothing may point at it.
var ErrWrite = errors.New("chunk write failed")

// Manager writes every chunk to the primary and the safety tier, reads
// from the preferred tier with verification, fallback and self-heal, and
// keeps the counters the monitor shows. It implements stores.Store, so it
// can stand wherever a store can. Safe for concurrent use.
type Manager struct {
	tiers   [2]*stores.Tier // 0 primary, 1 safety
	pending Pending
	opts    Options
	log     zerolog.Logger
	pref    atomic.Int32
	sem     chan struct{}
	start   time.Time

	ctr counters

	backfillKick chan struct{}
	pendingCount atomic.Int64
	pendingSince atomic.Int64 // see notePending
	stop         chan struct{}
	stopOnce     sync.Once
	wg           sync.WaitGroup
	closed       atomic.Bool

	// pendingMu orders every change of the durable list with its update
	// of pendingCount, so a refresh never stores a count that a concurrent
	// one-sided write or backfill has already changed.
	pendingMu sync.Mutex

	lastCompare atomic.Pointer[Report]
	record      atomic.Pointer[CompareRecord] // where setLastCompare saves it (RecordCompares)
	scrubbing   atomic.Bool                   // a Run or StartScrub is in progress

	// backingOff is set while the backfill waits longer than its interval
	// after failed rounds; lastRound is when a round last started (unix ns).
	backingOff atomic.Bool
	lastRound  atomic.Int64

	holds holds // chunks that writes in flight are about to reference (gc.go)
}

type counters struct {
	putOK, putErr     atomic.Int64
	getOK, getErr     atomic.Int64
	fallbacks         atomic.Int64
	selfHeals         atomic.Int64
	selfHealErrors    atomic.Int64
	verifyFailures    atomic.Int64
	oneSided          atomic.Int64
	backfilled        atomic.Int64
	backfillErrors    atomic.Int64
	logicalBytesRead  atomic.Int64
	logicalBytesWrite atomic.Int64
}

var _ stores.Store = (*Manager)(nil)

// New builds a manager over a primary and a safety tier, which must be
// built with NewTier (reads verified against opts.Hash). pending may be
// nil only when no one-sided write can be accepted (require both, or
// write_to_both off); otherwise it is required. Call Start to run the
// background backfill and Close to stop it.
func New(primary, safety *stores.Tier, pending Pending, opts Options, log zerolog.Logger) (*Manager, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if primary == nil || safety == nil {
		return nil, errors.New("dual: both a primary and a safety tier are required")
	}
	if pending == nil && opts.WriteToBoth && opts.Require != RequireBoth {
		return nil, errors.New("dual: a durable pending list is required unless require is both")
	}
	m := &Manager{
		tiers:        [2]*stores.Tier{primary, safety},
		pending:      pending,
		opts:         opts,
		log:          log.With().Str("component", "dual").Logger(),
		sem:          make(chan struct{}, opts.WriteConcurrency),
		start:        time.Now(),
		backfillKick: make(chan struct{}, 1),
		stop:         make(chan struct{}),
	}
	m.pref.Store(int32(opts.ReadPreference))
	return m, nil
}

// Options returns the options the manager runs with (the read preference
// as it is now).
func (m *Manager) Options() Options {
	o := m.opts
	o.ReadPreference = m.ReadPreference()
	return o
}

// Tier returns the named tier ("primary" or "safety"), or nil.
func (m *Manager) Tier(name string) *stores.Tier {
	switch name {
	case TierPrimary:
		return m.tiers[0]
	case TierSafety:
		return m.tiers[1]
	}
	return nil
}

// Name implements stores.Store.
func (m *Manager) Name() string { return "dual" }

// Type implements stores.Store.
func (m *Manager) Type() string { return "dual" }

// SetReadPreference switches the tier reads ask first, at run time.
func (m *Manager) SetReadPreference(p Preference) { m.pref.Store(int32(p)) }

// ReadPreference returns the current read preference.
func (m *Manager) ReadPreference() Preference { return Preference(m.pref.Load()) }

// callCtx is the context of one store call: bounded by StoreTimeout, and
// its chunk reads by MaxChunkSize.
func (m *Manager) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = stores.WithMaxSize(ctx, m.opts.MaxChunkSize)
	if m.opts.StoreTimeout > 0 {
		return context.WithTimeoutCause(ctx, m.opts.StoreTimeout, stores.ErrTimeout)
	}
	return context.WithCancel(ctx)
}

// verified reports whether data hashes to id.
func (m *Manager) verified(id stores.ID, data []byte) bool { return m.opts.Hash(data) == id }

// putTier writes one copy and, with verify_both, reads it back.
func (m *Manager) putTier(ctx context.Context, t int, id stores.ID, data []byte) error {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	tier := m.tiers[t]
	if err := tier.Put(ctx, id, data); err != nil {
		return fmt.Errorf("%s tier: put %s: %w", tier.Name(), id, err)
	}
	if !m.opts.VerifyBoth {
		return nil
	}
	back, err := tier.Get(stores.WithExpectedSize(ctx, id, int64(len(data))), id)
	if err == nil && !m.verified(id, back) {
		err = stores.ErrCorrupt
	}
	if err != nil {
		m.ctr.verifyFailures.Add(1)
		// Remove the bad copy so a retry or backfill rewrites it instead of
		// trusting "already there".
		_ = tier.Delete(ctx, id)
		return fmt.Errorf("%s tier: verify %s after write: %w", tier.Name(), id, err)
	}
	return nil
}

// Put stores a chunk according to the write outcome matrix:
//
//	primary ok,   safety ok     → ok
//	primary ok,   safety failed → ok (require primary/any), safety pending; error (require both)
//	primary fail, safety ok     → ok only with require any, primary pending; else error
//	both failed                 → error
//
// A pending record is durable before Put returns nil, so a crash cannot
// lose the fact that a tier is missing the chunk. An error wraps ErrWrite
// and every underlying store error.
func (m *Manager) Put(ctx context.Context, id stores.ID, data []byte) error {
	if m.closed.Load() {
		return fmt.Errorf("dual: put %s: %w", id, stores.ErrClosed)
	}
	err := m.put(ctx, id, data)
	if err != nil {
		m.ctr.putErr.Add(1)
		return err
	}
	m.ctr.putOK.Add(1)
	m.ctr.logicalBytesWrite.Add(int64(len(data)))
	return nil
}

func (m *Manager) put(ctx context.Context, id stores.ID, data []byte) error {
	if !m.opts.WriteToBoth {
		if err := m.putTier(ctx, 0, id, data); err != nil {
			return fmt.Errorf("%w: %w", ErrWrite, err)
		}
		return nil
	}
	var sErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sErr = m.putTier(ctx, 1, id, data)
	}()
	pErr := m.putTier(ctx, 0, id, data)
	<-done

	switch {
	case pErr == nil && sErr == nil:
		m.tiersHealthy()
		return nil
	case pErr != nil && sErr != nil:
		m.log.Error().Str("chunk", id.String()).AnErr("primary", pErr).AnErr("safety", sErr).Msg("chunk write failed on both tiers")
		return fmt.Errorf("%w: %w", ErrWrite, errors.Join(pErr, sErr))
	case sErr != nil: // primary ok
		if m.opts.Require == RequireBoth {
			return fmt.Errorf("%w (require both): %w", ErrWrite, sErr)
		}
		return m.oneSided(ctx, TierSafety, id, sErr)
	default: // safety ok, primary failed
		if m.opts.Require != RequireAny {
			return fmt.Errorf("%w (require %s): %w", ErrWrite, m.opts.Require, pErr)
		}
		return m.oneSided(ctx, TierPrimary, id, pErr)
	}
}

// oneSided records that tier missed id, durably, and kicks the backfill.
func (m *Manager) oneSided(ctx context.Context, tier string, id stores.ID, cause error) error {
	m.ctr.oneSided.Add(1)
	m.log.Warn().Str("chunk", id.String()).Str("tier", tier).Err(cause).Msg("one-sided chunk write; recorded for backfill")
	m.pendingMu.Lock()
	err := m.pending.AddPending(context.WithoutCancel(ctx), tier, []stores.ID{id})
	if err == nil {
		m.notePending(m.pendingCount.Add(1))
	}
	m.pendingMu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %s tier missed the chunk and recording it as pending failed: %w", ErrWrite, tier, errors.Join(cause, err))
	}
	// No kick: the tier has just failed. The backfill's timer retries, and
	// the first write that both tiers accept again ends its backoff.
	return nil
}

// Get returns the chunk's bytes, verified against id. It asks the
// preferred tier first; on a miss, an error or a copy that does not
// verify it falls back to the other tier (when enabled) and heals the
// failed tier with the good copy. An error wraps ErrNotFound when no tier
// has the chunk and ErrCorrupt when a copy existed but none verified.
//
// Every read is bounded (stores.BoundOf): by MaxChunkSize, and by the
// chunk's size where the caller knows it and says so with
// stores.WithExpectedSize (the file layer does, from the index). A copy
// of another size is a corrupt copy, found without reading it whole.
func (m *Manager) Get(ctx context.Context, id stores.ID) ([]byte, error) {
	if m.closed.Load() {
		return nil, fmt.Errorf("dual: get %s: %w", id, stores.ErrClosed)
	}
	var data []byte
	var err error
	if m.ReadPreference() == PreferFastest {
		data, err = m.getFastest(ctx, id)
	} else {
		data, err = m.getOrdered(ctx, id)
	}
	if err != nil {
		m.ctr.getErr.Add(1)
		return nil, err
	}
	m.ctr.getOK.Add(1)
	m.ctr.logicalBytesRead.Add(int64(len(data)))
	return data, nil
}

// getTier reads one tier's copy. The tier verifies each member's answer
// (NewTier gives it the hash), and fails over to the next member on a bad
// one, counting a checksum error for that store; hashing again here would
// only cost a second pass over every byte read.
func (m *Manager) getTier(ctx context.Context, t int, id stores.ID) ([]byte, error) {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	tier := m.tiers[t]
	data, err := tier.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s tier: get %s: %w", tier.Name(), id, err)
	}
	return data, nil
}

// NewTier builds a tier whose reads are verified against hash, which is
// what a Manager needs of its tiers: Get returns only bytes that hash to
// the id.
func NewTier(name string, members []stores.Store, hash func([]byte) stores.ID) *stores.Tier {
	return stores.NewTier(name, members, func(id stores.ID, data []byte) bool { return hash(data) == id })
}

func (m *Manager) getOrdered(ctx context.Context, id stores.ID) ([]byte, error) {
	first, second := 0, 1
	if m.ReadPreference() == PreferSafety {
		first, second = 1, 0
	}
	data, err := m.getTier(ctx, first, id)
	if err == nil {
		return data, nil
	}
	if !m.opts.FallbackEnabled || ctx.Err() != nil {
		return nil, err
	}
	m.ctr.fallbacks.Add(1)
	m.log.Warn().Str("chunk", id.String()).Str("tier", m.tiers[first].Name()).Err(err).Msg("read failed; falling back to the other tier")
	data2, err2 := m.getTier(ctx, second, id)
	if err2 != nil {
		m.log.Error().Str("chunk", id.String()).AnErr("first", err).AnErr("second", err2).Msg("chunk unreadable from both tiers")
		return nil, joinRead(err, err2)
	}
	m.heal(ctx, first, id, data2)
	return data2, nil
}

// joinRead joins two tiers' read errors so that errors.Is finds
// ErrNotFound only when both missed, and ErrCorrupt when any copy was bad.
func joinRead(a, b error) error {
	both := errors.Join(a, b)
	switch {
	case errors.Is(a, stores.ErrCorrupt) || errors.Is(b, stores.ErrCorrupt):
		if errors.Is(both, stores.ErrNotFound) {
			// Mixed: do not let a caller mistake it for a plain miss.
			return fmt.Errorf("%w: no tier holds a good copy: %v", stores.ErrCorrupt, both)
		}
		return both
	case errors.Is(a, stores.ErrNotFound) && errors.Is(b, stores.ErrNotFound):
		return both
	case errors.Is(both, stores.ErrNotFound):
		// One missed, the other failed for another reason: the chunk may
		// exist, so this is not a clean not-found.
		return fmt.Errorf("no tier could read the chunk: %v", both)
	}
	return both
}

// heal rewrites a verified copy into tier t after t failed a read. A
// corrupt copy is deleted first, since a store's Put of an id it already
// holds does not rewrite it.
func (m *Manager) heal(ctx context.Context, t int, id stores.ID, good []byte) {
	if !m.opts.SelfHeal {
		return
	}
	if !m.opts.WriteToBoth && t == 1 {
		return // the safety tier is filled by migrate, not by reads
	}
	ctx, cancel := m.callCtx(context.WithoutCancel(ctx))
	defer cancel()
	tier := m.tiers[t]
	_ = tier.Delete(ctx, id)
	if err := tier.Put(ctx, id, good); err != nil {
		m.ctr.selfHealErrors.Add(1)
		m.log.Warn().Str("chunk", id.String()).Str("tier", tier.Name()).Err(err).Msg("self-heal failed")
		return
	}
	m.ctr.selfHeals.Add(1)
	m.log.Info().Str("chunk", id.String()).Str("tier", tier.Name()).Msg("self-healed chunk from the other tier")
}

type tierResult struct {
	t    int
	data []byte
	err  error
}

func (m *Manager) getFastest(ctx context.Context, id stores.ID) ([]byte, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan tierResult, 2)
	for t := range 2 {
		go func() {
			d, err := m.getTier(rctx, t, id)
			results <- tierResult{t, d, err}
		}()
	}
	first := <-results
	if first.err == nil {
		// The loser is cancelled; we don't know whether its copy is good,
		// so there is nothing to heal.
		return first.data, nil
	}
	if !m.opts.FallbackEnabled {
		return nil, first.err
	}
	second := <-results
	if second.err != nil {
		return nil, joinRead(first.err, second.err)
	}
	m.ctr.fallbacks.Add(1)
	m.heal(ctx, first.t, id, second.data)
	return second.data, nil
}

// Stat reports the chunk's size from the preferred tier, falling back to
// the other like Get. It does not verify content.
func (m *Manager) Stat(ctx context.Context, id stores.ID) (int64, error) {
	first, second := 0, 1
	if m.ReadPreference() == PreferSafety {
		first, second = 1, 0
	}
	size, err := m.statTier(ctx, first, id)
	if err == nil || !m.opts.FallbackEnabled {
		return size, err
	}
	size, err2 := m.statTier(ctx, second, id)
	if err2 != nil {
		return -1, joinRead(err, err2)
	}
	return size, nil
}

// Stored reports whether every tier a write goes to holds the chunk with
// the given size (both tiers, or the primary without write_to_both): a
// writer may then skip writing it (dedup). Any doubt (a store error, a
// size that differs) answers false, and the writer writes.
func (m *Manager) Stored(ctx context.Context, id stores.ID, size int64) bool {
	tiers := []int{0, 1}
	if !m.opts.WriteToBoth {
		tiers = tiers[:1]
	}
	for _, t := range tiers {
		n, err := m.statTier(ctx, t, id)
		if err != nil || (n >= 0 && n != size) {
			return false
		}
	}
	return true
}

// Delete removes the chunk from both tiers. Only gc may call it, for
// chunks no file references.
func (m *Manager) Delete(ctx context.Context, id stores.ID) error {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	return errors.Join(m.tiers[0].Delete(ctx, id), m.tiers[1].Delete(ctx, id))
}

// deleteOwned is Delete from the stores that are not shared with other
// tools (stores.Sharer): gc's removal.
func (m *Manager) deleteOwned(ctx context.Context, id stores.ID) error {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	return errors.Join(m.tiers[0].DeleteOwned(ctx, id), m.tiers[1].DeleteOwned(ctx, id))
}

// ErrSyncOneSided is wrapped by Sync's error when only a tier that Require
// does not name failed: the chunks are durable where a write needs them,
// so fsync may succeed, but not everywhere (the caller keeps what it
// needs to check them after a power loss).
var ErrSyncOneSided = errors.New("sync failed on a tier that require does not name")

// Sync makes every chunk written so far durable in both tiers, for stores
// that batch durability (stores.Syncer). The tiers sync in parallel, each
// bounded by StoreTimeout (a hung store must not hang fsync). Any failure
// is returned; one of a tier that Require does not name (safety for
// RequirePrimary, one of two for RequireAny) wraps ErrSyncOneSided, as a
// one-sided write succeeds.
func (m *Manager) Sync(ctx context.Context) error {
	var errs [2]error
	var wg sync.WaitGroup
	for t := range m.tiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := m.callCtx(ctx)
			defer cancel()
			errs[t] = m.tiers[t].Sync(cctx)
		}()
	}
	wg.Wait()
	var fail bool
	switch m.opts.Require {
	case RequirePrimary:
		fail = errs[0] != nil
	case RequireBoth:
		fail = errs[0] != nil || errs[1] != nil
	case RequireAny:
		fail = errs[0] != nil && errs[1] != nil
	}
	err := errors.Join(errs[0], errs[1])
	if err != nil && !fail {
		return fmt.Errorf("%w: %w", ErrSyncOneSided, err)
	}
	return err
}

// Close stops the background work and closes both tiers.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.stopOnce.Do(func() { close(m.stop) })
	m.wg.Wait()
	return errors.Join(m.tiers[0].Close(), m.tiers[1].Close())
}

// Batch groups the chunk writes of one file so they run concurrently,
// bounded by the manager's write concurrency across all batches, and can
// be waited for at flush.
type Batch struct {
	m    *Manager
	ctx  context.Context
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	done func(id stores.ID, err error)
	// inline runs each Put in the caller's goroutine (NewInlineBatch).
	inline bool
}

// NewBatch starts a batch. done, if not nil, is called after each chunk's
// write with its outcome (from the writing goroutine).
func (m *Manager) NewBatch(ctx context.Context, done func(id stores.ID, err error)) *Batch {
	return &Batch{m: m, ctx: ctx, done: done}
}

// Put queues a chunk write. It blocks while the manager's write pool is
// full, which is what keeps memory bounded however fast data arrives. The
// batch takes ownership of data.
func (b *Batch) Put(id stores.ID, data []byte) error {
	return b.put(id, data, nil)
}

// PutUnlessStored is Put that first asks skip (on the batch's worker, not
// the caller's goroutine) and writes nothing when it says so: the dedup
// check of a chunk the index knows, whose stats run in parallel with the
// chunking instead of in line with it.
func (b *Batch) PutUnlessStored(id stores.ID, data []byte, skip func() bool) error {
	return b.put(id, data, skip)
}

func (b *Batch) put(id stores.ID, data []byte, skip func() bool) error {
	select {
	case b.m.sem <- struct{}{}:
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	b.wg.Add(1)
	run := func() {
		defer func() { <-b.m.sem; b.wg.Done() }()
		if skip != nil && skip() {
			if b.done != nil {
				b.done(id, nil)
			}
			return
		}
		// The batch owns data and nobody modifies chunk bytes: a store
		// need not copy them to protect an abandoned write.
		err := b.m.Put(stores.WithImmutableData(b.ctx), id, data)
		if err != nil {
			b.mu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.mu.Unlock()
		}
		if b.done != nil {
			b.done(id, err)
		}
	}
	if b.inline {
		run()
	} else {
		go run()
	}
	return nil
}

// NewInlineBatch is NewBatch for a batch of one or two chunks that the
// caller waits for at once (a small file's only chunk at close): each Put
// runs in the caller's goroutine, which saves the handoffs to and from a
// worker that dominate the cost of a small write.
func (m *Manager) NewInlineBatch(ctx context.Context) *Batch {
	return &Batch{m: m, ctx: ctx, inline: true}
}

// Err returns the first write error so far without waiting.
func (b *Batch) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Wait waits for every queued write and returns the first error.
func (b *Batch) Wait() error {
	b.wg.Wait()
	return b.Err()
}
