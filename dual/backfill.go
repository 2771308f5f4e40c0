package dual

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// backfillBatch is how many pending ids one round reads per tier.
const backfillBatch = 256

// Start loads the pending count and starts the background backfill, which
// copies chunks a tier missed (one-sided writes) from the other tier,
// retrying with exponential backoff until both tiers hold them — also
// after a restart, since the pending list is durable.
func (m *Manager) Start(ctx context.Context) error {
	if m.pending != nil {
		m.pendingMu.Lock()
		counts, err := m.pending.CountPending(ctx)
		if err != nil {
			m.pendingMu.Unlock()
			return fmt.Errorf("dual: count pending backfill: %w", err)
		}
		var n int64
		for _, c := range counts {
			n += c
		}
		m.pendingCount.Store(n)
		m.notePending(n)
		m.pendingMu.Unlock()
	}
	m.wg.Add(1)
	go m.backfillLoop()
	if m.pendingCount.Load() > 0 {
		m.KickBackfill()
	}
	return nil
}

// KickBackfill asks the backfill to run now instead of at its next tick.
func (m *Manager) KickBackfill() {
	select {
	case m.backfillKick <- struct{}{}:
	default:
	}
}

// tiersHealthy is called when both tiers accepted a write: if the
// backfill is backing off after failed rounds, it runs a round now (at
// most once per interval), so a store that comes back is refilled at once
// rather than after the longest backoff.
func (m *Manager) tiersHealthy() {
	if !m.backingOff.Load() || m.pendingCount.Load() == 0 {
		return
	}
	if time.Since(time.Unix(0, m.lastRound.Load())) < m.opts.BackfillInterval {
		return
	}
	if m.backingOff.CompareAndSwap(true, false) {
		m.KickBackfill()
	}
}

// PendingCount returns the number of chunks a tier is known to miss.
func (m *Manager) PendingCount() int64 { return m.pendingCount.Load() }

func (m *Manager) backfillLoop() {
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-m.stop; cancel() }()

	wait := m.opts.BackfillInterval
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-timer.C:
		case <-m.backfillKick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		if m.pending == nil || m.pendingCount.Load() == 0 {
			wait = m.opts.BackfillInterval
			timer.Reset(wait)
			continue
		}
		if !m.backingOff.Load() {
			// A kick from tiersHealthy: the outage is over, so is the backoff.
			wait = m.opts.BackfillInterval
		}
		m.lastRound.Store(time.Now().UnixNano())
		_, err := m.BackfillOnce(ctx)
		if err != nil && ctx.Err() == nil {
			wait = min(2*wait, m.opts.BackfillMaxBackoff)
			m.backingOff.Store(true)
			m.log.Warn().Err(err).Dur("retry_in", wait).Int64("pending", m.pendingCount.Load()).Msg("backfill round failed")
		} else {
			wait = m.opts.BackfillInterval
			m.backingOff.Store(false)
		}
		timer.Reset(wait)
	}
}

// BackfillOnce copies every pending chunk it can into the tier that
// missed it, reading a verified copy from the other tier. It returns how
// many chunks it copied and the joined errors of those it could not; the
// failed ones stay pending.
func (m *Manager) BackfillOnce(ctx context.Context) (int, error) {
	if m.pending == nil {
		return 0, nil
	}
	copied := 0
	var errs []error
	for t, name := range []string{TierPrimary, TierSafety} {
		failed := map[stores.ID]bool{}
		for ctx.Err() == nil {
			ids, err := m.pending.ListPending(ctx, name, backfillBatch+len(failed))
			if err != nil {
				errs = append(errs, fmt.Errorf("list pending for %s: %w", name, err))
				break
			}
			progress := false
			for _, id := range ids {
				if failed[id] {
					continue
				}
				if err := m.backfillOne(ctx, t, id); err != nil {
					failed[id] = true
					m.ctr.backfillErrors.Add(1)
					errs = append(errs, err)
					if len(errs) > 16 || ctx.Err() != nil {
						// The target is most likely down: stop hammering it.
						m.refreshPending(ctx)
						return copied, errors.Join(errs...)
					}
					continue
				}
				progress = true
				copied++
			}
			if !progress {
				break
			}
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	m.refreshPending(ctx)
	return copied, errors.Join(errs...)
}

// refreshPending re-reads the durable count, so the gauge cannot drift
// from the list (duplicate records are ignored by the list).
func (m *Manager) refreshPending(ctx context.Context) {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	counts, err := m.pending.CountPending(ctx)
	if err != nil {
		return
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	m.pendingCount.Store(n)
	m.notePending(n)
}

func (m *Manager) backfillOne(ctx context.Context, t int, id stores.ID) error {
	// Held, so gc does not remove the chunk from one tier while it is
	// being copied into the other (which would leave a stray copy).
	m.Hold(id)
	defer m.Release(id)
	src := 1 - t
	data, err := m.getTier(ctx, src, id)
	if err != nil {
		// The source lost it too. If the target has a good copy after all
		// (written by a later write of the same chunk), the record is done.
		if _, terr := m.getTier(ctx, t, id); terr == nil {
			return m.donePending(ctx, t, id)
		}
		return fmt.Errorf("backfill %s into %s: %w", id, m.tiers[t].Name(), err)
	}
	pctx, cancel := m.callCtx(ctx)
	defer cancel()
	if err := m.tiers[t].Put(pctx, id, data); err != nil {
		return fmt.Errorf("backfill %s into %s: %w", id, m.tiers[t].Name(), err)
	}
	m.ctr.backfilled.Add(1)
	return m.donePending(ctx, t, id)
}

func (m *Manager) donePending(ctx context.Context, t int, id stores.ID) error {
	name := TierPrimary
	if t == 1 {
		name = TierSafety
	}
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	if err := m.pending.RemovePending(ctx, name, id); err != nil {
		return fmt.Errorf("backfill %s: clear pending record: %w", id, err)
	}
	m.notePending(m.pendingCount.Add(-1))
	return nil
}
