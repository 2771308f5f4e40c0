// Package stores defines the chunk store interface that every backend
// implements, its sentinel errors, and the backends themselves (local
// directory, in-memory, S3), plus wrappers that implement Store too: a
// fault-injecting store for tests and a Tier (an ordered list of stores
// with failover). Besides chunks, every backend keeps named meta objects
// (MetaStore, the index backup's home), outside its chunk layout.
//
// Package stores imports nothing else of dualstore: the chunker, the
// index, the dual manager and the filesystem all build on it.
//
// Invariants: a chunk's id is the hash of its uncompressed bytes; stores
// never compute or check that hash (the dual manager does), but they do
// report undecodable data (a broken zstd frame) as ErrCorrupt. Ids are
// validated before they become paths or object keys, so nothing a caller
// passes can escape a store's root.
package stores
