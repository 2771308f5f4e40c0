// Package chunker cuts byte streams into content-defined chunks and names
// each chunk by its hash.
//
// It owns the chunking parameters (Params, DefaultParams, NewPolynomial),
// the chunk id hashes (Hasher: BLAKE3-256 by default, SHA-512/256 for
// casync/desync compatibility), and the two ways to chunk: Stream, fed by
// Writes as a FUSE file handle receives them and emitting each chunk as soon
// as it is cut, and Split for whole buffers (tests and tools). The Rabin
// fingerprinting is github.com/restic/chunker's; this package adapts its
// pull-based io.Reader API to push-based writes through a ring buffer (the
// inbox) and a three-goroutine pipeline per stream (see Stream), and can
// skip the rolling hash over bytes it can predict (StreamOptions.Predict).
//
// It imports nothing of dualstore's: stores, index and dual depend on it,
// never the reverse.
//
// # Invariants
//
//   - Same bytes + same Params → same cut points, however the bytes were
//     split into Writes (TestStreamMatchesSplit, FuzzStream), and the same
//     ids. Dedup across files and across writes rests on this.
//   - The polynomial is fixed per filesystem: it is chosen once with
//     NewPolynomial when the filesystem is created and stored with the rest
//     of Params in the index header. Changing Params (or a restic release
//     that moves cuts, which TestGolden catches) stops new writes from
//     deduplicating against old chunks.
//   - Every chunk but a stream's last is within [MinSize, MaxSize]; the
//     chunks concatenate back to the input; an empty stream has no chunks.
//   - Chunk.Data is owned by the receiver; emit is called sequentially and
//     in stream order.
//   - With a predictor the cuts are the same too (TestPredictedCutsMatchSplit),
//     provided it keeps its contract: it names only chunks whose end was a
//     cut this chunker made with the same Params.
//   - A stream's memory is bounded whatever its length: the inbox ring
//     (2 MiB, or MaxSize+2 MiB with a predictor), restic's 512 KiB read
//     buffer, two chunk buffers restic fills in turn and up to emitQueue+3
//     chunks on their way to emit (each at most MaxSize): about 8 MiB for
//     the defaults with average chunks, 40–45 MiB at worst. A Write blocks
//     while emit blocks, which is how a slow store applies back-pressure to
//     the writer.
//
// # Choosing the default sizes
//
// restic's chunker skips the first MinSize bytes of every chunk, then cuts
// where the fingerprint's low log2(AvgSize) bits are zero, so chunks average
// about MinSize+AvgSize. Measured on a 2-core Intel Xeon VM (go test -bench
// 'Chunking|Hash' ./chunker/; go test -run TestDedupEdited -v ./chunker/ for
// the table) with a 64 MiB random file; "shared" is the fraction of the
// edited file's bytes in chunks the original already has (what dedup saves
// when the file is rewritten), averaged over 4 edit patterns of 1–16 bytes
// each (1 pattern for 100 inserts):
//
//	min/avg/max       chunks  mean   cut MB/s  +blake3  1 insert  10 inserts  10 overwr.  100 inserts
//	16K/64K/256K        771   85 KiB    448       399     0.998      0.981       0.980       0.810
//	64K/256K/1M         211  311 KiB    455       404     0.993      0.934       0.924       0.487
//	128K/256K/2M        171  383 KiB    518       448     0.993      0.931       0.918       0.469
//	128K/512K/4M         93  705 KiB    431       374     0.983      0.857       0.837       0.249
//	256K/512K/4M         79  830 KiB    495       441     0.983      0.845       0.829       0.219  (default)
//	256K/1M/8M           43  1.5 MiB    452       402     0.970      0.751       0.688       0.051
//	512K/1M/8M           39  1.6 MiB    522       431     0.970      0.745       0.685       0.038  (restic)
//
// "cut" is a Stream fed 1 MiB Writes with a no-op hash, "+blake3" the full
// path with ids. Throughput hardly depends on the sizes (430–520 MB/s; a
// larger MinSize skips more bytes), so the choice is dedup against
// per-chunk cost. Hashing a 512 KiB chunk: BLAKE3 3.9 GB/s, SHA-512/256
// 0.73 GB/s (so a sha512-256 filesystem chunks at roughly 290 MB/s).
//
// Every chunk costs an object in each tier (an S3 PUT, about $5 per million
// on AWS, and a per-request latency that favours large objects; a file plus
// directory entry on local disks) and index rows (file chunk list and
// reference count, on the order of 100 bytes). Per TiB stored that is about
// 13M objects at casync's 85 KiB mean, 2.8M at 383 KiB, 1.3M at 830 KiB and
// 0.7M at restic's 1.6 MiB. Large chunks also cost read amplification (a
// 4 KiB random read fetches a whole chunk) and memory (MaxSize per open
// stream, and in the chunk cache).
//
// 256K/512K/4M keeps 83–85% of a file shared after 10 scattered edits in 64
// MiB, against 69–75% for restic's 512K/1M/8M, while needing half the
// objects and index rows of the 256 KiB-average candidates; its MaxSize of
// 4 MiB bounds what one chunk holds in memory. casync's 64 KiB average dedups
// best but multiplies the object count by ten, which an S3 tier pays for in
// requests and latency.
package chunker
