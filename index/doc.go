// Package index is dualstore's metadata store: the directory tree (inodes,
// names, modes, owners, times, sizes, symlink targets, hard links, extended
// attributes), each regular file's chunk list, the reference count of every
// chunk, the per-filesystem header (format version, FSID, hash and chunker
// parameters) and the durable list of chunks a tier is still missing.
//
// It is an embedded SQLite database (modernc.org/sqlite, pure Go) in one
// file. The schema is plain SQL (tables, primary keys, ordinary and partial
// indexes, INSERT … ON CONFLICT, RETURNING) so that a PostgreSQL engine
// shared by several hosts is a port of the statements, not a rewrite (see
// Portability).
//
// # Imports
//
// index imports only stores (for stores.ID) among dualstore's packages. It
// knows nothing about FUSE, chunk stores or the chunker: the filesystem layer
// maps its sentinel errors to errno values in one place.
//
// # Durability: WAL and synchronous=NORMAL
//
// Every mutating method is one transaction. The database runs in WAL mode
// with synchronous=NORMAL: a commit appends to the write-ahead log without
// an fsync, so a committed transaction survives a crash or kill -9 of the
// daemon (the log is in the page cache and is replayed on the next open),
// while commits stay cheap enough to run on every close(2). Only power loss
// can take back recent commits, which is what fsync(2) is for: Sync fsyncs
// the log, making every transaction committed before the call durable.
// Checkpoints sync the log before copying it and the database after, so no
// committed transaction is ever only in an unsynced place once Sync returned.
//
// The index is never more durable than the chunks it references: every
// commit of a chunk list records what the file was at the last durability
// point, checkpoints happen only in Settle (after the caller synced the
// stores), and after a power loss Revert undoes a commit whose chunks were
// lost. See undo.go.
//
// # Concurrency
//
// All methods are safe for concurrent use. Writers share one connection
// held for the life of the DB and are serialised by a Go mutex; each write
// is one BEGIN IMMEDIATE transaction, so there is never SQLITE_BUSY between
// writers. Readers take one of a fixed set of read-only connections
// (query_only) and run concurrently with each other and with the writer
// (WAL snapshots); multi-statement reads run in one read transaction. Every
// connection keeps its prepared statements, so a Lookup costs one
// statement execution, not a parse. The database file is locked with
// flock(2) for the life of a DB, so a second daemon or an offline tool
// cannot open it at the same time (ErrLocked): the orphan purge on open
// relies on no other process having files open.
//
// # Portability
//
// A PostgreSQL engine is a port: the statements use no SQLite-only syntax
// but AUTOINCREMENT (an identity column there), `?` placeholders ($n there),
// the PRAGMAs set on open, and hex() and typeof() in Check. Names, xattr names and chunk ids are BLOBs (bytea). Tables are
// ordinary rowid tables with primary keys, not WITHOUT ROWID: measured, it
// did not speed up the commit of a 4096-chunk list.
//
// # Invariants
//
//   - Inode numbers are never reused (AUTOINCREMENT), so the FUSE layer can
//     use a constant generation number. RootIno (1) always exists.
//   - A directory's nlink is 2 plus its number of subdirectories; a
//     directory has exactly one name. Other inodes' nlink is their number of
//     names; an inode with nlink 0 is an orphan (unlinked while open), kept
//     until Purge, and purged on the next Open after a crash.
//   - chunks.refs is the number of file_chunks rows naming the chunk. A chunk
//     row with refs 0 is garbage for gc; DeleteChunks removes it only while
//     refs is still 0, checked in the same transaction.
//   - The counters row (Usage) equals a recount of the tables; it is updated
//     in the transaction that changes them. RecountUsage recomputes it, and
//     Check verifies this and every other invariant here (for fsck and
//     tests).
//   - Nothing read from the file is trusted: chunk ids of the wrong length,
//     out-of-range integers, bad names or a broken header are reported as
//     errors wrapping ErrCorrupt that name the table, never a panic.
//   - Open never modifies a file that is not a dualstore index: a file that
//     is not SQLite (ErrCorrupt) or an SQLite database of another application
//     (ErrForeign) is reported, naming the file, and left byte-identical; so
//     is one whose pages fail SQLite's quick check (ErrCorrupt), run before
//     anything writes. A
//     new index is built in a temporary file and linked into place, so a
//     crash during creation never leaves a half-made index at Path.
package index
