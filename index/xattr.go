package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Xattr flags, as setxattr(2).
const (
	XattrCreate  uint32 = 1 // fail with ErrExist if the attribute exists
	XattrReplace uint32 = 2 // fail with ErrNoData if it does not
)

// GetXattr returns an extended attribute's value; ErrNoData if the inode
// has no such attribute.
func (db *DB) GetXattr(ctx context.Context, ino uint64, name string) ([]byte, error) {
	if err := validateXattrName(name); err != nil {
		return nil, errf(err, "getxattr %d", ino)
	}
	var v []byte
	err := db.view(ctx, func(tx *conn) error {
		err := tx.QueryRowContext(ctx, "SELECT value FROM xattrs WHERE ino = ? AND name = ?", int64(ino), []byte(name)).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err := getAttr(ctx, tx, ino); err != nil {
				return err
			}
			return ErrNoData
		}
		return scanErr(err, "xattrs")
	})
	if err != nil {
		return nil, errf(err, "getxattr %d %q", ino, name)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// SetXattr sets an extended attribute (flags: XattrCreate, XattrReplace)
// and the inode's ctime (to the current time).
func (db *DB) SetXattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) error {
	if err := validateXattrName(name); err != nil {
		return errf(err, "setxattr %d", ino)
	}
	if len(value) > MaxXattrSize {
		return errf(fmt.Errorf("value of %d bytes: %w", len(value), ErrInvalid), "setxattr %d %q", ino, name)
	}
	if flags&^(XattrCreate|XattrReplace) != 0 {
		return errf(fmt.Errorf("flags %#x: %w", flags, ErrInvalid), "setxattr %d %q", ino, name)
	}
	if value == nil {
		value = []byte{} // an empty value, not NULL
	}
	ns := toNS(time.Now())
	err := db.update(ctx, func(w *wtx) error {
		if _, err := getAttr(ctx, w, ino); err != nil {
			return err
		}
		// The inode's count and bytes, and this name's share of them, in
		// the transaction that sets: concurrent sets cannot pass the bound.
		var count, total int64
		var old sql.NullInt64
		err := w.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(name) + LENGTH(value)), 0),
			SUM(CASE WHEN name = ? THEN LENGTH(name) + LENGTH(value) END) FROM xattrs WHERE ino = ?`,
			[]byte(name), int64(ino)).Scan(&count, &total, &old)
		if err != nil {
			return scanErr(err, "xattrs")
		}
		exists := old.Valid
		after := total - old.Int64 + int64(len(name)+len(value))
		switch {
		case exists && flags&XattrCreate != 0:
			return ErrExist
		case !exists && flags&XattrReplace != 0:
			return ErrNoData
		case !exists && count >= MaxXattrCount:
			return fmt.Errorf("inode has %d extended attributes, the most it may: %w", count, ErrNoSpace)
		case after > MaxXattrTotal && after > total:
			// A change that does not grow the inode is always allowed,
			// even past the bound (attributes set before it existed).
			return fmt.Errorf("names and values would take %d bytes, past %d: %w", after, MaxXattrTotal, ErrNoSpace)
		case exists:
			_, err = w.ExecContext(ctx, "UPDATE xattrs SET value = ? WHERE ino = ? AND name = ?", value, int64(ino), []byte(name))
		default:
			_, err = w.ExecContext(ctx, "INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?)", int64(ino), []byte(name), value)
		}
		if err != nil {
			return err
		}
		return w.setNlinkCtime(ctx, ino, 0, ns)
	})
	return errf(err, "setxattr %d %q", ino, name)
}

// ListXattr returns the names of an inode's extended attributes, sorted.
func (db *DB) ListXattr(ctx context.Context, ino uint64) ([]string, error) {
	var out []string
	err := db.view(ctx, func(tx *conn) error {
		if _, err := getAttr(ctx, tx, ino); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT name FROM xattrs WHERE ino = ? ORDER BY name", int64(ino))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return scanErr(err, "xattrs")
			}
			if validateXattrName(string(b)) != nil {
				return fmt.Errorf("xattrs: bad name %q on %d: %w", b, ino, ErrCorrupt)
			}
			out = append(out, string(b))
		}
		return rows.Err()
	})
	if err != nil {
		return nil, errf(err, "listxattr %d", ino)
	}
	return out, nil
}

// RemoveXattr removes an extended attribute (ErrNoData if missing) and sets
// the inode's ctime.
func (db *DB) RemoveXattr(ctx context.Context, ino uint64, name string) error {
	if err := validateXattrName(name); err != nil {
		return errf(err, "removexattr %d", ino)
	}
	ns := toNS(time.Now())
	err := db.update(ctx, func(w *wtx) error {
		if _, err := getAttr(ctx, w, ino); err != nil {
			return err
		}
		res, err := w.ExecContext(ctx, "DELETE FROM xattrs WHERE ino = ? AND name = ?", int64(ino), []byte(name))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNoData
		}
		return w.setNlinkCtime(ctx, ino, 0, ns)
	})
	return errf(err, "removexattr %d %q", ino, name)
}
