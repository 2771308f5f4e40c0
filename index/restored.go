package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// hkRestored marks an index rebuilt from a backup (index/replica): the
// stores may hold chunks written after the point it was restored to, by an
// index that may still exist somewhere, so gc must not sweep them until
// someone says so.
const hkRestored = "restored_from"

// MarkRestored records that the index was restored from a backup; note
// says from where and to which point in time.
func (db *DB) MarkRestored(ctx context.Context, note string) error {
	err := db.update(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, "INSERT INTO header (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", hkRestored, note)
		return err
	})
	if err != nil {
		return fmt.Errorf("index %s: mark restored: %w", db.path, sqlErr(err))
	}
	return nil
}

// RestoredFrom returns MarkRestored's note, or "" for an index that was
// not restored (or whose mark was cleared).
func (db *DB) RestoredFrom(ctx context.Context) (string, error) {
	var note string
	err := db.read(ctx, func(c *conn) error {
		return c.QueryRowContext(ctx, "SELECT value FROM header WHERE key = ?", hkRestored).Scan(&note)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("index %s: restored mark: %w", db.path, sqlErr(err))
	}
	return note, nil
}

// ClearRestored removes the restored mark (after a gc that was told the
// chunks it sweeps belong to no other index).
func (db *DB) ClearRestored(ctx context.Context) error {
	err := db.update(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, "DELETE FROM header WHERE key = ?", hkRestored)
		return err
	})
	if err != nil {
		return fmt.Errorf("index %s: clear restored mark: %w", db.path, sqlErr(err))
	}
	return nil
}
