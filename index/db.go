package index

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// querier is what conn, *sql.Conn and *sql.DB have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// maxCachedStmts bounds each connection's statement cache. The package has
// fewer distinct statements; batches of odd sizes bypass the cache.
const maxCachedStmts = 256

// conn is one SQLite connection held for the life of the DB, with its own
// cache of prepared statements: parsing SQL costs more than running the
// small statements a filesystem operation needs. A conn is used by one
// goroutine at a time.
type conn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

func newConn(ctx context.Context, pool *sql.DB) (*conn, error) {
	c, err := pool.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, stmts: map[string]*sql.Stmt{}}, nil
}

func (c *conn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(c.stmts) < maxCachedStmts {
		c.stmts[query] = st
	}
	return st, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c *conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (c *conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		// The uncached call fails the same way and carries the error in
		// its Row.
		return c.c.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c *conn) close() error {
	for _, st := range c.stmts {
		_ = st.Close()
	}
	c.stmts = nil
	return c.c.Close()
}

// usageDelta accumulates a write transaction's changes to the counters row.
type usageDelta struct {
	files, dirs, inodes, logicalBytes, uniqueChunks, uniqueBytes int64
}

// wtx is a write transaction on the writer connection.
type wtx struct {
	*conn
	d usageDelta
	// quiet marks the index's own bookkeeping (Settle dropping undo
	// records): not a change the backup's lag waits for.
	quiet bool
}

// update runs fn in one write transaction (BEGIN IMMEDIATE) on the writer
// connection, serialised by db.wmu, and applies its usage delta in the
// same transaction.
func (db *DB) update(ctx context.Context, fn func(w *wtx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.closed.Load() {
		return ErrClosed
	}
	c := db.wconn
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return sqlErr(err)
	}
	rollback := func() {
		// Fails harmlessly if SQLite already rolled back (some I/O errors).
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
	}
	w := &wtx{conn: c}
	if err := fn(w); err != nil {
		rollback()
		return err
	}
	if w.d != (usageDelta{}) {
		if _, err := c.ExecContext(ctx, `UPDATE counters SET
			files = files + ?, dirs = dirs + ?, inodes = inodes + ?, logical_bytes = logical_bytes + ?,
			unique_chunks = unique_chunks + ?, unique_bytes = unique_bytes + ? WHERE id = 1`,
			w.d.files, w.d.dirs, w.d.inodes, w.d.logicalBytes, w.d.uniqueChunks, w.d.uniqueBytes); err != nil {
			rollback()
			return sqlErr(err)
		}
	}
	// Not cancellable: once the work is done, a late cancel should not
	// turn a commit into an interrupted one.
	if _, err := c.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		rollback()
		return sqlErr(err)
	}
	if !w.quiet && db.capOn.Load() {
		db.uncut.CompareAndSwap(0, time.Now().UnixNano())
	}
	return nil
}

// acquire takes a reader connection from the pool.
func (db *DB) acquire(ctx context.Context) (*conn, error) {
	select {
	case c := <-db.readers:
		if db.closed.Load() {
			db.readers <- c
			return nil, ErrClosed
		}
		return c, nil
	case <-db.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read runs fn on a reader connection, each statement in its own implicit
// transaction: for single-statement reads.
func (db *DB) read(ctx context.Context, fn func(q *conn) error) error {
	c, err := db.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { db.readers <- c }()
	return fn(c)
}

// view runs fn in one read transaction, a consistent snapshot that does not
// block the writer (WAL).
func (db *DB) view(ctx context.Context, fn func(q *conn) error) error {
	c, err := db.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { db.readers <- c }()
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		return sqlErr(err)
	}
	err = fn(c)
	if _, rerr := c.ExecContext(context.Background(), "ROLLBACK"); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// toNS converts a time to the stored nanoseconds since the epoch, clamped
// to what int64 holds (years 1678 to 2262) instead of overflowing.
func toNS(t time.Time) int64 {
	const lim = math.MaxInt64/1_000_000_000 - 1
	switch s := t.Unix(); {
	case s > lim:
		return math.MaxInt64
	case s < -lim:
		return math.MinInt64
	}
	return t.UnixNano()
}

func fromNS(ns int64) time.Time { return time.Unix(0, ns) }

// orNow is t, or the current time when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// errf wraps err with the operation; sqlErr marks SQLite corruption.
func errf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("index: "+format+": %w", append(args, sqlErr(err))...)
}
