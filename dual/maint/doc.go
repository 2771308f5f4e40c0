// Package maint is filesystem maintenance over an index and its dual
// manager: comparisons, repairs and migrations limited to a subtree, gc,
// and fsck. The mount's `.dualstore/ctl` and the offline CLI run the same
// code: both build a run's options with Tuning.Scrub or Tuning.GC from the
// configured Tuning and the run's Overrides, and both start runs through
// Maintenance.
//
// It imports dual, index and stores, never go-fuse or package fs: an
// offline `dualstore fsck` does not link FUSE. The index methods it needs
// are the Index interface, which it owns.
//
// Invariants:
//   - DefaultTuning is the one place the defaults of a run live; the same
//     limits, the bounds table's compare.* entries (dual/bounds), hold
//     online and offline.
//   - fsck never deletes a file or a chunk; its chunk phase is a dual
//     scrub, so it has the scrub's rate limit, stop and progress.
package maint
