package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// hkLastCompare keeps the report of the last finished comparison (or
// repair) of the tiers, as the dual manager renders it (JSON): the
// stats' consistency rate, `last_compare` and the health's compare
// differences then outlive a remount, and an offline compare reaches the
// next mount's stats. It is in the index, so the index backup keeps it.
const hkLastCompare = "last_compare"

// SaveLastCompare records report as the last comparison.
func (db *DB) SaveLastCompare(ctx context.Context, report []byte) error {
	err := db.update(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, "INSERT INTO header (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", hkLastCompare, string(report))
		return err
	})
	if err != nil {
		return fmt.Errorf("index %s: save the last comparison: %w", db.path, sqlErr(err))
	}
	return nil
}

// LastCompare returns what SaveLastCompare recorded, or nil.
func (db *DB) LastCompare(ctx context.Context) ([]byte, error) {
	var report string
	err := db.read(ctx, func(c *conn) error {
		return c.QueryRowContext(ctx, "SELECT value FROM header WHERE key = ?", hkLastCompare).Scan(&report)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index %s: the last comparison: %w", db.path, sqlErr(err))
	}
	return []byte(report), nil
}
