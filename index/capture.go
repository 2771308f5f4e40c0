package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"sort"
	"syscall"
	"time"
)

// # Capture: the index's changes, page by page, for its backup
//
// The backup (index/replica) keeps a copy of the index in every tier as a
// snapshot of the database pages plus the pages each durability point
// changed. The index hands those pages over without instrumenting a single
// query: every commit appends the pages it changed to SQLite's write-ahead
// log, so reading the log's committed frames gives exactly the changed
// pages. Checkpoints, which empty the log, are taken only by Settle (see
// undo.go), and Settle reads the log's tail first, so no frame is ever
// missed.
//
//	StartCapture(sink)   // from here on, every committed page is captured
//	Snapshot(fn)         // a consistent image of every page; the captured
//	                     // pages after it are exactly the later changes
//	Seal() → e           // the pages committed in epoch e become a Cut
//	Settle(e)            // ... and are handed to sink once e is durable
//
// So a backup that holds a snapshot and applies every Cut after it, in
// order, holds the database as it was at the last settled Seal: a state
// whose chunks were synced to the stores before it was handed over.
//
// Reading the log does not need the writer lock: committed frames never
// change until a checkpoint restarts the log, and a frame being written
// fails the log's checksum chain, where reading stops (as SQLite's own
// recovery does). Tail reads what is there in the background, so the
// reading Seal does under the writer lock stays short.

// Cut holds the pages one or more durability epochs changed: the newest
// content of each page committed after the previous cut, and the database
// size after the last commit. A page past Commit is gone (the database
// shrank); a page below Commit and absent from Pages is unchanged.
type Cut struct {
	Epoch uint64 // the last epoch the cut covers
	Time  time.Time
	// Since is when the oldest commit in the cut was made (zero when only
	// the index's own bookkeeping changed): the backup's lag counts from it.
	Since    time.Time
	PageSize uint32
	Commit   uint32            // database size in pages
	Pages    map[uint32][]byte // page number → content, PageSize bytes each
}

// capture is the log reader's state, guarded by capMu (taken after wmu
// when both are held).
type capture struct {
	on     bool
	sink   func([]Cut, error)
	broken error // a log read failed: the cuts after it are incomplete

	f     *os.File // the -wal file, opened on first use
	ino   uint64   // its inode, to notice a new log file
	salt  [2]uint32
	big   bool  // checksums in big-endian words
	valid bool  // salt, big and ck describe the log in f
	off   int64 // offset after the last committed frame read
	ck    [2]uint32
	psize uint32

	commit  uint32            // database size in pages at the last commit read
	pending map[uint32][]byte // pages committed since the last cut
	cuts    []Cut             // sealed, waiting for Settle
	scratch [][]byte          // frames of the transaction being read
	spare   [][]byte          // page buffers to reuse
}

const (
	walHeaderSize = 32
	walFrameHdr   = 24
	walMagicLE    = 0x377f0682
	walMagicBE    = 0x377f0683
)

// StartCapture starts capturing committed pages: from here on, Seal cuts
// the pages committed since the previous cut and Settle hands the cuts of
// the epochs it settles to sink, in order, on Settle's goroutine. The
// pages committed before StartCapture are not captured: take a Snapshot.
// When reading the log fails, sink gets the error instead of cuts, and
// capture stays off until started again (after a new snapshot).
func (db *DB) StartCapture(sink func([]Cut, error)) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.capMu.Lock()
	defer db.capMu.Unlock()
	if db.closed.Load() {
		return fmt.Errorf("index %s: capture: %w", db.path, ErrClosed)
	}
	if db.cap.on {
		return fmt.Errorf("index %s: capture already started", db.path)
	}
	ps, err := db.pageSize()
	if err != nil {
		return err
	}
	db.cap = capture{on: true, sink: sink, psize: ps, pending: map[uint32][]byte{}}
	db.capOn.Store(true)
	db.uncut.Store(0)
	// Skip what the log holds now: a snapshot covers it.
	if err := db.tailLocked(); err != nil {
		db.cap = capture{}
		return err
	}
	db.cap.pending = map[uint32][]byte{}
	return nil
}

// StopCapture stops capturing and drops the cuts not yet settled.
func (db *DB) StopCapture() {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	if db.cap.f != nil {
		_ = db.cap.f.Close()
	}
	db.cap = capture{}
	db.capOn.Store(false)
}

// Tail reads the log's newly committed frames, so that Seal has little left
// to read under the writer lock. A no-op when capture is off.
func (db *DB) Tail() error {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	if !db.cap.on {
		return nil
	}
	return db.tailLocked()
}

// cutLocked ends the pages of epoch e. Caller holds wmu.
func (db *DB) cutLocked(e uint64) error {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	if err := db.readOrBreak(); err != nil || !db.cap.on {
		return err
	}
	c := &db.cap
	if len(c.pending) == 0 {
		// Nothing committed (a commit always changes page 1's change
		// counter or some page): no cut.
		return nil
	}
	var since time.Time
	if ns := db.uncut.Swap(0); ns != 0 {
		since = time.Unix(0, ns)
	}
	c.cuts = append(c.cuts, Cut{Epoch: e, Time: time.Now(), Since: since, PageSize: c.psize, Commit: c.commit, Pages: c.pending})
	c.pending = map[uint32][]byte{}
	return nil
}

// drainLocked reads the log's tail before a checkpoint may restart it.
// Caller holds wmu.
func (db *DB) drainLocked() error {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	return db.readOrBreak()
}

// readOrBreak reads the log's tail when capture is on, and breaks capture
// when that fails. Caller holds capMu.
func (db *DB) readOrBreak() error {
	if !db.cap.on {
		return nil
	}
	if err := db.tailLocked(); err != nil {
		return db.breakLocked(err)
	}
	return nil
}

// breakLocked turns capture off after a failed log read: the pages of
// the frames it could not read are lost to the cuts, so the backup must
// start again from a snapshot. The sink hears of it at the next Settle.
func (db *DB) breakLocked(err error) error {
	c := &db.cap
	if c.f != nil {
		_ = c.f.Close()
	}
	*c = capture{sink: c.sink, broken: err}
	db.capOn.Store(false)
	return err
}

// handOver gives the cuts of epochs up to e to the sink.
func (db *DB) handOver(e uint64) {
	db.capMu.Lock()
	c := &db.cap
	if err := c.broken; err != nil {
		sink := c.sink
		*c = capture{}
		db.capMu.Unlock()
		if sink != nil {
			sink(nil, err)
		}
		return
	}
	if !c.on {
		db.capMu.Unlock()
		return
	}
	n := 0
	for n < len(c.cuts) && c.cuts[n].Epoch <= e {
		n++
	}
	cuts := c.cuts[:n:n]
	c.cuts = append([]Cut(nil), c.cuts[n:]...)
	sink := c.sink
	db.capMu.Unlock()
	if len(cuts) > 0 && sink != nil {
		sink(cuts, nil)
	}
}

// Unhanded returns when the oldest commit not yet handed to the sink was
// made (zero when every commit was): the start of the backup's lag.
func (db *DB) Unhanded() time.Time {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	var oldest time.Time
	for _, c := range db.cap.cuts {
		if !c.Since.IsZero() && (oldest.IsZero() || c.Since.Before(oldest)) {
			oldest = c.Since
		}
	}
	if ns := db.uncut.Load(); ns != 0 {
		if t := time.Unix(0, ns); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}

// Recycle returns a cut's page buffers for reuse once the sink is done
// with them.
func (db *DB) Recycle(c Cut) {
	db.capMu.Lock()
	defer db.capMu.Unlock()
	for _, p := range c.Pages {
		if len(db.cap.spare) < 1024 && uint32(len(p)) == db.cap.psize {
			db.cap.spare = append(db.cap.spare, p)
		}
	}
}

func (db *DB) pageSize() (uint32, error) {
	var ps int64
	if err := db.wconn.QueryRowContext(context.Background(), "PRAGMA page_size").Scan(&ps); err != nil {
		return 0, fmt.Errorf("index %s: page_size: %w", db.path, sqlErr(err))
	}
	return uint32(ps), nil
}

// tailLocked reads the committed frames after c.off into c.pending.
// Caller holds capMu.
func (db *DB) tailLocked() error {
	c := &db.cap
	if err := db.openLog(); err != nil {
		return err
	}
	if c.f == nil {
		return nil // no log: everything is in the database file
	}
	var hdr [walHeaderSize]byte
	if n, err := c.f.ReadAt(hdr[:], 0); n < walHeaderSize {
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("index %s: read log header: %w", db.path, err)
		}
		return nil // empty or being created
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != walMagicLE && magic != walMagicBE {
		return nil // not (yet) a valid log header
	}
	big := magic == walMagicBE
	ck := walChecksum(big, [2]uint32{}, hdr[:24])
	if ck != [2]uint32{binary.BigEndian.Uint32(hdr[24:]), binary.BigEndian.Uint32(hdr[28:])} {
		return nil // a header being rewritten: read it next time
	}
	if ps := binary.BigEndian.Uint32(hdr[8:]); ps != c.psize {
		return fmt.Errorf("index %s: log page size %d, database %d", db.path, ps, c.psize)
	}
	salt := [2]uint32{binary.BigEndian.Uint32(hdr[16:]), binary.BigEndian.Uint32(hdr[20:])}
	if !c.valid || salt != c.salt {
		// A new log (after a checkpoint restarted it). Settle read the
		// old one to its end before checkpointing.
		c.valid, c.salt, c.big, c.off, c.ck = true, salt, big, walHeaderSize, ck
	}
	frame := int64(walFrameHdr) + int64(c.psize)
	const batch = 64
	buf := make([]byte, batch*frame)
	off, run := c.off, c.ck
	c.scratch = c.scratch[:0]
	for {
		n, err := c.f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("index %s: read log: %w", db.path, err)
		}
		frames := int64(n) / frame
		for i := int64(0); i < frames; i++ {
			fr := buf[i*frame : (i+1)*frame]
			if binary.BigEndian.Uint32(fr[8:]) != salt[0] || binary.BigEndian.Uint32(fr[12:]) != salt[1] {
				return nil
			}
			run = walChecksum(c.big, run, fr[:8])
			run = walChecksum(c.big, run, fr[walFrameHdr:])
			if run != [2]uint32{binary.BigEndian.Uint32(fr[16:]), binary.BigEndian.Uint32(fr[20:])} {
				return nil
			}
			pgno := binary.BigEndian.Uint32(fr[0:])
			c.scratch = append(c.scratch, db.pageCopy(pgno, fr[walFrameHdr:]))
			off += frame
			if commit := binary.BigEndian.Uint32(fr[4:]); commit != 0 {
				for _, p := range c.scratch {
					pg := binary.BigEndian.Uint32(p[len(p)-4:])
					if old, ok := c.pending[pg]; ok {
						c.spare = append(c.spare, old)
					}
					c.pending[pg] = p[:len(p)-4]
				}
				c.scratch = c.scratch[:0]
				c.commit, c.off, c.ck = commit, off, run
			}
		}
		if int64(n) < int64(len(buf)) {
			// Frames of a transaction still being written stay in the
			// log for the next read, from c.off.
			for _, p := range c.scratch {
				c.spare = append(c.spare, p[:len(p)-4])
			}
			c.scratch = c.scratch[:0]
			return nil
		}
	}
}

// pageCopy copies a page, with its number in 4 spare bytes at the end.
func (db *DB) pageCopy(pgno uint32, data []byte) []byte {
	c := &db.cap
	var p []byte
	if n := len(c.spare); n > 0 {
		p = c.spare[n-1][:len(data)+4]
		c.spare = c.spare[:n-1]
	} else {
		p = make([]byte, len(data)+4)
	}
	copy(p, data)
	binary.BigEndian.PutUint32(p[len(data):], pgno)
	return p
}

// openLog opens the -wal file, again when it was replaced.
func (db *DB) openLog() error {
	c := &db.cap
	fi, err := os.Stat(db.path + "-wal")
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index %s: log: %w", db.path, err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if c.f != nil && ino == c.ino {
		return nil
	}
	if c.f != nil {
		_ = c.f.Close()
		c.f, c.valid = nil, false
	}
	f, err := os.Open(db.path + "-wal")
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index %s: log: %w", db.path, err)
	}
	c.f, c.ino, c.valid = f, ino, false
	return nil
}

// walChecksum continues SQLite's log checksum over b (a multiple of 8
// bytes), in the words' byte order the log's magic names.
func walChecksum(big bool, s [2]uint32, b []byte) [2]uint32 {
	s0, s1 := s[0], s[1]
	if big {
		for i := 0; i+8 <= len(b); i += 8 {
			s0 += binary.BigEndian.Uint32(b[i:]) + s1
			s1 += binary.BigEndian.Uint32(b[i+4:]) + s0
		}
	} else {
		for i := 0; i+8 <= len(b); i += 8 {
			s0 += binary.LittleEndian.Uint32(b[i:]) + s1
			s1 += binary.LittleEndian.Uint32(b[i+4:]) + s0
		}
	}
	return [2]uint32{s0, s1}
}

// Snapshot calls fn with every page of the database, in page order, as
// one consistent image: the state after the last commit when it started.
// With capture on, the pages committed after that image are exactly those
// of the following cuts, so image plus cuts is the database. Writers are
// held only while the image is fixed, not while it is read. It returns the
// page size and the database size in pages.
func (db *DB) Snapshot(ctx context.Context, fn func(pgno uint32, data []byte) error) (SnapshotInfo, error) {
	var info SnapshotInfo
	var err error
	info.PageSize, info.Pages, info.Epoch, err = db.snapshot(ctx, fn)
	return info, err
}

// SnapshotInfo describes a Snapshot's image.
type SnapshotInfo struct {
	PageSize, Pages uint32
	// Epoch is the durability epoch open when the image was fixed: the
	// image holds every commit of the epochs before it and some of this
	// one, so the cuts of Epoch and later, applied to it, give the
	// database; earlier cuts are in it already and must not be applied.
	Epoch uint64
}

func (db *DB) snapshot(ctx context.Context, fn func(pgno uint32, data []byte) error) (pageSize, pages uint32, epoch uint64, err error) {
	c, err := db.acquire(ctx)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, err)
	}
	defer func() { db.readers <- c }()
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
	}
	defer func() { _, _ = c.ExecContext(context.Background(), "ROLLBACK") }()

	// Fix the image while no commit runs and the captured pages are
	// current: reading page 1 starts the read transaction's snapshot.
	db.wmu.Lock()
	epoch = db.epoch
	db.capMu.Lock()
	err = db.readOrBreak()
	db.capMu.Unlock()
	var first []byte
	var n int64
	if err == nil {
		err = c.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n)
	}
	if err == nil {
		err = c.QueryRowContext(ctx, "SELECT data FROM sqlite_dbpage WHERE pgno = 1").Scan(&first)
	}
	db.wmu.Unlock()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
	}
	if err := c.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n); err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
	}
	pageSize = uint32(len(first))
	rows, err := c.QueryContext(ctx, "SELECT pgno, data FROM sqlite_dbpage WHERE pgno > 1 ORDER BY pgno")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
	}
	defer rows.Close()
	if err := fn(1, first); err != nil {
		return 0, 0, 0, err
	}
	want := uint32(2)
	for rows.Next() {
		var pg int64
		var data []byte
		if err := rows.Scan(&pg, &data); err != nil {
			return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
		}
		if uint32(pg) != want || uint32(len(data)) != pageSize {
			return 0, 0, 0, fmt.Errorf("index %s: snapshot: page %d of %d bytes, want page %d", db.path, pg, len(data), want)
		}
		want++
		if err := fn(uint32(pg), data); err != nil {
			return 0, 0, 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: %w", db.path, sqlErr(err))
	}
	if int64(want-1) != n {
		return 0, 0, 0, fmt.Errorf("index %s: snapshot: read %d pages, database has %d", db.path, want-1, n)
	}
	return pageSize, uint32(n), epoch, nil
}

// SortedPages returns a cut's page numbers in order.
func (c *Cut) SortedPages() []uint32 {
	out := make([]uint32, 0, len(c.Pages))
	for p := range c.Pages {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
