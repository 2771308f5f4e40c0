// Package replica keeps the index in every tier: a snapshot of its
// database pages plus, for each durability point, the pages the point
// changed, written as LTX files (github.com/superfly/ltx: sorted pages,
// LZ4 per page, a CRC64 of the file and rolling checksums of the whole
// database before and after each file). Either tier alone is enough to
// rebuild the index with Restore.
//
// Objects, in each tier's meta space (stores.MetaStore), never among the
// chunks:
//
//	index/<fsid>/<generation>/<seq:016x>-<unixms:013d>-<b3:016x>.ltx
//
// A generation starts with its snapshot (seq 1) and grows by one segment
// per durability point (seq 2, 3, ...). <unixms> is the point in time the
// object brings the index to; <b3> is the first 64 bits of the BLAKE3 of
// the object's bytes, checked before anything is decoded. Generation names
// sort by their start time. Each segment's pre-apply checksum must be the
// previous object's post-apply checksum, so a gap, a reordering or an
// object of another generation is caught.
//
// Objects are untrusted when read back: no object larger than
// MaxObjectBytes is written or read, and Restore checks an object's frame
// (page sizes within the object, pages in order and within the image)
// before the LTX decoder, which trusts it, allocates anything from it.
//
// The Replicator (replica.go) ships the objects: one queue per tier, so a
// slow or failing tier never holds the other back; a tier that cannot take
// them is retried with backoff, and its lag and errors are in Stats. A new
// generation starts at the first start, after an unclean stop, every
// SnapshotInterval, when the segments since the snapshot outgrow the
// database, or when a lagging tier overflows the spool; generations older
// than the retention window go once a newer one is complete.
package replica
