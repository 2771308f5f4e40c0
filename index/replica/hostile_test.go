package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

const craftPage = 4096

// craftSnapshot is a valid snapshot of pages pages of craftPage bytes.
func craftSnapshot(t testing.TB, pages uint32, when time.Time) ([]byte, *sums) {
	t.Helper()
	e, err := newSnapEncoder(craftPage, pages, when)
	if err != nil {
		t.Fatal(err)
	}
	for pg := uint32(1); pg <= pages; pg++ {
		if err := e.page(pg, bytes.Repeat([]byte{byte(pg)}, craftPage)); err != nil {
			t.Fatal(err)
		}
	}
	b, s, err := e.close()
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

// pagesEnd is the offset just past the end marker of the pages.
func pagesEnd(data []byte) int {
	off := ltx.HeaderSize
	for binary.BigEndian.Uint32(data[off:]) != 0 {
		off += ltx.PageHeaderSize
		off += 4 + int(binary.BigEndian.Uint32(data[off:]))
	}
	return off + ltx.PageHeaderSize
}

// named is the object data is, for its seq and time as its header says.
func named(data []byte) object {
	var h ltx.Header
	if len(data) >= ltx.HeaderSize {
		_ = h.UnmarshalBinary(data[:ltx.HeaderSize])
	}
	return object{FSID: "f", Gen: "g", Seq: uint64(h.MinTXID), Time: time.UnixMilli(h.Timestamp), Sum: sum64(data)}
}

// apply applies data (named after its own bytes, as a hostile store can
// name it) to the image s and reports the bytes the heap allocated.
func apply(t testing.TB, data []byte, s **sums) (uint64, error) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = applyObject(f, named(data), data, s)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// TestCraftedObjects applies index backup objects crafted to make a
// restore allocate without bound or crash, each named after its own bytes
// (its BLAKE3 matches: a hostile store can name what it holds): a page
// whose data size field says 4 GiB, an object cut right after its pages,
// a segment whose page number claims a database of 4 billion pages, a
// snapshot whose pages skip, and a page in the LZ4 frame format no
// version of the backup wrote. Each is refused as a bad object, with
// little allocated.
func TestCraftedObjects(t *testing.T) {
	when := time.UnixMilli(1_700_000_000_000)
	snap, base := craftSnapshot(t, 3, when)
	firstSize := ltx.HeaderSize + ltx.PageHeaderSize // the first page's size field
	huge := bytes.Clone(snap)
	binary.BigEndian.PutUint32(huge[firstSize:], 0xfffffff0)
	cut := bytes.Clone(snap[:pagesEnd(snap)+3])
	skip := bytes.Clone(snap)
	binary.BigEndian.PutUint32(skip[firstSize+4+int(binary.BigEndian.Uint32(snap[firstSize:])):], 3) // page 2 says 3
	oldFormat := bytes.Clone(snap)
	binary.BigEndian.PutUint16(oldFormat[ltx.HeaderSize+4:], 0)

	// A segment, encoded with valid checksums, writing page 4,000,000,000
	// of a database that size.
	var far bytes.Buffer
	enc, err := ltx.NewEncoder(&far)
	if err != nil {
		t.Fatal(err)
	}
	const farPage = 4_000_000_000
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: craftPage, Commit: farPage,
		MinTXID: 2, MaxTXID: 2, Timestamp: when.UnixMilli() + 1, PreApplyChecksum: base.value()}); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: farPage}, make([]byte, craftPage)); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(base.value())
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		data    []byte
		segment bool
	}{
		{"page data of 4 GiB", huge, false},
		{"cut after the pages", cut, false},
		{"snapshot pages skip", skip, false},
		{"LZ4 frame format", oldFormat, false},
		{"segment page 4e9", far.Bytes(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *sums
			if tc.segment {
				s = base
			}
			allocated, err := apply(t, tc.data, &s)
			if !errors.Is(err, errBad) {
				t.Errorf("applying it: %v, want a bad object", err)
			}
			if allocated > 16<<20 {
				t.Errorf("applying a %d-byte object allocated %d bytes", len(tc.data), allocated)
			}
		})
	}
	// The snapshot they were made from applies.
	var s *sums
	if _, err := apply(t, snap, &s); err != nil || s.value() != base.value() {
		t.Fatalf("the valid snapshot: %v", err)
	}
}

// FuzzApplyObject: whatever an object holds (named after its own bytes),
// applying it fails or succeeds and never panics. (TestCraftedObjects
// checks what it allocates.)
func FuzzApplyObject(f *testing.F) {
	when := time.UnixMilli(1_700_000_000_000)
	snap, _ := craftSnapshot(f, 3, when)
	f.Add(snap)
	f.Add(snap[:len(snap)-10])
	f.Add(snap[:ltx.HeaderSize+20])
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := os.CreateTemp(dir, "db")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(db.Name())
		defer db.Close()
		var s *sums
		_, _ = applyObject(db, named(data), data, &s)
	})
}
