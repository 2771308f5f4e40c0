package index

import (
	"context"
	"fmt"
	"math"

	"github.com/dualstore/dualstore/stores"
)

func validateTier(tier string) error {
	if tier == "" || len(tier) > 255 {
		return fmt.Errorf("tier name %q: %w", tier, ErrInvalid)
	}
	return nil
}

// AddPending records, durably, that tier is missing the chunks ids (a
// one-sided write failure) so a backfill can copy them later, also after a
// restart. Ids already pending are ignored.
func (db *DB) AddPending(ctx context.Context, tier string, ids []stores.ID) error {
	if err := validateTier(tier); err != nil {
		return errf(err, "add pending")
	}
	for _, id := range ids {
		if id.IsZero() {
			return errf(fmt.Errorf("zero chunk id: %w", ErrInvalid), "add pending %s", tier)
		}
	}
	err := db.update(ctx, func(w *wtx) error {
		for len(ids) > 0 {
			n := batchSize(len(ids))
			args := make([]any, 0, 2*n)
			for _, id := range ids[:n] {
				args = append(args, tier, id[:])
			}
			if _, err := w.ExecContext(ctx, "INSERT INTO pending (tier, id) VALUES "+placeholders(n, 2)+
				" ON CONFLICT (tier, id) DO NOTHING", args...); err != nil {
				return err
			}
			ids = ids[n:]
		}
		return nil
	})
	return errf(err, "add pending %s", tier)
}

// RemovePending forgets that tier misses id (it has it now). Removing an id
// that is not pending is not an error.
func (db *DB) RemovePending(ctx context.Context, tier string, id stores.ID) error {
	err := db.update(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, "DELETE FROM pending WHERE tier = ? AND id = ?", tier, id[:])
		return err
	})
	return errf(err, "remove pending %s %s", tier, id)
}

// ListPending returns up to limit (all when limit <= 0) chunks tier is
// missing, in id order.
func (db *DB) ListPending(ctx context.Context, tier string, limit int) ([]stores.ID, error) {
	return db.ListPendingAfter(ctx, tier, stores.ID{}, limit)
}

// ListPendingAfter is ListPending from the first id strictly after
// `after`, for paging past chunks that keep failing.
func (db *DB) ListPendingAfter(ctx context.Context, tier string, after stores.ID, limit int) ([]stores.ID, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []stores.ID
	err := db.read(ctx, func(q *conn) error {
		rows, err := q.QueryContext(ctx, "SELECT id FROM pending WHERE tier = ? AND id > ? ORDER BY id LIMIT ?",
			tier, after[:], limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return scanErr(err, "pending")
			}
			id, err := decodeID(b, "pending")
			if err != nil {
				return err
			}
			out = append(out, id)
		}
		return rows.Err()
	})
	return out, errf(err, "list pending %s", tier)
}

// CountPending returns how many chunks each tier is missing (tiers with
// none are absent).
func (db *DB) CountPending(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := db.read(ctx, func(q *conn) error {
		rows, err := q.QueryContext(ctx, "SELECT tier, count(*) FROM pending GROUP BY tier")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tier string
			var n int64
			if err := rows.Scan(&tier, &n); err != nil {
				return scanErr(err, "pending")
			}
			out[tier] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, errf(err, "count pending")
	}
	return out, nil
}
