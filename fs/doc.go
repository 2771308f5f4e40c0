// Package fs is dualstore's FUSE adapter: go-fuse nodes over the index's
// tree and the file layer of package vfs, the `.dualstore/` control
// directory, the mapping of errors to errno values, the kernel's page
// cache policy and the mount itself. The file layer (open files,
// streaming, staging, re-chunking, commit, chunk cache, readahead) is
// vfs's and is tested there without a mount; this package is tested by
// mounting for real.
//
// It imports go-fuse as gofs (and fuse), vfs, dual, index and stores.
// Nothing but cmd imports it. The tree operations reach the index
// through the Meta interface, which embeds vfs.Meta.
//
// # Interrupts
//
// FUSE_INTERRUPT is not honoured, for file I/O or for metadata operations:
// every request's context is detached from the kernel's cancellation
// (context.WithoutCancel). The kernel interrupts a request whenever the
// calling thread gets any signal, and Go programs get SIGURG all the time
// (goroutine preemption); honouring it turned read, write, close, stat,
// rename… into EINTR, which those calls never return on a local
// filesystem and which C programs do not retry, or worse into a reverted
// file. Store calls are bounded by store_timeout instead, and a fatal
// signal still ends the caller at once (the kernel stops waiting).
//
// # Errors: Flush, Fsync and Release
//
// Write errors are reported from Write, Flush and Fsync. Flush runs at
// every close(2) (more than once per handle after dup or fork) and
// commits; Release comes later and commits anything left as a safety
// net, but the kernel ignores what it returns, so nothing is reported
// only there. toErrno (errno.go) is the one place an error becomes an
// errno: store errors never reach go-fuse's ToErrno, and anything not
// recognised is EIO, never ENOSYS or ENOENT.
//
// # Orphans
//
// An inode whose last name goes (unlink, rename over it) while the kernel
// still holds it or a file is open on it is an orphan: it stays readable
// through the open descriptors and is purged from the index when both the
// kernel has forgotten it (OnForget) and the last open is released,
// whichever comes second (vfs.FS.Unlinked, Forgot, Handle.Release). An
// orphan left by a crash is purged at the next mount.
//
// # The kernel's page cache
//
// There is no writeback cache: writes go through the kernel to this
// server. An open keeps the kernel's page cache (FOPEN_KEEP_CACHE) only
// when nobody opened the file for writing or truncated it since the
// kernel last dropped it and nobody has it open for writing now (libfuse's
// cache=auto; see keepCache). A reader that opens a file someone is
// writing gets FOPEN_DIRECT_IO, so a read racing a write in flight cannot
// put stale bytes into the cache (mmap still works:
// CAP_DIRECT_IO_ALLOW_MMAP). A failed commit reverts the file to its last
// committed content behind the kernel's back: the next open drops the
// cache, and a NotifyContent invalidates it for the descriptors already
// open, sent from its own goroutine because the kernel may wait in it for
// reads this server has yet to answer.
//
// # Memory: the nodes the kernel holds
//
// go-fuse keeps a node (about 450 bytes with its tables) for every inode
// the kernel has looked up, until the kernel forgets it, which it does
// only under memory pressure: a find over a million files would leave
// 450 MB in the daemon. nodeLRU (nodes.go) tracks them, least recently
// looked up first, and past Options.MaxNodes (100,000) a background round
// asks the kernel to forget the oldest eighth (FUSE_NOTIFY_PRUNE; on
// kernels before 6.16, which refuse it, their entries are invalidated
// instead). The kernel keeps the ones in use (open files, working
// directories, directories with cached entries below them) and sends
// FORGET for the rest; a later access costs a LOOKUP. A Lookup of a name
// go-fuse still holds returns that node, so the kernel's revalidations
// allocate nothing.
//
// # Control files
//
// `.dualstore/` at the root (stats, compare, config, ctl) is virtual and
// reserved: it cannot be created, removed, renamed over or linked. Its
// inode numbers start at 0x7FFFFFFF00000000 (the directory) and count up
// (stats, ctl, compare, config), far above any the index hands out. Each
// open of a control file renders a fresh snapshot and is DIRECT_IO.
//
// # Statistics and health
//
// Stats is the one snapshot every view renders: `.dualstore/stats`,
// `dualstore stats` and `status`, and the Prometheus collector of
// package fs/metrics. It counts the FUSE requests by kind with their
// latency (fuseops.go wraps go-fuse's node bridge, so no node method
// has to), and carries the health CheckHealth computes from the rest of
// it: the rules live in one place.
package fs
