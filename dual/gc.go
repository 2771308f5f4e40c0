package dual

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dualstore/dualstore/stores"
)

// holds is the registry of chunks that writes in flight are about to
// reference. A writer holds a chunk id before it checks whether the chunk
// is stored (dedup) or writes it, and releases it once the file's chunk
// list is committed (or abandoned). gc removes a chunk only while it is not
// held, and holds it against writers while it removes it, so:
//
//   - a chunk a writer holds is never removed (gc skips it), and
//   - a writer that comes while gc is removing a chunk waits, then finds it
//     gone and writes it again.
//
// The registry is in memory: it protects the writes of this process. An
// offline gc runs only while no mount holds the data dir.
type holds struct {
	mu         sync.Mutex
	held       map[stores.ID]int
	collecting map[stores.ID]chan struct{}
}

// Hold marks id as about to be referenced by a write in flight. It waits
// while gc is removing that chunk. Every Hold needs one Release.
func (m *Manager) Hold(id stores.ID) {
	h := &m.holds
	h.mu.Lock()
	for {
		ch, busy := h.collecting[id]
		if !busy {
			break
		}
		h.mu.Unlock()
		<-ch
		h.mu.Lock()
	}
	if h.held == nil {
		h.held = make(map[stores.ID]int)
	}
	h.held[id]++
	h.mu.Unlock()
}

// Release drops one Hold of each id.
func (m *Manager) Release(ids ...stores.ID) {
	h := &m.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		switch n := h.held[id]; {
		case n > 1:
			h.held[id] = n - 1
		case n == 1:
			delete(h.held, id)
		}
	}
}

// Held returns how many chunk ids are held by writes in flight.
func (m *Manager) Held() int {
	m.holds.mu.Lock()
	defer m.holds.mu.Unlock()
	return len(m.holds.held)
}

// claimState says why a claim failed.
type claimState int

const (
	claimed    claimState = iota
	claimHeld             // a write holds the chunk
	claimTaken            // another collector has it
)

// claim marks id as being collected unless a write holds it or another
// collector has it; the returned func ends the claim and wakes waiting
// writers.
func (m *Manager) claim(id stores.ID) (func(), claimState) {
	h := &m.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held[id] > 0 {
		return nil, claimHeld
	}
	if _, busy := h.collecting[id]; busy {
		return nil, claimTaken
	}
	if h.collecting == nil {
		h.collecting = make(map[stores.ID]chan struct{})
	}
	ch := make(chan struct{})
	h.collecting[id] = ch
	return func() {
		h.mu.Lock()
		delete(h.collecting, id)
		h.mu.Unlock()
		close(ch)
	}, claimed
}

// GCOptions configure a garbage collection: what the index knows, and how
// to run.
type GCOptions struct {
	// DryRun finds what would be removed, and removes nothing.
	DryRun bool
	// Sweep also lists both tiers for chunks the index does not know at all
	// (left by a write that failed or a crash before its commit, or put
	// there by hand). Without it only the index's unreferenced rows are
	// collected.
	Sweep bool
	// Concurrency is how many chunks are removed at once. Default 4.
	Concurrency int
	// BatchSize is how many rows one Unreferenced call returns. Default 512.
	BatchSize int
	// MaxDetails bounds the removed chunks listed in the report. Default 1000.
	MaxDetails int
	// Unreferenced pages through the index's chunks that no file
	// references, in id order, strictly after `after`. Required.
	Unreferenced func(ctx context.Context, after stores.ID, limit int) ([]ChunkInfo, error)
	// Refs tells whether the index knows the chunk and how many chunk-list
	// entries reference it. Required: it is asked again, under the claim,
	// right before a chunk is removed.
	Refs func(ctx context.Context, id stores.ID) (known bool, refs int64, err error)
	// Forget deletes the index's row of a removed chunk if it is still
	// unreferenced. Required unless DryRun.
	Forget func(ctx context.Context, id stores.ID) error
	// Durable, if set, makes the index's state durable (with the chunks
	// its commits reference) before a page of unreferenced chunks is
	// removed: a file unlinked just before gc must not come back after a
	// power loss with its chunks gone. Not called in a dry run.
	Durable func(ctx context.Context) error
	// OnDetail, if set, is called for every chunk removed (or, in a dry
	// run, that would be).
	OnDetail func(Detail)
}

func (o *GCOptions) defaults() error {
	if o.Unreferenced == nil || o.Refs == nil || (o.Forget == nil && !o.DryRun) {
		return errors.New("dual: gc needs Unreferenced, Refs and Forget from the index")
	}
	// These fallbacks equal maint.DefaultTuning, where callers get theirs
	// (maint imports dual, so it cannot be referenced here).
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.MaxDetails <= 0 {
		o.MaxDetails = 1000
	}
	return nil
}

// ClassUnreferenced marks a chunk gc removed (or would remove).
const ClassUnreferenced Class = "unreferenced"

// GC removes from both tiers, in the foreground, every chunk no file
// references, and returns the report (action "gc"). Cancel ctx to stop.
// It fails with ErrBusy while another action runs.
//
// Each chunk is removed from the stores first and then forgotten by the
// index, so a crash in between leaves an unreferenced row that the next gc
// removes again (deleting a missing chunk succeeds). Writers are protected
// by Hold; see there.
func (m *Manager) GC(ctx context.Context, opts GCOptions) (Report, error) {
	s, err := m.newGC(opts)
	if err != nil {
		return Report{}, err
	}
	return s.foreground(ctx)
}

// StartGC runs a garbage collection in the background (see GC).
func (m *Manager) StartGC(opts GCOptions) (*Scrub, error) {
	s, err := m.newGC(opts)
	if err != nil {
		return nil, err
	}
	m.background(s)
	return s, nil
}

func (m *Manager) newGC(opts GCOptions) (*Scrub, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return m.newRun(&ScrubOptions{
		Concurrency: opts.Concurrency, BatchSize: opts.BatchSize, MaxDetails: opts.MaxDetails,
		OnDetail: opts.OnDetail,
	}, &opts)
}

// gcSource yields the candidates: the index's unreferenced rows, then
// (with Sweep) every chunk in either tier that the index does not know.
func (s *Scrub) gcSource(ctx context.Context, emit func(ChunkInfo) bool) error {
	g := s.gc
	var after stores.ID
	for ctx.Err() == nil {
		page, err := g.Unreferenced(ctx, after, s.opts.BatchSize)
		if err != nil {
			return fmt.Errorf("list unreferenced chunks: %w", err)
		}
		if len(page) == 0 {
			break
		}
		// These chunks are unreferenced now; once that is durable, a power
		// loss cannot bring back a reference to one after it is removed.
		if g.Durable != nil && !g.DryRun {
			if err := g.Durable(ctx); err != nil {
				return fmt.Errorf("make the index durable before removing chunks: %w", err)
			}
		}
		for _, c := range page {
			s.total.Add(1)
			if !emit(c) {
				return nil
			}
		}
		after = page[len(page)-1].ID
	}
	if !g.Sweep {
		return nil
	}
	seen := map[stores.ID]bool{}
	for _, t := range s.m.tiers {
		// Shared stores (a casync store desync uses too) are never swept:
		// a chunk this index does not know may be another tool's.
		owned := stores.NewTier(t.Name(), t.Owned(), nil)
		if len(t.Owned()) < len(t.Members()) {
			s.m.log.Info().Str("tier", t.Name()).Msg("gc: the tier's shared stores (casync layout) are not swept")
		}
		if len(t.Owned()) == 0 {
			continue
		}
		err := owned.List(ctx, func(id stores.ID) error {
			if seen[id] {
				return nil
			}
			known, _, err := g.Refs(ctx, id)
			if err != nil {
				return fmt.Errorf("index: chunk %s: %w", id, err)
			}
			if known {
				return nil
			}
			seen[id] = true
			s.total.Add(1)
			if !emit(ChunkInfo{ID: id, Size: -1}) {
				return ctx.Err()
			}
			return nil
		})
		if errors.Is(err, errors.ErrUnsupported) {
			s.m.log.Warn().Str("tier", t.Name()).Msg("gc: tier cannot list its chunks; only chunks the index knows are collected")
			continue
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("gc sweep of %s tier: %w", t.Name(), err)
		}
	}
	return nil
}

// collect removes one candidate unless a write holds it or the index says
// it is referenced now.
func (s *Scrub) collect(ctx context.Context, c ChunkInfo) {
	if ctx.Err() != nil {
		return
	}
	m, g := s.m, s.gc
	release, st := m.claim(c.ID)
	switch st {
	case claimHeld:
		s.n.Add(1)
		s.inFlight.Add(1)
		return
	case claimTaken:
		// The sweep listed a chunk this gc is removing as an index row
		// (the row already forgotten): that collector accounts for it.
		s.n.Add(1)
		return
	}
	defer release()
	known, refs, err := g.Refs(ctx, c.ID)
	if err != nil {
		s.gcError(c, fmt.Errorf("index: %w", err))
		return
	}
	if refs > 0 {
		// Referenced since it was listed: a write committed it.
		s.n.Add(1)
		s.inFlight.Add(1)
		return
	}
	if c.Size < 0 {
		var present bool
		c.Size, present = m.storedSize(ctx, c.ID)
		if !present && !known {
			// Gone from both tiers since the sweep listed it: removed as an
			// index row by this same gc a moment ago. Counting it again
			// would report one chunk removed twice.
			s.n.Add(1)
			return
		}
	}
	if !g.DryRun {
		if err := m.deleteOwned(ctx, c.ID); err != nil {
			s.gcError(c, err)
			return
		}
		if known {
			if err := g.Forget(ctx, c.ID); err != nil {
				s.gcError(c, fmt.Errorf("removed from the stores, but the index row stays (the next gc retries): %w", err))
				return
			}
		}
		m.forgetPending(ctx, c.ID)
	}
	s.n.Add(1)
	s.nBytes.Add(max(c.Size, 0))
	s.removed.Add(1)
	s.removedBytes.Add(max(c.Size, 0))
	note := "unreferenced index row"
	if !known {
		note = "in a store, unknown to the index"
	}
	s.addDetail(Detail{Chunk: c.ID.String(), Class: ClassUnreferenced, Note: note, Files: []string{}})
}

func (s *Scrub) gcError(c ChunkInfo, err error) {
	s.n.Add(1)
	s.errs.Add(1)
	s.m.log.Warn().Str("chunk", c.ID.String()).Err(err).Msg("gc: chunk not removed")
	s.addDetail(Detail{Chunk: c.ID.String(), Class: ClassError, Error: err.Error(), Files: []string{}})
}

// storedSize is the size of a chunk as either tier reports it, or -1;
// present is false only when both tiers answer that they lack it (a tier
// that fails otherwise may hold it).
func (m *Manager) storedSize(ctx context.Context, id stores.ID) (size int64, present bool) {
	size = -1
	for t := range m.tiers {
		n, err := m.statTier(ctx, t, id)
		if err == nil || !errors.Is(err, stores.ErrNotFound) {
			present = true
		}
		if err == nil && n >= 0 && size < 0 {
			size = n
		}
	}
	return size, present
}

// forgetPending drops the backfill records of a chunk gc removed: there is
// nothing left to copy.
func (m *Manager) forgetPending(ctx context.Context, id stores.ID) {
	if m.pending == nil {
		return
	}
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	for _, name := range []string{TierPrimary, TierSafety} {
		if err := m.pending.RemovePending(ctx, name, id); err != nil {
			m.log.Warn().Str("chunk", id.String()).Err(err).Msg("gc: clearing a pending record")
		}
	}
}
