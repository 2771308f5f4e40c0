package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dualstore/dualstore/stores"
)

// # Durability epochs and undo records
//
// A commit (CommitChunks) reaches the index long before its chunks are
// durable in the stores: the chunk files sit in the page cache until the
// stores are synced, and SQLite's log can reach the disk on its own (the
// kernel writes dirty pages back whenever it likes). A power loss could then
// leave a durable index entry pointing at chunk files that are empty or
// missing. So every commit also records, in the same transaction, what the
// file was before it: the first commit of a file in an epoch copies the
// file's chunk list, size and times into undo and undo_chunks (counted in
// chunks.held, so gc keeps those chunks). A durability point then runs
//
//	e := Seal()        // later commits belong to the next epoch
//	sync the stores    // every chunk of epoch e (and before) is durable
//	Sync()             // every commit of epoch e is durable
//	Settle(e)          // forget the undo records of epoch e and before,
//	                   // and checkpoint the log
//
// and after a power loss, Unsettled lists the files whose newer content may
// reference lost chunks: the caller checks their chunks and, where one is in
// neither tier, Reverts the file to its last durable content. Checkpoints
// are taken only by Settle, after the stores were synced, never by SQLite's
// own choosing (wal_autocheckpoint is off).

// Seal ends the current durability epoch and returns it: commits that
// start after Seal belong to the next one. It waits for a commit in
// progress, so each commit belongs to exactly one epoch.
func (db *DB) Seal() uint64 {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	e := db.epoch
	db.epoch++
	if err := db.cutLocked(e); err != nil {
		db.log.Error().Err(err).Msg("index backup: reading the log failed; the backup starts again from a snapshot")
	}
	return e
}

// Epoch returns the current durability epoch (the one Seal would end).
func (db *DB) Epoch() uint64 {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	return db.epoch
}

// saveUndo records what a file is before its first commit of the current
// epoch: size, times and chunk list, holding a reference on each chunk.
// Later commits in the same epoch keep that first record. Caller holds the
// write transaction.
func (w *wtx) saveUndo(ctx context.Context, epoch uint64, a Attr, old []Chunk) error {
	res, err := w.ExecContext(ctx, `INSERT INTO undo (ino, epoch, size, mtime_ns, ctime_ns) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (ino, epoch) DO NOTHING`, int64(a.Ino), int64(epoch), int64(a.Size), toNS(a.Mtime), toNS(a.Ctime))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // recorded by an earlier commit of this epoch
	}
	if len(old) == 0 {
		return nil
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO undo_chunks (ino, epoch, seq, chunk_id, size)
		SELECT ino, ?, seq, chunk_id, size FROM file_chunks WHERE ino = ?`, int64(epoch), int64(a.Ino)); err != nil {
		return err
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO undo_holes (ino, epoch, seq, size)
		SELECT ino, ?, seq, size FROM file_holes WHERE ino = ?`, int64(epoch), int64(a.Ino)); err != nil {
		return err
	}
	n := map[stores.ID]int64{}
	for _, c := range old {
		if !c.Hole() {
			n[c.ID]++
		}
	}
	return w.hold(ctx, n, 1)
}

// hold adds (sign 1) or drops (sign -1) undo references: chunks.held
// counts the undo entries of a chunk. They keep gc away from the chunk
// without making it part of any file's content (the usage totals count
// file references only). Caller holds the write transaction.
func (w *wtx) hold(ctx context.Context, n map[stores.ID]int64, sign int64) error {
	for id, k := range n {
		var held int64
		err := w.QueryRowContext(ctx, "UPDATE chunks SET held = held + ? WHERE id = ? RETURNING held", sign*k, id[:]).Scan(&held)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("chunks: chunk %s of an undo entry is missing: %w", id, ErrCorrupt)
		}
		if err != nil {
			return scanErr(err, "chunks")
		}
		if held < 0 {
			return fmt.Errorf("chunks: chunk %s: held %d: %w", id, held, ErrCorrupt)
		}
	}
	return nil
}

// dropUndo deletes the undo records selected by where (with args) and the
// references their chunks held. Caller holds the write transaction.
func (w *wtx) dropUndo(ctx context.Context, where string, args ...any) (int64, error) {
	dec := map[stores.ID]int64{}
	rows, err := w.QueryContext(ctx, "SELECT chunk_id, count(*) FROM undo_chunks WHERE "+where+" GROUP BY chunk_id", args...)
	if err != nil {
		return 0, err
	}
	err = func() error {
		defer rows.Close()
		for rows.Next() {
			var b []byte
			var n int64
			if err := rows.Scan(&b, &n); err != nil {
				return scanErr(err, "undo_chunks")
			}
			id, err := decodeID(b, "undo_chunks")
			if err != nil {
				return err
			}
			dec[id] = n
		}
		return rows.Err()
	}()
	if err != nil {
		return 0, err
	}
	for _, t := range []string{"undo_chunks", "undo_holes"} {
		if _, err := w.ExecContext(ctx, "DELETE FROM "+t+" WHERE "+where, args...); err != nil {
			return 0, err
		}
	}
	res, err := w.ExecContext(ctx, "DELETE FROM undo WHERE "+where, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return n, w.hold(ctx, dec, -1)
}

// Settle forgets the undo records of epochs up to e, whose commits and
// chunks the caller has made durable (the stores synced after Seal
// returned e, then Sync), and checkpoints the log into the database file.
// It returns how many records it dropped.
func (db *DB) Settle(ctx context.Context, e uint64) (int64, error) {
	var n int64
	err := db.update(ctx, func(w *wtx) error {
		var err error
		w.quiet = true
		n, err = w.dropUndo(ctx, "epoch <= ?", int64(e))
		return err
	})
	if err != nil {
		return 0, errf(err, "settle epoch %d", e)
	}
	if err := db.checkpoint(ctx); err != nil {
		return n, err
	}
	db.handOver(e)
	return n, nil
}

// checkpoint copies the log into the database file (PASSIVE: it does not
// wait for readers). Only Settle calls it: the stores were synced just
// before, so the database file never references chunks less durable than
// the commits that made it.
func (db *DB) checkpoint(ctx context.Context) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.closed.Load() {
		return fmt.Errorf("index %s: checkpoint: %w", db.path, ErrClosed)
	}
	// The backup's log reader must see every frame before a checkpoint
	// lets the next commit restart the log.
	if err := db.drainLocked(); err != nil {
		db.log.Error().Err(err).Msg("index backup: reading the log failed; the backup starts again from a snapshot")
	}
	var busy, logFrames, done int64
	if err := db.wconn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("index %s: checkpoint: %w", db.path, sqlErr(err))
	}
	return nil
}

// Unsettled returns the files with undo records, in inode order: those
// committed since the last durability point that completed. After a clean
// shutdown there are none.
func (db *DB) Unsettled(ctx context.Context) ([]uint64, error) {
	var out []uint64
	err := db.view(ctx, func(c *conn) error {
		var err error
		out, err = queryInos(ctx, c, "undo", "SELECT DISTINCT ino FROM undo ORDER BY ino")
		return err
	})
	if err != nil {
		return nil, errf(err, "unsettled files")
	}
	return out, nil
}

// Revert gives a file back its last durable content: the oldest undo
// record it has (size, times and chunk list as of the last durability
// point before its newer commits), and drops its undo records. A file
// that no longer exists (purged) only loses its records. It returns the
// attributes after the revert (zero if the file is gone).
func (db *DB) Revert(ctx context.Context, ino uint64) (Attr, error) {
	var a Attr
	err := db.update(ctx, func(w *wtx) error {
		var epoch, size, mtime, ctime int64
		err := w.QueryRowContext(ctx, `SELECT epoch, size, mtime_ns, ctime_ns FROM undo WHERE ino = ?
			ORDER BY epoch LIMIT 1`, int64(ino)).Scan(&epoch, &size, &mtime, &ctime)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("inode %d has no undo record: %w", ino, ErrNotExist)
		}
		if err != nil {
			return scanErr(err, "undo")
		}
		chunks, err := scanChunkList(ctx, w, "undo_chunks", ino,
			`SELECT seq, chunk_id, size FROM undo_chunks WHERE ino = ? AND epoch = ?
			UNION ALL SELECT seq, NULL, size FROM undo_holes WHERE ino = ? AND epoch = ? ORDER BY seq`,
			int64(ino), epoch, int64(ino), epoch)
		if err != nil {
			return err
		}
		cur, err := getAttr(ctx, w, ino)
		if errors.Is(err, ErrNotExist) {
			_, err = w.dropUndo(ctx, "ino = ?", int64(ino))
			return err
		}
		if err != nil {
			return err
		}
		// Set the old list first (file references on its chunks), then
		// drop the records (their holds): the chunks are never free for gc
		// in between.
		old, err := loadChunks(ctx, w, ino)
		if err != nil {
			return err
		}
		if a, err = w.setChunks(ctx, cur, old, chunks, uint64(size), mtime, ctime); err != nil {
			return err
		}
		_, err = w.dropUndo(ctx, "ino = ?", int64(ino))
		return err
	})
	if err != nil {
		return Attr{}, errf(err, "revert %d", ino)
	}
	db.log.Warn().Uint64("ino", ino).Uint64("size", a.Size).Msg("file reverted to its last durable content")
	return a, nil
}

// upgrade brings an index of an older format to FormatVersion in one
// transaction: format 2 adds the undo tables, format 3 the holes.
func (db *DB) upgrade(ctx context.Context) error {
	err := db.update(ctx, func(w *wtx) error {
		var stmts []string
		if db.hdr.FormatVersion < 2 {
			stmts = append(stmts, schemaUndo...)
		}
		if db.hdr.FormatVersion < 3 {
			stmts = append(stmts, schemaHoles...)
			stmts = append(stmts, "ALTER TABLE inodes ADD COLUMN holes INTEGER NOT NULL DEFAULT 0")
		}
		for _, s := range stmts {
			if _, err := w.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		if _, err := w.ExecContext(ctx, "UPDATE header SET value = ? WHERE key = ?", fmt.Sprint(FormatVersion), hkFormatVersion); err != nil {
			return err
		}
		_, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", FormatVersion))
		return err
	})
	if err != nil {
		return err
	}
	db.log.Info().Int("from", db.hdr.FormatVersion).Int("to", FormatVersion).Msg("index format upgraded")
	db.hdr.FormatVersion = FormatVersion
	return nil
}
