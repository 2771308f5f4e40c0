package dual

import "time"

// notePending keeps the start of the current backlog when the pending
// count has become n: the time it went from none to some, cleared when
// it drops back to none. Called with pendingMu held, after every change
// of pendingCount, so the two agree.
func (m *Manager) notePending(n int64) {
	switch {
	case n <= 0:
		m.pendingSince.Store(0)
	case m.pendingSince.Load() == 0:
		m.pendingSince.Store(time.Now().UnixNano())
	}
}

// PendingAge returns how long chunks have been pending without a break:
// since the pending list last went from empty to not empty, or, for
// chunks an earlier mount left pending, since Start. 0 when nothing is
// pending. A backlog that is never empty keeps growing older even when
// single chunks are copied quickly, which is the point: it says the
// backfill has not caught up for that long.
func (m *Manager) PendingAge() time.Duration {
	since := m.pendingSince.Load()
	if since == 0 || m.pendingCount.Load() == 0 {
		return 0
	}
	return max(time.Since(time.Unix(0, since)), 0)
}
