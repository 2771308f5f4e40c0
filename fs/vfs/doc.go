// Package vfs is dualstore's file layer, the part of the filesystem that
// knows nothing of FUSE: the open files and their content, the chunk cache
// and the prefetch of sequential reads. Package fs adapts it to go-fuse;
// anything else (a test, an NFS or S3 front end) can drive it the same
// way, without a mount, root or /dev/fuse.
//
// # What it owns
//
//   - The open-file table: every Handle on an inode shares one state, so
//     two handles see the same bytes. The state lives from the first Open
//     to the last Release.
//   - Writes. Sequential writes at the end of a file stream through the
//     content-defined chunker as they arrive; each cut chunk goes to both
//     tiers through the dual manager while the writer goes on. A file that
//     stays below the chunker's minimum size is kept in memory and becomes
//     its one chunk at Flush. Non-sequential writes and truncates go to a
//     staging file on local disk (unlinked at once) and are re-chunked at
//     Flush, from the first dirty chunk until the new cuts meet the old
//     boundaries.
//   - Commit (Flush, Fsync, the last Release): wait for the file's chunks,
//     then commit its chunk list to the metadata in one transaction. A
//     chunk that could not be stored reverts the file to its last
//     committed content and the error is returned.
//   - Reads: offset → chunk by binary search, through a bounded LRU chunk
//     cache with one fetch in flight per chunk, with a readahead window
//     that doubles while reads stay sequential. Reads return slices of the
//     cached chunks (for readv), never copies.
//   - Attributes of open files (Attr, EntryAttr): the size and mtime of
//     unflushed writes.
//   - Orphans: an inode whose last name went is purged from the metadata
//     when both the front end has forgotten it (Forgot) and its last
//     handle is released, whichever comes second.
//   - Dedup (a chunk the index references and the stores hold is not
//     written again) and prediction (a chunk the index knows to come next
//     is cut without the rolling hash), and the counters (Stats).
//
// The metadata it needs is the Meta interface, which it owns; *index.DB
// implements it.
//
// # Imports
//
// vfs imports dual, index, chunker and stores, and must not import go-fuse
// (github.com/hanwen/go-fuse/...) or package fs: the kernel's page cache,
// errno values, FUSE_INTERRUPT and the control files are the adapter's.
// TestNoFUSEImport checks it.
//
// # Invariants
//
//   - A chunk is in the stores before an index entry points at it: a
//     commit waits for every chunk of the file first, and a failed chunk
//     write reverts the file instead of committing.
//   - The chunk ids a file's uncommitted content may reference are held
//     (dual.Manager.Hold) from the moment they are cut, before the dedup
//     check, until the commit or the revert, so gc cannot remove a chunk
//     between the dedup check and the commit.
//   - Memory stays bounded whatever the file size: a stream holds about
//     one chunk, staged writes live on disk, the cache and the prefetches
//     in flight are bounded (Options.CacheBytes, Options.Prefetch).
//   - Cached chunk bytes are never modified, so reads hand them out
//     without copying.
//   - A failed write is kept and reported by every later Write and by the
//     next Flush or Fsync (which revert the file), never only by Release,
//     whose error a front end may drop (the kernel does).
package vfs
