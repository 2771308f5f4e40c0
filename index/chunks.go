package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// Chunk is one entry of a file's chunk list. Offsets are the running sum
// of the sizes.
//
// An entry with the zero ID is a hole: Size bytes that read as zeros and
// are stored nowhere (see Hole).
type Chunk struct {
	ID   stores.ID
	Size uint32
}

// MaxHole is the largest hole one list entry holds; a longer hole is
// several entries.
const MaxHole = 1 << 31

// Hole reports whether c is a hole.
func (c Chunk) Hole() bool { return c.ID.IsZero() }

// Holes returns the entries of a hole of n bytes (several of at most
// MaxHole each).
func Holes(n uint64) []Chunk {
	var out []Chunk
	for n > 0 {
		s := min(n, MaxHole)
		out = append(out, Chunk{Size: uint32(s)})
		n -= s
	}
	return out
}

// ChunkRef is a row of the chunk table.
type ChunkRef struct {
	ID   stores.ID
	Size uint32
	Refs int64 // number of chunk-list entries naming the chunk
}

// Usage is the filesystem's running totals. Orphans (unlinked, still open)
// count until they are purged.
type Usage struct {
	Files, Dirs, Inodes int64 // regular files, directories, all inodes
	LogicalBytes        int64 // sum of regular files' sizes
	UniqueChunks        int64 // chunks with refs > 0
	UniqueBytes         int64 // sum of their sizes
}

// decodeID checks a chunk id read from table: the file is not trusted.
func decodeID(b []byte, table string) (stores.ID, error) {
	id, err := stores.IDFromBytes(b)
	if err != nil {
		return id, fmt.Errorf("%s: chunk id of %d bytes: %w", table, len(b), ErrCorrupt)
	}
	return id, nil
}

func decodeSize(n int64, table string) (uint32, error) {
	if n <= 0 || n > math.MaxUint32 {
		return 0, fmt.Errorf("%s: chunk size %d: %w", table, n, ErrCorrupt)
	}
	return uint32(n), nil
}

// loadChunks reads a file's chunk list, holes included, checking that seq
// runs 0, 1, 2….
func loadChunks(ctx context.Context, q querier, ino uint64) ([]Chunk, error) {
	return scanChunkList(ctx, q, "file_chunks", ino,
		`SELECT seq, chunk_id, size FROM file_chunks WHERE ino = ?
		UNION ALL SELECT seq, NULL, size FROM file_holes WHERE ino = ? ORDER BY seq`, int64(ino), int64(ino))
}

// scanChunkList reads a chunk list of ino from table (rows of seq,
// chunk_id, size in seq order), checking that seq runs 0, 1, 2….
func scanChunkList(ctx context.Context, q querier, table string, ino uint64, query string, args ...any) ([]Chunk, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Chunk
	for rows.Next() {
		var seq, size int64
		var b []byte
		if err := rows.Scan(&seq, &b, &size); err != nil {
			return nil, scanErr(err, table)
		}
		if seq != int64(len(out)) {
			return nil, fmt.Errorf("%s: inode %d: seq %d at position %d: %w", table, ino, seq, len(out), ErrCorrupt)
		}
		if b == nil { // a hole
			if size <= 0 || size > MaxHole {
				return nil, fmt.Errorf("%s: inode %d: hole of %d bytes: %w", table, ino, size, ErrCorrupt)
			}
			out = append(out, Chunk{Size: uint32(size)})
			continue
		}
		id, err := decodeID(b, table)
		if err != nil {
			return nil, err
		}
		if id.IsZero() {
			return nil, fmt.Errorf("%s: inode %d: the zero chunk id: %w", table, ino, ErrCorrupt)
		}
		sz, err := decodeSize(size, table)
		if err != nil {
			return nil, err
		}
		out = append(out, Chunk{ID: id, Size: sz})
	}
	return out, rows.Err()
}

// Chunks returns a regular file's chunk list in file order (orphans
// included: an unlinked file may still be open). A directory wraps
// ErrIsDir, another non-regular inode ErrInvalid.
func (db *DB) Chunks(ctx context.Context, ino uint64) ([]Chunk, error) {
	var out []Chunk
	err := db.view(ctx, func(tx *conn) error {
		a, err := getAttr(ctx, tx, ino)
		if err != nil {
			return err
		}
		if err := needRegular(a); err != nil {
			return err
		}
		out, err = loadChunks(ctx, tx, ino)
		return err
	})
	if err != nil {
		return nil, errf(err, "chunks of %d", ino)
	}
	return out, nil
}

func needRegular(a Attr) error {
	switch {
	case a.IsDir():
		return fmt.Errorf("inode %d: %w", a.Ino, ErrIsDir)
	case !a.IsRegular():
		return fmt.Errorf("inode %d (mode %#o) is not a regular file: %w", a.Ino, a.Mode, ErrInvalid)
	}
	return nil
}

// CommitChunks replaces a regular file's chunk list in one transaction:
// the size becomes the sum of the chunk sizes, mtime and ctime become
// mtime, and chunk reference counts follow (a chunk new to the index is
// added with its size). Every chunk must have a non-zero id and size, and
// one id must always have the same size, here and in the index
// (ErrInvalid otherwise). The caller must have stored every chunk first.
// Entries equal to the old list's leading entries are not rewritten, so
// appending to a large file costs O(new chunks).
func (db *DB) CommitChunks(ctx context.Context, ino uint64, chunks []Chunk, mtime time.Time) (Attr, error) {
	sizes := make(map[stores.ID]uint32, len(chunks))
	var total uint64
	for i, c := range chunks {
		if c.Size == 0 || c.Hole() && c.Size > MaxHole {
			return Attr{}, errf(fmt.Errorf("chunk %d: size %d: %w", i, c.Size, ErrInvalid), "commit chunks of %d", ino)
		}
		total += uint64(c.Size)
		if c.Hole() {
			continue
		}
		if s, ok := sizes[c.ID]; ok && s != c.Size {
			return Attr{}, errf(fmt.Errorf("chunk %s given with sizes %d and %d: %w", c.ID, s, c.Size, ErrInvalid),
				"commit chunks of %d", ino)
		}
		sizes[c.ID] = c.Size
	}
	if total > math.MaxInt64 {
		return Attr{}, errf(fmt.Errorf("size %d: %w", total, ErrInvalid), "commit chunks of %d", ino)
	}
	ns := toNS(orNow(mtime))
	var a Attr
	err := db.update(ctx, func(w *wtx) error {
		var err error
		if a, err = getAttr(ctx, w, ino); err != nil {
			return err
		}
		if err := needRegular(a); err != nil {
			return err
		}
		old, err := loadChunks(ctx, w, ino)
		if err != nil {
			return err
		}
		if err := w.saveUndo(ctx, db.epoch, a, old); err != nil {
			return err
		}
		a, err = w.setChunks(ctx, a, old, chunks, total, ns, ns)
		return err
	})
	if err != nil {
		return Attr{}, errf(err, "commit chunks of %d", ino)
	}
	db.log.Debug().Uint64("ino", ino).Int("chunks", len(chunks)).Uint64("size", total).Msg("commit chunks")
	return a, nil
}

// setChunks replaces the chunk list old of the regular file a with chunks
// (total bytes), moving references from the old chunks to the new ones,
// and sets its size and times. Caller holds the write transaction.
func (w *wtx) setChunks(ctx context.Context, a Attr, old, chunks []Chunk, total uint64, mtimeNS, ctimeNS int64) (Attr, error) {
	ino := a.Ino
	sizes := make(map[stores.ID]uint32, len(chunks))
	var holes uint64
	for _, c := range chunks {
		if c.Hole() {
			holes += uint64(c.Size)
			continue
		}
		sizes[c.ID] = c.Size
	}
	for _, c := range old {
		if c.Hole() {
			continue
		}
		if s, ok := sizes[c.ID]; ok && s != c.Size {
			return a, fmt.Errorf("chunk %s: size %d, the index has %d: %w", c.ID, s, c.Size, ErrInvalid)
		}
	}
	keep := 0
	for keep < len(old) && keep < len(chunks) && old[keep] == chunks[keep] {
		keep++
	}
	delta := map[stores.ID]int64{}
	for _, c := range old[keep:] {
		if !c.Hole() {
			delta[c.ID]--
		}
	}
	for _, c := range chunks[keep:] {
		if !c.Hole() {
			delta[c.ID]++
		}
	}
	if keep < len(old) {
		for _, t := range []string{"file_chunks", "file_holes"} {
			if _, err := w.ExecContext(ctx, "DELETE FROM "+t+" WHERE ino = ? AND seq >= ?", int64(ino), keep); err != nil {
				return a, err
			}
		}
	}
	inc := map[stores.ID]int64{}
	dec := map[stores.ID]int64{}
	for id, d := range delta {
		switch {
		case d > 0:
			inc[id] = d
		case d < 0:
			dec[id] = -d
		}
	}
	if err := w.incRefs(ctx, inc, sizes); err != nil {
		return a, err
	}
	if err := w.insertFileChunks(ctx, ino, keep, chunks[keep:]); err != nil {
		return a, err
	}
	if err := w.decRefs(ctx, dec); err != nil {
		return a, err
	}
	if _, err := w.ExecContext(ctx, "UPDATE inodes SET size = ?, holes = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
		int64(total), int64(holes), mtimeNS, ctimeNS, int64(ino)); err != nil {
		return a, err
	}
	w.d.logicalBytes += int64(total) - int64(a.Size)
	a.Size, a.Holes = total, holes
	a.Mtime, a.Ctime = fromNS(mtimeNS), fromNS(ctimeNS)
	return a, nil
}

// batchSize returns how many of n rows to write with one multi-row
// statement: the largest of 256, 64, 16, 4 and 1 not above n. A few fixed
// shapes keep the prepared statements cacheable; 256 rows of 4 parameters
// stay well under SQLite's and PostgreSQL's parameter limits.
func batchSize(n int) int {
	for _, b := range [...]int{256, 64, 16, 4} {
		if n >= b {
			return b
		}
	}
	return 1
}

// incRefs adds references, inserting chunks new to the index.
func (w *wtx) incRefs(ctx context.Context, inc map[stores.ID]int64, sizes map[stores.ID]uint32) error {
	ids := make([]stores.ID, 0, len(inc))
	for id := range inc {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		n := batchSize(len(ids))
		batch := ids[:n]
		ids = ids[n:]
		q := "INSERT INTO chunks (id, size, refs) VALUES " + placeholders(n, 3) +
			" ON CONFLICT (id) DO UPDATE SET refs = chunks.refs + excluded.refs RETURNING id, size, refs"
		args := make([]any, 0, 3*n)
		for _, id := range batch {
			args = append(args, id[:], int64(sizes[id]), inc[id])
		}
		rows, err := w.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		err = func() error {
			defer rows.Close()
			for rows.Next() {
				var b []byte
				var size, refs int64
				if err := rows.Scan(&b, &size, &refs); err != nil {
					return scanErr(err, "chunks")
				}
				id, err := decodeID(b, "chunks")
				if err != nil {
					return err
				}
				if size != int64(sizes[id]) {
					return fmt.Errorf("chunk %s: size %d, the index has %d: %w", id, sizes[id], size, ErrInvalid)
				}
				if refs == inc[id] { // it had no references before
					w.d.uniqueChunks++
					w.d.uniqueBytes += size
				}
			}
			return rows.Err()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// decRefs drops references; a chunk reaching 0 stays, for gc.
func (w *wtx) decRefs(ctx context.Context, dec map[stores.ID]int64) error {
	if len(dec) == 0 {
		return nil
	}
	for id, d := range dec {
		var refs, size int64
		err := w.QueryRowContext(ctx, "UPDATE chunks SET refs = refs - ? WHERE id = ? RETURNING refs, size",
			d, id[:]).Scan(&refs, &size)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("chunks: chunk %s is referenced but missing: %w", id, ErrCorrupt)
		}
		if err != nil {
			return scanErr(err, "chunks")
		}
		if refs < 0 {
			return fmt.Errorf("chunks: chunk %s: refs %d: %w", id, refs, ErrCorrupt)
		}
		if refs == 0 {
			w.d.uniqueChunks--
			w.d.uniqueBytes -= size
		}
	}
	return nil
}

func (w *wtx) insertFileChunks(ctx context.Context, ino uint64, seq int, list []Chunk) error {
	// Chunks and holes go to their tables, each row with its place in
	// the list.
	type run struct {
		seq    int
		chunks []Chunk
	}
	var runs []run
	for i := 0; i < len(list); {
		j := i
		for j < len(list) && !list[j].Hole() {
			j++
		}
		if j > i {
			runs = append(runs, run{seq + i, list[i:j]})
		}
		for ; j < len(list) && list[j].Hole(); j++ {
			if _, err := w.ExecContext(ctx, "INSERT INTO file_holes (ino, seq, size) VALUES (?, ?, ?)",
				int64(ino), seq+j, int64(list[j].Size)); err != nil {
				return err
			}
		}
		i = j
	}
	for _, r := range runs {
		if err := w.insertChunkRows(ctx, ino, r.seq, r.chunks); err != nil {
			return err
		}
	}
	return nil
}

// insertChunkRows inserts file_chunks rows for a run of chunks (no holes)
// from seq on.
func (w *wtx) insertChunkRows(ctx context.Context, ino uint64, seq int, chunks []Chunk) error {
	for len(chunks) > 0 {
		n := batchSize(len(chunks))
		args := make([]any, 0, 4*n)
		for i, c := range chunks[:n] {
			args = append(args, int64(ino), seq+i, c.ID[:], int64(c.Size))
		}
		if _, err := w.ExecContext(ctx, "INSERT INTO file_chunks (ino, seq, chunk_id, size) VALUES "+
			placeholders(n, 4), args...); err != nil {
			return err
		}
		chunks = chunks[n:]
		seq += n
	}
	return nil
}

// placeholders returns "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

// FilesOfChunk returns the paths of up to limit files (all when limit <= 0)
// whose chunk list names id, one path per file. Orphans have no path and
// are left out.
func (db *DB) FilesOfChunk(ctx context.Context, id stores.ID, limit int) ([]string, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []string
	err := db.view(ctx, func(tx *conn) error {
		rows, err := tx.QueryContext(ctx, "SELECT DISTINCT ino FROM file_chunks WHERE chunk_id = ? ORDER BY ino", id[:])
		if err != nil {
			return err
		}
		var inos []uint64
		for rows.Next() {
			var ino int64
			if err := rows.Scan(&ino); err != nil {
				rows.Close()
				return scanErr(err, "file_chunks")
			}
			inos = append(inos, uint64(ino))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, ino := range inos {
			if len(out) >= limit {
				break
			}
			p, err := pathOf(ctx, tx, ino)
			if errors.Is(err, ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, errf(err, "files of chunk %s", id)
	}
	return out, nil
}

func scanChunkRefs(rows *sql.Rows) ([]ChunkRef, error) {
	defer rows.Close()
	var out []ChunkRef
	for rows.Next() {
		var b []byte
		var size, refs int64
		if err := rows.Scan(&b, &size, &refs); err != nil {
			return nil, scanErr(err, "chunks")
		}
		id, err := decodeID(b, "chunks")
		if err != nil {
			return nil, err
		}
		sz, err := decodeSize(size, "chunks")
		if err != nil {
			return nil, err
		}
		if refs < 0 {
			return nil, fmt.Errorf("chunks: chunk %s: refs %d: %w", id, refs, ErrCorrupt)
		}
		out = append(out, ChunkRef{ID: id, Size: sz, Refs: refs})
	}
	return out, rows.Err()
}

// RefChunks returns up to limit referenced chunks (refs > 0; all when
// limit <= 0) with ids strictly after `after`, in id order: start with the
// zero ID and pass the last id returned to page through every chunk.
func (db *DB) RefChunks(ctx context.Context, after stores.ID, limit int) ([]ChunkRef, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []ChunkRef
	err := db.read(ctx, func(q *conn) error {
		rows, err := q.QueryContext(ctx,
			"SELECT id, size, refs FROM chunks WHERE id > ? AND refs > 0 ORDER BY id LIMIT ?", after[:], limit)
		if err != nil {
			return err
		}
		out, err = scanChunkRefs(rows)
		return err
	})
	return out, errf(err, "referenced chunks after %s", after)
}

// UnrefChunks returns up to limit chunks with no references (all when
// limit <= 0), in id order: gc's candidates.
func (db *DB) UnrefChunks(ctx context.Context, limit int) ([]ChunkRef, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []ChunkRef
	err := db.read(ctx, func(q *conn) error {
		rows, err := q.QueryContext(ctx, "SELECT id, size, refs FROM chunks WHERE refs = 0 AND held = 0 ORDER BY id LIMIT ?", limit)
		if err != nil {
			return err
		}
		out, err = scanChunkRefs(rows)
		return err
	})
	return out, errf(err, "unreferenced chunks")
}

// DeleteChunks removes the rows of those ids whose refs is still 0 (checked
// in the same transaction) and returns which it removed; ids with
// references or unknown are skipped.
func (db *DB) DeleteChunks(ctx context.Context, ids []stores.ID) (deleted []stores.ID, err error) {
	err = db.update(ctx, func(w *wtx) error {
		deleted = deleted[:0]
		for _, id := range ids {
			res, err := w.ExecContext(ctx, "DELETE FROM chunks WHERE id = ? AND refs = 0 AND held = 0", id[:])
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n > 0 {
				deleted = append(deleted, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errf(err, "delete %d chunks", len(ids))
	}
	return deleted, nil
}

// ChunkRefs reports whether the index has a row for id and how many
// chunk-list entries reference it (gc's re-check before a removal).
func (db *DB) ChunkRefs(ctx context.Context, id stores.ID) (known bool, refs int64, err error) {
	err = db.read(ctx, func(q *conn) error {
		err := q.QueryRowContext(ctx, "SELECT refs + held FROM chunks WHERE id = ?", id[:]).Scan(&refs)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		known = err == nil
		return err
	})
	return known, refs, errf(err, "chunk refs %s", id)
}

// NextChunk returns a chunk that follows id in some file's chunk list and
// is not that file's last chunk: a chunk whose end is a cut the chunker
// made (a file's last chunk ends where its bytes did). ok is false when
// there is none. It is the chunker's prediction of what comes after id
// in data that was stored before (chunker.StreamOptions.Predict).
func (db *DB) NextChunk(ctx context.Context, id stores.ID) (next Chunk, ok bool, err error) {
	err = db.read(ctx, func(q *conn) error {
		var nid []byte
		err := q.QueryRowContext(ctx, `SELECT n.chunk_id, n.size FROM file_chunks c
			JOIN file_chunks n ON n.ino = c.ino AND n.seq = c.seq + 1
			WHERE c.chunk_id = ?
			AND EXISTS (SELECT 1 FROM file_chunks z WHERE z.ino = n.ino AND z.seq = n.seq + 1)
			LIMIT 1`, id[:]).Scan(&nid, &next.Size)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(nid) != len(next.ID) {
			return fmt.Errorf("chunk id of %d bytes after %s: %w", len(nid), id, ErrCorrupt)
		}
		copy(next.ID[:], nid)
		ok = true
		return nil
	})
	return next, ok, errf(err, "next chunk after %s", id)
}

// UnrefChunksAfter pages through the chunks with no references, in id
// order, strictly after `after` (gc's candidates).
func (db *DB) UnrefChunksAfter(ctx context.Context, after stores.ID, limit int) ([]ChunkRef, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	var out []ChunkRef
	err := db.read(ctx, func(q *conn) error {
		rows, err := q.QueryContext(ctx,
			"SELECT id, size, refs FROM chunks WHERE id > ? AND refs = 0 AND held = 0 ORDER BY id LIMIT ?", after[:], limit)
		if err != nil {
			return err
		}
		out, err = scanChunkRefs(rows)
		return err
	})
	return out, errf(err, "unreferenced chunks after %s", after)
}

// HasChunk reports whether the index has a row for id (referenced or not).
func (db *DB) HasChunk(ctx context.Context, id stores.ID) (bool, error) {
	var ok bool
	err := db.read(ctx, func(q *conn) error {
		var one int
		err := q.QueryRowContext(ctx, "SELECT 1 FROM chunks WHERE id = ?", id[:]).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, errf(err, "has chunk %s", id)
}

// Usage returns the running totals: one row read, cheap enough for every
// statfs.
func (db *DB) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := db.read(ctx, func(q *conn) error {
		err := q.QueryRowContext(ctx, `SELECT files, dirs, inodes, logical_bytes, unique_chunks, unique_bytes
			FROM counters WHERE id = 1`).Scan(&u.Files, &u.Dirs, &u.Inodes, &u.LogicalBytes, &u.UniqueChunks, &u.UniqueBytes)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("counters: no row: %w", ErrCorrupt)
		}
		return scanErr(err, "counters")
	})
	return u, errf(err, "usage")
}

// RecountUsage computes Usage from the tables, scanning them (for fsck and
// tests; Usage is the cheap form).
func (db *DB) RecountUsage(ctx context.Context) (Usage, error) {
	var u Usage
	err := db.view(ctx, func(tx *conn) error {
		return recount(ctx, tx, &u)
	})
	return u, errf(err, "recount usage")
}

func recount(ctx context.Context, q querier, u *Usage) error {
	err := q.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*),
		coalesce(sum(CASE WHEN (mode & %d) = %d THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN (mode & %d) = %d THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN (mode & %d) = %d THEN size ELSE 0 END), 0) FROM inodes`,
		modeType, sIFREG, modeType, sIFDIR, modeType, sIFREG)).Scan(&u.Inodes, &u.Files, &u.Dirs, &u.LogicalBytes)
	if err != nil {
		return scanErr(err, "inodes")
	}
	err = q.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(size), 0) FROM chunks WHERE refs > 0").
		Scan(&u.UniqueChunks, &u.UniqueBytes)
	return scanErr(err, "chunks")
}
