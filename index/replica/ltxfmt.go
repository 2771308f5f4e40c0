package replica

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/superfly/ltx"
)

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
// (nil for a snapshot) and calls page for every page. It returns the
// header and trailer.
func decode(o object, data []byte, s *sums, page func(pg uint32, data []byte) error) (ltx.Header, ltx.Trailer, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", o.name(), errBad, fmt.Sprintf(format, a...))
	}
	if got := sum64(data); got != o.Sum {
		return ltx.Header{}, ltx.Trailer{}, bad("BLAKE3 %016x, its name says %016x (corrupt or truncated)", got, o.Sum)
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
		if err := page(ph.Pgno, buf); err != nil {
			return h, ltx.Trailer{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return h, ltx.Trailer{}, bad("%v", err)
	}
	return h, dec.Trailer(), nil
}
