package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Check verifies the index's internal invariants in one snapshot, scanning
// every table (for fsck and tests, not for the hot path): reference counts
// equal chunk-list entries, file sizes equal the sum of their chunks, nlink
// equals names (plus subdirectories for directories), every directory but
// the root has exactly one name, names live in directories, chunk ids are
// 32 bytes, and the running totals equal a recount. It returns nil or an
// error wrapping ErrCorrupt that lists up to max problems (all when
// max <= 0).
func (db *DB) Check(ctx context.Context, max int) error {
	var problems []error
	err := db.view(ctx, func(tx *conn) error {
		checks := []struct {
			what, query string
		}{
			{"chunk refs differ from chunk-list entries", `SELECT hex(c.id), c.refs FROM chunks c
				WHERE c.refs != (SELECT count(*) FROM file_chunks f WHERE f.chunk_id = c.id)`},
			{"chunk holds differ from undo entries", `SELECT hex(c.id), c.held FROM chunks c
				WHERE c.held != (SELECT count(*) FROM undo_chunks u WHERE u.chunk_id = c.id)`},
			{"undo entry size differs from the chunk's", `SELECT u.ino, u.seq FROM undo_chunks u
				LEFT JOIN chunks c ON c.id = u.chunk_id WHERE c.id IS NULL OR u.size != c.size`},
			{"file size differs from the sum of its chunks and holes", fmt.Sprintf(`SELECT i.ino, i.size FROM inodes i
				WHERE (i.mode & %d) = %d AND i.size != (SELECT coalesce(sum(f.size), 0) FROM file_chunks f WHERE f.ino = i.ino)
					+ (SELECT coalesce(sum(h.size), 0) FROM file_holes h WHERE h.ino = i.ino)`,
				modeType, sIFREG)},
			{"file holes differ from the sum of its holes", `SELECT i.ino, i.holes FROM inodes i
				WHERE i.holes != (SELECT coalesce(sum(h.size), 0) FROM file_holes h WHERE h.ino = i.ino)`},
			{"hole and chunk at one place of a list", `SELECT h.ino, h.seq FROM file_holes h
				JOIN file_chunks f ON f.ino = h.ino AND f.seq = h.seq
				UNION ALL SELECT h.ino, h.seq FROM undo_holes h
				JOIN undo_chunks u ON u.ino = h.ino AND u.epoch = h.epoch AND u.seq = h.seq`},
			{"holes of a non-regular inode", fmt.Sprintf(`SELECT DISTINCT h.ino, i.mode FROM file_holes h
				LEFT JOIN inodes i ON i.ino = h.ino WHERE i.ino IS NULL OR (i.mode & %d) != %d`, modeType, sIFREG)},
			{"chunk list of a non-regular inode", fmt.Sprintf(`SELECT DISTINCT f.ino, i.mode FROM file_chunks f
				JOIN inodes i ON i.ino = f.ino WHERE (i.mode & %d) != %d`, modeType, sIFREG)},
			{"chunk-list entry size differs from the chunk's", `SELECT f.ino, f.seq FROM file_chunks f
				JOIN chunks c ON c.id = f.chunk_id WHERE f.size != c.size`},
			{"non-directory nlink differs from its names", fmt.Sprintf(`SELECT i.ino, i.nlink FROM inodes i
				WHERE (i.mode & %d) != %d AND i.nlink != (SELECT count(*) FROM dentries d WHERE d.ino = i.ino)`,
				modeType, sIFDIR)},
			{"directory nlink differs from 2 + subdirectories", fmt.Sprintf(`SELECT i.ino, i.nlink FROM inodes i
				WHERE (i.mode & %d) = %d AND i.nlink != 2 + (SELECT count(*) FROM dentries d
				JOIN inodes c ON c.ino = d.ino WHERE d.parent = i.ino AND (c.mode & %d) = %d)`,
				modeType, sIFDIR, modeType, sIFDIR)},
			{"directory without exactly one name", fmt.Sprintf(`SELECT i.ino, i.nlink FROM inodes i WHERE (i.mode & %d) = %d AND i.ino != %d
				AND (SELECT count(*) FROM dentries d WHERE d.ino = i.ino) != 1`, modeType, sIFDIR, RootIno)},
			{"root has a name", fmt.Sprintf(`SELECT d.parent, d.ino FROM dentries d WHERE d.ino = %d`, RootIno)},
			{"name in a non-directory", fmt.Sprintf(`SELECT d.parent, d.ino FROM dentries d
				LEFT JOIN inodes p ON p.ino = d.parent WHERE p.ino IS NULL OR (p.mode & %d) != %d`, modeType, sIFDIR)},
			{"name of a missing inode", `SELECT d.parent, d.ino FROM dentries d
				LEFT JOIN inodes i ON i.ino = d.ino WHERE i.ino IS NULL`},
			{"chunk size or refs out of range", `SELECT hex(id), size FROM chunks
				WHERE typeof(size) != 'integer' OR size <= 0 OR size > 4294967295 OR typeof(refs) != 'integer' OR refs < 0
					OR typeof(held) != 'integer' OR held < 0
				UNION ALL SELECT ino, seq FROM file_chunks WHERE typeof(size) != 'integer' OR size <= 0 OR size > 4294967295
				UNION ALL SELECT ino, seq FROM file_holes WHERE typeof(size) != 'integer' OR size <= 0 OR size > 2147483648
				UNION ALL SELECT ino, seq FROM undo_holes WHERE typeof(size) != 'integer' OR size <= 0 OR size > 2147483648`},
			{"chunk id not 32 bytes", `SELECT 'chunks', length(id) FROM chunks WHERE length(id) != 32
				UNION ALL SELECT 'file_chunks', length(chunk_id) FROM file_chunks WHERE length(chunk_id) != 32
				UNION ALL SELECT 'pending', length(id) FROM pending WHERE length(id) != 32
				UNION ALL SELECT 'undo_chunks', length(chunk_id) FROM undo_chunks WHERE length(chunk_id) != 32`},
		}
		for _, c := range checks {
			rows, err := tx.QueryContext(ctx, c.query)
			if err != nil {
				return fmt.Errorf("%s: %w", c.what, err)
			}
			for rows.Next() {
				var a, b any
				if err := rows.Scan(&a, &b); err != nil {
					rows.Close()
					return err
				}
				problems = append(problems, fmt.Errorf("%s: %v %v", c.what, a, b))
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if _, err := getDir(ctx, tx, RootIno); err != nil {
			problems = append(problems, fmt.Errorf("root: %w", err))
		}
		var want, got Usage
		if err := recount(ctx, tx, &want); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT files, dirs, inodes, logical_bytes, unique_chunks, unique_bytes
			FROM counters WHERE id = 1`).Scan(&got.Files, &got.Dirs, &got.Inodes, &got.LogicalBytes,
			&got.UniqueChunks, &got.UniqueBytes); errors.Is(err, sql.ErrNoRows) {
			problems = append(problems, errors.New("counters: no row"))
			return nil
		} else if err != nil {
			return scanErr(err, "counters")
		}
		if got != want {
			problems = append(problems, fmt.Errorf("counters %+v, recount %+v", got, want))
		}
		return nil
	})
	if err != nil {
		return errf(err, "check")
	}
	if len(problems) == 0 {
		return nil
	}
	n := len(problems)
	if max > 0 && n > max {
		problems = problems[:max]
	}
	return fmt.Errorf("index: check %s: %d problems: %w: %w", db.path, n, ErrCorrupt, errors.Join(problems...))
}

// RepairCounts recomputes what the index can derive from its own tables
// (fsck --repair): chunk rows missing for chunk-list entries, reference
// counts, regular file sizes (the sum of their chunks, which hold the
// data), link counts of named inodes, and the running totals. It deletes
// nothing and returns how many rows it changed.
func (db *DB) RepairCounts(ctx context.Context) (int64, error) {
	var fixed int64
	err := db.update(ctx, func(w *wtx) error {
		fixed = 0
		stmts := []string{
			`INSERT INTO chunks (id, size, refs) SELECT f.chunk_id, min(f.size), 0 FROM file_chunks f
				WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = f.chunk_id) AND length(f.chunk_id) = 32
				GROUP BY f.chunk_id`,
			`INSERT INTO chunks (id, size, refs) SELECT u.chunk_id, min(u.size), 0 FROM undo_chunks u
				WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = u.chunk_id) AND length(u.chunk_id) = 32
				GROUP BY u.chunk_id`,
			`UPDATE chunks SET refs = (SELECT count(*) FROM file_chunks f WHERE f.chunk_id = chunks.id)
				WHERE refs != (SELECT count(*) FROM file_chunks f WHERE f.chunk_id = chunks.id)`,
			`UPDATE chunks SET held = (SELECT count(*) FROM undo_chunks u WHERE u.chunk_id = chunks.id)
				WHERE held != (SELECT count(*) FROM undo_chunks u WHERE u.chunk_id = chunks.id)`,
			`UPDATE inodes SET holes = (SELECT coalesce(sum(h.size), 0) FROM file_holes h WHERE h.ino = inodes.ino)
				WHERE holes != (SELECT coalesce(sum(h.size), 0) FROM file_holes h WHERE h.ino = inodes.ino)`,
			fmt.Sprintf(`UPDATE inodes SET size = holes + (SELECT coalesce(sum(f.size), 0) FROM file_chunks f WHERE f.ino = inodes.ino)
				WHERE (mode & %d) = %d AND size != holes + (SELECT coalesce(sum(f.size), 0) FROM file_chunks f WHERE f.ino = inodes.ino)`,
				modeType, sIFREG),
			fmt.Sprintf(`UPDATE inodes SET nlink = (SELECT count(*) FROM dentries d WHERE d.ino = inodes.ino)
				WHERE (mode & %d) != %d AND nlink != (SELECT count(*) FROM dentries d WHERE d.ino = inodes.ino)
				AND EXISTS (SELECT 1 FROM dentries d WHERE d.ino = inodes.ino)`, modeType, sIFDIR),
			fmt.Sprintf(`UPDATE inodes SET nlink = 2 + (SELECT count(*) FROM dentries d JOIN inodes c ON c.ino = d.ino
				WHERE d.parent = inodes.ino AND (c.mode & %d) = %d)
				WHERE (mode & %d) = %d AND nlink != 2 + (SELECT count(*) FROM dentries d JOIN inodes c ON c.ino = d.ino
				WHERE d.parent = inodes.ino AND (c.mode & %d) = %d)`, modeType, sIFDIR, modeType, sIFDIR, modeType, sIFDIR),
		}
		for _, q := range stmts {
			res, err := w.ExecContext(ctx, q)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			fixed += n
		}
		var u, got Usage
		if err := recount(ctx, w, &u); err != nil {
			return err
		}
		err := w.QueryRowContext(ctx, `SELECT files, dirs, inodes, logical_bytes, unique_chunks, unique_bytes
			FROM counters WHERE id = 1`).Scan(&got.Files, &got.Dirs, &got.Inodes, &got.LogicalBytes, &got.UniqueChunks, &got.UniqueBytes)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return scanErr(err, "counters")
		}
		if got != u || errors.Is(err, sql.ErrNoRows) {
			if _, err := w.ExecContext(ctx, `INSERT OR REPLACE INTO counters
				(id, files, dirs, inodes, logical_bytes, unique_chunks, unique_bytes) VALUES (1, ?, ?, ?, ?, ?, ?)`,
				u.Files, u.Dirs, u.Inodes, u.LogicalBytes, u.UniqueChunks, u.UniqueBytes); err != nil {
				return err
			}
			fixed++
		}
		return nil
	})
	return fixed, errf(err, "repair counts")
}

// UnrefCount returns how many chunk rows no file references, and their
// bytes: what gc would remove from the index.
func (db *DB) UnrefCount(ctx context.Context) (n, bytes int64, err error) {
	err = db.read(ctx, func(q *conn) error {
		return scanErr(q.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(size), 0) FROM chunks WHERE refs = 0 AND held = 0").Scan(&n, &bytes), "chunks")
	})
	return n, bytes, errf(err, "count unreferenced chunks")
}
