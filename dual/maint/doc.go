// Package maint is filesystem maintenance over an index and its dual
// manager: comparisons, repairs and migrations limited to a subtree, gc,
// and fsck. The mount's `.dualstore/ctl` and the offline CLI run the same
// code.
//
// It imports dual, index and stores, never go-fuse or package fs: an
// offline `dualstore fsck` does not link FUSE. The index methods it needs
// are the Index interface, which it owns.
//
// Invariant: fsck never deletes a file or a chunk.
package maint
