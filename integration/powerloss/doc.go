// Command powerloss is a FUSE filesystem for power-loss tests: a loopback
// of a backing directory that keeps written file data in its own memory
// until an fsync reaches it, so that killing it (SIGKILL) loses exactly
// what a power loss would lose, as LazyFS does for Jepsen. The integration
// tests (integration/powerloss_test.go) put dualstore's data dir (the
// index and both local stores) on it and cut the power under a running
// mount.
//
//	powerloss -backing DIR -mount DIR [-debug]
//
// # What is durable
//
// The backing directory stands for the disk; the layer's memory stands for
// the page cache of a machine that loses power.
//
//   - Names and metadata are durable at once: create, mkdir, rename,
//     unlink, link, symlink, rmdir, chmod, chown, utimes and xattrs go to
//     the backing directory before the call returns, as a journaled
//     filesystem's metadata would after its next commit. A directory
//     fsync does nothing.
//   - File data is not: write(2), truncate(2), ftruncate(2), O_TRUNC and
//     fallocate(2) change only the layer's copy of the file, which reads,
//     stat and mmap see. The backing file gets the data at fsync(2) or
//     fdatasync(2) of any descriptor of the file (FUSE_FSYNC), and only
//     then. A file renamed into place, or closed and opened again, keeps
//     its unsynced data: it belongs to the backing inode (device and inode
//     number), not to a name or a descriptor. So a file created and
//     renamed but never fsynced comes back empty after a power loss, as on
//     ext4 without auto_da_alloc.
//   - syncfs(2) and sync(2) make nothing durable, and there is nothing to
//     implement for them: Linux does not send syncfs to a FUSE daemon
//     (only virtiofs has FUSE_SYNCFS), so a program that relies on
//     syncfs of a FUSE filesystem gets no durability from it. That is
//     what this layer reproduces.
//
// The backing files are written, never fsynced: the machine the tests run
// on does not lose power.
//
// # Power loss
//
// A power loss is SIGKILL of the layer: its memory, with every unsynced
// byte, goes with it. The kernel keeps no copy: the layer mounts without
// writeback cache, so each write(2) reaches the layer before it returns,
// and after the kill the dead mount is detached (umount -l) and a fresh
// layer mounted on the same backing directory starts with an empty page
// cache. Stop whatever uses the mount first (the tests kill the dualstore
// daemon, then the layer), or it sees the mount die. SIGTERM or SIGINT
// unmount and exit 0; they do not write unsynced data either.
//
// # What it supports
//
// Everything SQLite in WAL mode needs, which the tests check by running
// dualstore on it: shared writable mmap of the -shm file (a FUSE file
// without direct_io is mapped through the page cache, whose dirty pages
// reach the layer as writes), and POSIX and flock locks, which the layer
// leaves to the kernel (it does not ask for lock forwarding, so the
// kernel keeps them locally, as for a local filesystem). O_DIRECT opens
// work (the kernel sends their reads and writes to the layer like any
// other). Refused: O_TMPFILE, fallocate modes other than plain and
// FALLOC_FL_KEEP_SIZE; copy_file_range falls back to reads and writes.
// Every backing file is opened read-write, whatever the caller asked
// for (the layer runs as root), so that a read-only descriptor can be
// fsynced and a partial page written.
//
// It logs nothing unless -debug is given.
package main
