// Package dual is the dual-store manager: it writes every chunk to a
// primary and a safety tier at once, reads from the preferred tier with
// hash verification, falls back to the other tier and heals the copy that
// failed, keeps a durable pending list for one-sided writes and drains it
// in the background, compares and repairs the two tiers, and counts all of
// it for the monitor.
//
// It imports stores only; the durable pending list is an interface the
// index implements, and the chunks to compare come from a Source function,
// so dual knows nothing of files.
//
// Invariants:
//   - Put returns nil only when the tiers that Options.Require names hold
//     the chunk, and any tier that missed it is recorded durably as
//     pending before Put returns.
//   - Get returns only bytes that hash to the id asked for.
//   - Repair and backfill write only bytes that hash to the id.
//   - A store that hangs fails its call after Options.StoreTimeout instead
//     of hanging the caller.
package dual
