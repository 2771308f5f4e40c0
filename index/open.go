package index

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// RootIno is the inode number of the root directory.
const RootIno uint64 = 1

// ApplicationID is stored in the SQLite file header (PRAGMA application_id)
// at creation; a database without it is not a dualstore index. It is "dUaL"
// in ASCII.
const ApplicationID uint32 = 0x6455614c

// Options configures Open.
type Options struct {
	// Path is the database file. Its directory must exist. SQLite keeps two
	// more files beside it while it is open (Path+"-wal", Path+"-shm").
	Path string
	// NewHeader is used only when Path does not exist yet: Hash and the
	// chunk sizes are required, FSID and Created are made when empty, and
	// FormatVersion is always FormatVersion. Ignored for an existing index
	// (compare Header() with the configuration instead).
	NewHeader Header
	// MustExist makes Open fail with an error wrapping ErrNotExist instead
	// of creating a missing index (for offline tools that only inspect).
	MustExist bool
	// Log receives Info on open and create, Warn for orphans purged at open,
	// Debug per mutating operation. The zero Logger discards.
	Log zerolog.Logger
}

// Validate checks the options without touching the file system. NewHeader
// is checked only when set, since opening an existing index does not use it.
func (o Options) Validate() error {
	if o.Path == "" {
		return fmt.Errorf("index: options: empty Path: %w", ErrInvalid)
	}
	if !o.NewHeader.isZero() {
		if err := o.NewHeader.validate(); err != nil {
			return fmt.Errorf("index: options: %w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// DB is an open index. All methods are safe for concurrent use.
type DB struct {
	path   string
	hdr    Header
	log    zerolog.Logger
	wr     *sql.DB // pool of one connection: wconn
	rd     *sql.DB // pool of the reader connections
	lock   *os.File
	closed atomic.Bool

	wmu     sync.Mutex // serialises write transactions
	epoch   uint64     // the current durability epoch (see Seal); guarded by wmu
	wconn   *conn      // the writer connection
	readers chan *conn // idle reader connections
	nread   int        // reader connections made
	done    chan struct{}

	capMu sync.Mutex // guards cap; taken after wmu
	cap   capture    // the backup's log reader (capture.go)
	capOn atomic.Bool
	uncut atomic.Int64 // when the oldest commit no cut holds yet was made (unix ns; 0: none)

	syncMu     sync.Mutex
	walDirSync uint64 // inode of the -wal file whose directory entry was synced
}

// Open opens the index at opts.Path, creating it when missing (see
// Options.NewHeader), and purges orphans a crash left behind. An existing
// file that is not SQLite, or whose pages fail SQLite's quick check (a
// valid header over damaged pages), gives an error wrapping ErrCorrupt, an
// SQLite database of another application one wrapping ErrForeign, a newer
// format one wrapping ErrVersion; all name the file, and the file is not
// modified.
// A file another process has open gives ErrLocked.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", opts.Path, err)
	}
	log := opts.Log.With().Str("component", "index").Logger()

	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		if opts.MustExist {
			return nil, fmt.Errorf("index %s: %w", path, ErrNotExist)
		}
		created, err := create(ctx, path, opts.NewHeader)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info().Str("path", path).Msg("index created")
		}
	case err != nil:
		return nil, fmt.Errorf("index %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("index %s: not a regular file: %w", path, ErrCorrupt)
	}

	db := &DB{path: path, log: log, done: make(chan struct{})}
	if err := db.open(ctx); err != nil {
		return nil, errors.Join(err, db.closeAll())
	}
	n, err := db.purgeOrphans(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("index %s: purge orphans: %w", path, err), db.closeAll())
	}
	if n > 0 {
		log.Warn().Int("orphans", n).Msg("purged inodes unlinked while open before a crash")
	}
	log.Info().Str("path", path).Str("fsid", db.hdr.FSID).Msg("index opened")
	return db, nil
}

// open locks and checks an existing file, then opens the connection pools.
func (db *DB) open(ctx context.Context) error {
	f, err := os.Open(db.path)
	if err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}
	db.lock = f
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("index %s: %w", db.path, ErrLocked)
		}
		return fmt.Errorf("index %s: lock: %w", db.path, err)
	}
	// Before SQLite sees the file: a foreign database may carry a hot
	// journal or WAL that SQLite would replay into it on first read.
	if err := checkFileHeader(f); err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}

	if db.wr, err = sql.Open("sqlite", dsn(db.path, 0)); err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}
	db.wr.SetMaxOpenConns(1)
	db.wr.SetMaxIdleConns(1)
	db.wr.SetConnMaxLifetime(0)
	db.wr.SetConnMaxIdleTime(0)

	// Check the header with the writer connection before anything can
	// write: WAL mode is set only on a database proven ours.
	hdr, err := readHeader(ctx, db.wr)
	if err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}
	db.hdr = hdr
	// A valid header says nothing about the other pages. Before anything
	// writes (WAL mode, an upgrade, the orphan purge) and before a mount
	// serves a tree from it: a damaged b-tree is refused here with one
	// error naming the file, instead of a mount that comes up and fails.
	if err := quickCheck(ctx, db.wr); err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}
	var mode string
	if err := db.wr.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("index %s: journal_mode: %w", db.path, sqlErr(err))
	}
	if mode != "wal" {
		return fmt.Errorf("index %s: journal_mode is %q, want wal", db.path, mode)
	}

	if db.wconn, err = newConn(ctx, db.wr); err != nil {
		return fmt.Errorf("index %s: %w", db.path, sqlErr(err))
	}
	if db.hdr.FormatVersion < FormatVersion {
		if err := db.upgrade(ctx); err != nil {
			return fmt.Errorf("index %s: upgrade from format %d: %w", db.path, db.hdr.FormatVersion, err)
		}
	}
	// Records left by a power loss or a crash belong to epochs before any
	// commit of this run.
	var last int64
	if err := db.wconn.QueryRowContext(ctx, "SELECT coalesce(max(epoch), 0) FROM undo").Scan(&last); err != nil {
		return fmt.Errorf("index %s: %w", db.path, sqlErr(err))
	}
	db.epoch = uint64(last) + 1

	n := min(max(4, runtime.GOMAXPROCS(0)), 16)
	if db.rd, err = sql.Open("sqlite", dsn(db.path, n)); err != nil {
		return fmt.Errorf("index %s: %w", db.path, err)
	}
	db.rd.SetMaxOpenConns(n)
	// Connections are held for the life of the DB: when the last one
	// closes SQLite checkpoints and deletes the WAL, and Sync expects it to
	// stay put.
	db.rd.SetMaxIdleConns(n)
	db.rd.SetConnMaxLifetime(0)
	db.rd.SetConnMaxIdleTime(0)
	db.readers = make(chan *conn, n)
	for range n {
		c, err := newConn(ctx, db.rd)
		if err != nil {
			return fmt.Errorf("index %s: %w", db.path, sqlErr(err))
		}
		db.readers <- c
		db.nread++
	}
	return nil
}

// dsn builds a URI with the path escaped, so any file name works: for the
// writer when readers is 0, else for each of that many readers.
func dsn(path string, readers int) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Statement journals and temporary indexes in memory, not temp files.
	q.Add("_pragma", "temp_store(MEMORY)")
	if readers == 0 {
		q.Set("_txlock", "immediate")
		// SQLite's page caches are the daemon's memory beside Go's heap,
		// and fill up with whatever pages a long mount touches; the OS
		// page cache holds the file anyway. 16 MiB for the writer: a
		// 4096-chunk commit into an index of 600,000 chunks dirties 29
		// MiB of pages and spills some to the log before its commit
		// frame, which measured no slower than with 64 MiB (each page
		// is written once either way).
		q.Add("_pragma", "cache_size(-16384)")
		// Checkpoints only at durability points (Settle), after the
		// stores were synced: never when SQLite would choose.
		q.Add("_pragma", "wal_autocheckpoint(0)")
	} else {
		// 8 MiB shared by the readers (at least 1 MiB each: 2 MiB for the
		// 4 of a small machine, 1 MiB for 16): the upper levels of the
		// B-trees stay cached, leaves come from the OS page cache (the
		// index of a million files is 110 MB). The readers were 16 MiB
		// each, and a walk of a big tree filled every one.
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", max(1024, 8192/readers)))
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// checkFileHeader reads the 100-byte SQLite header: magic, then the
// application id. It does not trust the file to be SQLite at all.
func checkFileHeader(f *os.File) error {
	var b [100]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if n == 0 {
		return fmt.Errorf("empty file, not an SQLite database: %w", ErrCorrupt)
	}
	if n < len(b) || string(b[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("not an SQLite database: %w", ErrCorrupt)
	}
	if id := binary.BigEndian.Uint32(b[68:72]); id != ApplicationID {
		return fmt.Errorf("SQLite database with application_id %#08x, want %#08x: %w", id, ApplicationID, ErrForeign)
	}
	return nil
}

func readHeader(ctx context.Context, q querier) (Header, error) {
	var appID, userVersion int64
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return Header{}, sqlErr(err)
	}
	if uint32(appID) != ApplicationID {
		return Header{}, fmt.Errorf("application_id %#08x: %w", uint32(appID), ErrForeign)
	}
	var tables int
	if err := q.QueryRowContext(ctx,
		"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'header'").Scan(&tables); err != nil {
		return Header{}, sqlErr(err)
	}
	if tables != 1 {
		return Header{}, fmt.Errorf("no header table: %w", ErrCorrupt)
	}
	rows, err := q.QueryContext(ctx, "SELECT key, value FROM header")
	if err != nil {
		return Header{}, sqlErr(err)
	}
	defer rows.Close()
	kv := map[string]string{}
	for rows.Next() {
		var k, v sql.NullString
		if err := rows.Scan(&k, &v); err != nil {
			return Header{}, fmt.Errorf("header: %w: %w", ErrCorrupt, err)
		}
		if !k.Valid || !v.Valid {
			return Header{}, fmt.Errorf("header: NULL key or value: %w", ErrCorrupt)
		}
		kv[k.String] = v.String
	}
	if err := rows.Err(); err != nil {
		return Header{}, sqlErr(err)
	}
	h, err := decodeHeader(kv)
	if err != nil {
		return h, err
	}
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&userVersion); err != nil {
		return Header{}, sqlErr(err)
	}
	if userVersion != int64(h.FormatVersion) {
		return Header{}, fmt.Errorf("user_version %d but header format version %d: %w", userVersion, h.FormatVersion, ErrCorrupt)
	}
	return h, nil
}

// quickCheckProblems is how many problems a failed quick check lists.
const quickCheckProblems = 5

// quickCheck runs SQLite's quick_check: every page of every table and
// index is read and its b-tree structure checked (not the agreement of
// indexes with their tables, which integrity_check adds at several
// times the cost). It reads the whole file: about 0.8 s for a 327 MiB
// index of a million files, measured with the page cache warm.
func quickCheck(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", quickCheckProblems))
	if err != nil {
		return fmt.Errorf("quick check: %w", sqlErr(err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("quick check: %w", sqlErr(err))
		}
		if s != "ok" {
			problems = append(problems, strings.Join(strings.Fields(s), " "))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("quick check: %w", sqlErr(err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("quick check found damaged pages (%s): %w", strings.Join(problems, "; "), ErrCorrupt)
	}
	return nil
}

// create builds a new index in a temporary file and links it into place,
// so Path never holds a half-made index. It reports false if another
// process created Path first (which is then opened like any existing file).
func create(ctx context.Context, path string, nh Header) (bool, error) {
	if nh.isZero() {
		return false, fmt.Errorf("index %s: does not exist and no header to create it with: %w", path, ErrInvalid)
	}
	h, err := completeHeader(nh, time.Now())
	if err != nil {
		return false, fmt.Errorf("index %s: %w", path, err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return false, fmt.Errorf("index %s: %w", path, err)
	}
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	defer func() {
		for _, s := range []string{"", "-wal", "-shm", "-journal"} {
			_ = os.Remove(tmp + s)
		}
	}()
	if err := initDB(ctx, tmp, h); err != nil {
		return false, fmt.Errorf("index %s: create: %w", path, err)
	}
	if err := fsyncPath(tmp); err != nil {
		return false, fmt.Errorf("index %s: create: %w", path, err)
	}
	// link(2) fails if path exists, unlike rename(2): two processes racing
	// to create cannot replace each other's index.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return false, nil
		}
		if err := os.Rename(tmp, path); err != nil {
			return false, fmt.Errorf("index %s: create: %w", path, err)
		}
	}
	if err := fsyncPath(filepath.Dir(path)); err != nil {
		return false, fmt.Errorf("index %s: create: %w", path, err)
	}
	return true, nil
}

func initDB(ctx context.Context, file string, h Header) (err error) {
	u := url.URL{Scheme: "file", Path: file, RawQuery: url.Values{
		"_pragma": {"foreign_keys(1)", "synchronous(FULL)", "journal_mode(WAL)"},
	}.Encode()}
	d, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}()
	d.SetMaxOpenConns(1)
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmts := append([]string{
		fmt.Sprintf("PRAGMA application_id = %d", int32(ApplicationID)),
		fmt.Sprintf("PRAGMA user_version = %d", h.FormatVersion),
	}, append(append(schema, schemaUndo...), schemaHoles...)...)
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	for k, v := range encodeHeader(h) {
		if _, err := tx.ExecContext(ctx, "INSERT INTO header (key, value) VALUES (?, ?)", k, v); err != nil {
			return err
		}
	}
	ns := toNS(h.Created)
	if _, err := tx.ExecContext(ctx, `INSERT INTO inodes
		(ino, mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns)
		VALUES (?, ?, 2, 0, 0, 0, 0, ?, ?, ?)`, RootIno, syscall.S_IFDIR|0o755, ns, ns, ns); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counters
		(id, files, dirs, inodes, logical_bytes, unique_chunks, unique_bytes)
		VALUES (1, 0, 1, 1, 0, 0, 0)`); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Move everything into the main file so that it is complete on its own
	// before it is linked into place.
	if _, err := d.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return err
	}
	return nil
}

// schema is plain SQL but for AUTOINCREMENT (an identity column in
// PostgreSQL). Names and xattr names are BLOBs: Linux names are bytes, and
// BLOB comparison is byte order in SQLite as bytea's is in PostgreSQL.
var schema = []string{
	`CREATE TABLE header (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	// One row of running totals, updated in the transactions that change them.
	`CREATE TABLE counters (
		id            INTEGER PRIMARY KEY CHECK (id = 1),
		files         INTEGER NOT NULL,
		dirs          INTEGER NOT NULL,
		inodes        INTEGER NOT NULL,
		logical_bytes INTEGER NOT NULL,
		unique_chunks INTEGER NOT NULL,
		unique_bytes  INTEGER NOT NULL
	)`,
	`CREATE TABLE inodes (
		ino      INTEGER PRIMARY KEY AUTOINCREMENT,
		mode     INTEGER NOT NULL,
		nlink    INTEGER NOT NULL,
		uid      INTEGER NOT NULL,
		gid      INTEGER NOT NULL,
		rdev     INTEGER NOT NULL,
		size     INTEGER NOT NULL,
		atime_ns INTEGER NOT NULL,
		mtime_ns INTEGER NOT NULL,
		ctime_ns INTEGER NOT NULL,
		target   BLOB,
		holes    INTEGER NOT NULL DEFAULT 0
	)`,
	`CREATE INDEX inodes_orphans ON inodes (ino) WHERE nlink = 0`,
	`CREATE TABLE dentries (
		parent INTEGER NOT NULL REFERENCES inodes (ino),
		name   BLOB    NOT NULL,
		ino    INTEGER NOT NULL REFERENCES inodes (ino),
		PRIMARY KEY (parent, name)
	)`,
	`CREATE INDEX dentries_ino ON dentries (ino)`,
	`CREATE TABLE chunks (
		id   BLOB    PRIMARY KEY,
		size INTEGER NOT NULL,
		refs INTEGER NOT NULL
	)`,
	`CREATE INDEX chunks_unref ON chunks (id) WHERE refs = 0`,
	`CREATE TABLE file_chunks (
		ino      INTEGER NOT NULL REFERENCES inodes (ino),
		seq      INTEGER NOT NULL,
		chunk_id BLOB    NOT NULL REFERENCES chunks (id),
		size     INTEGER NOT NULL,
		PRIMARY KEY (ino, seq)
	)`,
	`CREATE INDEX file_chunks_chunk ON file_chunks (chunk_id, ino)`,
	`CREATE TABLE xattrs (
		ino   INTEGER NOT NULL REFERENCES inodes (ino),
		name  BLOB    NOT NULL,
		value BLOB    NOT NULL,
		PRIMARY KEY (ino, name)
	)`,
	`CREATE TABLE pending (
		tier TEXT NOT NULL,
		id   BLOB NOT NULL,
		PRIMARY KEY (tier, id)
	)`,
}

// schemaUndo are the tables of format 2: what a file was before its
// commits since the last durability point (see Seal). Not tied to inodes
// by a foreign key: a purged file's records stay until they are settled.
var schemaUndo = []string{
	// held counts a chunk's undo entries: like refs for gc, not for usage.
	`ALTER TABLE chunks ADD COLUMN held INTEGER NOT NULL DEFAULT 0`,
	`CREATE TABLE undo (
		ino      INTEGER NOT NULL,
		epoch    INTEGER NOT NULL,
		size     INTEGER NOT NULL,
		mtime_ns INTEGER NOT NULL,
		ctime_ns INTEGER NOT NULL,
		PRIMARY KEY (ino, epoch)
	)`,
	`CREATE TABLE undo_chunks (
		ino      INTEGER NOT NULL,
		epoch    INTEGER NOT NULL,
		seq      INTEGER NOT NULL,
		chunk_id BLOB    NOT NULL REFERENCES chunks (id),
		size     INTEGER NOT NULL,
		PRIMARY KEY (ino, epoch, seq)
	)`,
	`CREATE INDEX undo_chunks_chunk ON undo_chunks (chunk_id)`,
}

// schemaHoles are the tables of format 3: a file's content is chunks and
// holes (ranges read as zeros, stored nowhere). A hole has the seq of its
// place in the file's list, beside the chunks of file_chunks, so the list
// is both tables merged by seq; holes reference no chunk and count in no
// refs or holds. inodes.holes is the sum of a file's holes (format 3 adds
// the column to an older inodes table).
var schemaHoles = []string{
	`CREATE TABLE file_holes (
		ino  INTEGER NOT NULL REFERENCES inodes (ino),
		seq  INTEGER NOT NULL,
		size INTEGER NOT NULL,
		PRIMARY KEY (ino, seq)
	)`,
	`CREATE TABLE undo_holes (
		ino   INTEGER NOT NULL,
		epoch INTEGER NOT NULL,
		seq   INTEGER NOT NULL,
		size  INTEGER NOT NULL,
		PRIMARY KEY (ino, epoch, seq)
	)`,
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Header returns the header read at Open.
func (db *DB) Header() Header { return db.hdr }

// File returns the absolute path of the database file.
func (db *DB) File() string { return db.path }

// Close closes the index. SQLite checkpoints the WAL into the database file
// as the last connection closes. Calls after the first return ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return fmt.Errorf("index %s: %w", db.path, ErrClosed)
	}
	if err := db.closeAll(); err != nil {
		return fmt.Errorf("index %s: close: %w", db.path, err)
	}
	return nil
}

func (db *DB) closeAll() error {
	var errs []error
	close(db.done)
	// Wait for the reader connections in use and the write in progress.
	for range db.nread {
		errs = append(errs, (<-db.readers).close())
	}
	db.wmu.Lock()
	if db.wconn != nil {
		errs = append(errs, db.wconn.close())
	}
	db.wmu.Unlock()
	db.StopCapture()
	// Readers first: the writer's close is then the last one, which
	// checkpoints and removes the WAL.
	if db.rd != nil {
		errs = append(errs, db.rd.Close())
	}
	if db.wr != nil {
		errs = append(errs, db.wr.Close())
	}
	// Only after SQLite has closed the file: closing any descriptor of it
	// drops the process's POSIX locks on it.
	if db.lock != nil {
		errs = append(errs, db.lock.Close())
	}
	return errors.Join(errs...)
}

// Sync makes every transaction committed before the call durable against
// power loss, for fsync(2). Commits already survive a crash of the process;
// what they lack is an fsync of the WAL, which Sync does (and, once per WAL
// file, of the directory holding it). It costs one fsync of the WAL.
func (db *DB) Sync(ctx context.Context) error {
	if db.closed.Load() {
		return fmt.Errorf("index %s: sync: %w", db.path, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("index %s: sync: %w", db.path, err)
	}
	db.syncMu.Lock()
	defer db.syncMu.Unlock()
	wal := db.path + "-wal"
	f, err := os.Open(wal)
	if errors.Is(err, iofs.ErrNotExist) {
		// No WAL (all checkpointed and removed): the database file holds
		// everything, synced by the checkpoint; sync it again to be sure.
		f, err = os.Open(db.path)
	}
	if err != nil {
		return fmt.Errorf("index %s: sync: %w", db.path, err)
	}
	// The WAL is written through SQLite's own descriptor; fsync applies to
	// the file, so any descriptor does. SQLite holds no POSIX lock on the
	// WAL itself (its locks are on the database and the -shm file), so
	// closing this descriptor releases nothing of SQLite's.
	err = f.Sync()
	var ino uint64
	if fi, serr := f.Stat(); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("index %s: sync: %w", db.path, err)
	}
	if ino == 0 || ino != db.walDirSync {
		if err := fsyncPath(filepath.Dir(db.path)); err != nil {
			return fmt.Errorf("index %s: sync dir: %w", db.path, err)
		}
		db.walDirSync = ino
	}
	return nil
}
