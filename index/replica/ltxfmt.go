package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/superfly/ltx"
)

// MaxObjectBytes is the largest index backup object the Replicator
// writes and Restore reads. A snapshot holds the whole index database
// (its pages LZ4-compressed) in one object, held in memory when it is
// written and when it is read back: 4 GiB is an index of tens of millions
// of files. An object listed as larger is a corrupt copy (Restore takes
// the next tier's), never read; an index whose snapshot would be larger
// is not backed up, and the backup's stats say why.
const MaxObjectBytes = 4 << 30

// sums tracks the LTX rolling checksum of a database image: the XOR of
// every page's checksum (page number and content), kept per page so a
// segment updates it in time proportional to the pages it changes.
type sums struct {
	psize uint32
	page  []ltx.Checksum // index pgno-1; 0 for the lock page
	total ltx.Checksum
}

func newSums(psize uint32) *sums { return &sums{psize: psize} }

func (s *sums) set(pgno uint32, data []byte) {
	for uint32(len(s.page)) < pgno {
		s.page = append(s.page, 0)
	}
	ck := ltx.ChecksumPage(pgno, data)
	s.total ^= s.page[pgno-1] ^ ck
	s.page[pgno-1] = ck
}

// truncate drops the pages past n (the database shrank).
func (s *sums) truncate(n uint32) {
	for uint32(len(s.page)) > n {
		last := len(s.page) - 1
		s.total ^= s.page[last]
		s.page = s.page[:last]
	}
}

// value is the rolling checksum in LTX's form.
func (s *sums) value() ltx.Checksum { return ltx.ChecksumFlag | s.total }

func (s *sums) pages() uint32 { return uint32(len(s.page)) }

// encodeSegment writes the pages that change s's image into the image at
// a later point (commit pages; pages absent from pages are unchanged, new
// pages absent from it are zeros) as the LTX file of seq, and updates s.
func encodeSegment(s *sums, seq uint64, t time.Time, commit uint32, pages map[uint32][]byte, order []uint32) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		return nil, err
	}
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: s.psize, Commit: commit,
		MinTXID: ltx.TXID(seq), MaxTXID: ltx.TXID(seq), Timestamp: t.UnixMilli(),
		PreApplyChecksum: s.value(),
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return nil, fmt.Errorf("segment %d: %w", seq, err)
	}
	lock := ltx.LockPgno(s.psize)
	old := s.pages()
	var z []byte
	zeros := func(n uint32) []byte {
		if z == nil {
			z = make([]byte, n)
		}
		return z
	}
	put := func(pg uint32, data []byte) error {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pg}, data); err != nil {
			return fmt.Errorf("segment %d: page %d: %w", seq, pg, err)
		}
		s.set(pg, data)
		return nil
	}
	// order is sorted; the pages past the old end that no commit wrote
	// are zeros, and go in their place in the order.
	next := old + 1
	for _, pg := range order {
		if pg > commit {
			break
		}
		for ; next < pg && next <= commit; next++ {
			if next != lock {
				if err := put(next, zeros(s.psize)); err != nil {
					return nil, err
				}
			}
		}
		if pg >= next {
			next = pg + 1
		}
		if pg == lock {
			continue
		}
		if err := put(pg, pages[pg]); err != nil {
			return nil, err
		}
	}
	for ; next <= commit; next++ {
		if next != lock {
			if err := put(next, zeros(s.psize)); err != nil {
				return nil, err
			}
		}
	}
	s.truncate(commit)
	enc.SetPostApplyChecksum(s.value())
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("segment %d: %w", seq, err)
	}
	return buf.Bytes(), nil
}

// snapEncoder writes a snapshot (seq 1) page by page, in order.
type snapEncoder struct {
	buf  bytes.Buffer
	enc  *ltx.Encoder
	s    *sums
	lock uint32
}

func newSnapEncoder(psize, commit uint32, t time.Time) (*snapEncoder, error) {
	e := &snapEncoder{s: newSums(psize), lock: ltx.LockPgno(psize)}
	var err error
	if e.enc, err = ltx.NewEncoder(&e.buf); err != nil {
		return nil, err
	}
	hdr := ltx.Header{Version: ltx.Version, PageSize: psize, Commit: commit, MinTXID: 1, MaxTXID: 1, Timestamp: t.UnixMilli()}
	if err := e.enc.EncodeHeader(hdr); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return e, nil
}

func (e *snapEncoder) page(pg uint32, data []byte) error {
	if pg == e.lock {
		return nil
	}
	if err := e.enc.EncodePage(ltx.PageHeader{Pgno: pg}, data); err != nil {
		return fmt.Errorf("snapshot: page %d: %w", pg, err)
	}
	e.s.set(pg, data)
	return nil
}

func (e *snapEncoder) close() ([]byte, *sums, error) {
	e.enc.SetPostApplyChecksum(e.s.value())
	if err := e.enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	return e.buf.Bytes(), e.s, nil
}

// errBad marks an object that is not what its name says: corrupt,
// truncated, of another database or out of order.
var errBad = errors.New("bad backup object")

// decode checks an object against its name and the image it applies to
// (nil for a snapshot) and calls page for every page, in order. It
// returns the header and trailer.
//
// An object is untrusted input (a damaged or hostile store, a name that
// matches its bytes): nothing is allocated from what its fields claim
// before they are checked against the object's own length (checkFrame),
// and the pages must come in the order the Replicator writes them, each
// at most one past the image or the page before (the lock page skipped),
// so that what a caller builds per page (the image's checksums) grows
// with the object, not with a page number it claims.
func decode(o object, data []byte, s *sums, page func(pg uint32, data []byte) error) (ltx.Header, ltx.Trailer, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", o.name(), errBad, fmt.Sprintf(format, a...))
	}
	if got := sum64(data); got != o.Sum {
		return ltx.Header{}, ltx.Trailer{}, bad("BLAKE3 %016x, its name says %016x (corrupt or truncated)", got, o.Sum)
	}
	if err := checkFrame(data); err != nil {
		return ltx.Header{}, ltx.Trailer{}, bad("%v", err)
	}
	dec := ltx.NewDecoder(bytes.NewReader(data))
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, bad("header: %v", err)
	}
	h := dec.Header()
	switch {
	case uint64(h.MinTXID) != o.Seq || h.MaxTXID != h.MinTXID:
		return h, ltx.Trailer{}, bad("holds transactions %d-%d, its name says %d", h.MinTXID, h.MaxTXID, o.Seq)
	case h.Timestamp != o.Time.UnixMilli():
		return h, ltx.Trailer{}, bad("time %d, its name says %d", h.Timestamp, o.Time.UnixMilli())
	case s != nil && h.PageSize != s.psize:
		return h, ltx.Trailer{}, bad("page size %d, the snapshot's is %d", h.PageSize, s.psize)
	case s != nil && h.PreApplyChecksum != s.value():
		return h, ltx.Trailer{}, bad("applies to a database with checksum %s, the previous object left %s (a gap or another generation)", h.PreApplyChecksum, s.value())
	}
	var base uint32 // the image's pages before the object
	if s != nil {
		base = s.pages()
	}
	lock := ltx.LockPgno(h.PageSize)
	var prev uint32
	buf := make([]byte, h.PageSize)
	for {
		var ph ltx.PageHeader
		err := dec.DecodePage(&ph, buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return h, ltx.Trailer{}, bad("page: %v", err)
		}
		next := max(base, prev) + 1
		if next == lock {
			next++
		}
		if ph.Pgno <= prev || ph.Pgno > next || ph.Pgno == lock || ph.Pgno > h.Commit {
			return h, ltx.Trailer{}, bad("page %d after page %d of an image of %d pages, database size %d: out of order or past the end", ph.Pgno, prev, base, h.Commit)
		}
		prev = ph.Pgno
		if err := page(ph.Pgno, buf); err != nil {
			return h, ltx.Trailer{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return h, ltx.Trailer{}, bad("%v", err)
	}
	return h, dec.Trailer(), nil
}

// checkFrame walks the frame of an LTX object before the ltx decoder
// reads it, which trusts it: it allocates what a page's size field says
// (up to 4 GiB) before reading it, and slices the bytes after the pages
// without checking there are enough. Each page's data must fit in the
// object and in what LZ4 makes of a page at worst, pages must be in the
// block format (ltx v0.5, what the Replicator writes), and the trailer
// must fit after them.
func checkFrame(data []byte) error {
	if len(data) < ltx.HeaderSize {
		return fmt.Errorf("%d bytes, shorter than an LTX header", len(data))
	}
	var h ltx.Header
	if err := h.UnmarshalBinary(data[:ltx.HeaderSize]); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if err := h.Validate(); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	most := uint32(lz4Bound(int(h.PageSize)))
	off := ltx.HeaderSize
	for n := 0; ; n++ {
		if len(data)-off < ltx.PageHeaderSize {
			return fmt.Errorf("cut short after %d pages", n)
		}
		var ph ltx.PageHeader
		if err := ph.UnmarshalBinary(data[off:]); err != nil {
			return err
		}
		off += ltx.PageHeaderSize
		if ph.IsZero() {
			break
		}
		if ph.Flags&ltx.PageHeaderFlagSize == 0 {
			return fmt.Errorf("page %d: not in the block format the index backup writes", ph.Pgno)
		}
		if len(data)-off < 4 {
			return fmt.Errorf("page %d: cut short", ph.Pgno)
		}
		size := binary.BigEndian.Uint32(data[off:])
		off += 4
		if size > most || int64(size) > int64(len(data)-off) {
			return fmt.Errorf("page %d: %d bytes of data, more than a page of %d takes or than the object holds", ph.Pgno, size, h.PageSize)
		}
		off += int(size)
	}
	if len(data)-off < ltx.TrailerSize {
		return fmt.Errorf("%d bytes after the pages, too few for the trailer", len(data)-off)
	}
	return nil
}

// lz4Bound is the most LZ4 makes of n bytes (LZ4_COMPRESSBOUND).
func lz4Bound(n int) int { return n + n/255 + 16 }
