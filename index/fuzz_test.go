package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzHeader feeds arbitrary header rows (as read back from a file) to
// decodeHeader: it must not panic, must report ErrCorrupt or ErrVersion,
// and a header it accepts must round-trip.
func FuzzHeader(f *testing.F) {
	good := encodeHeader(Header{FormatVersion: 1, FSID: "0123456789abcdef0123456789abcdef", Hash: HashBLAKE3,
		Polynomial: 0x3DA3358B4DC173, MinSize: 1, AvgSize: 2, MaxSize: 3, Created: t0})
	f.Add(good[hkFormatVersion], good[hkFSID], good[hkHash], good[hkPolynomial], good[hkMinSize], good[hkAvgSize], good[hkMaxSize], good[hkCreated])
	f.Add("2", "", "", "", "", "", "", "")
	f.Add("1", "0123456789ABCDEF0123456789ABCDEF", "sha512-256", "-1", "4294967296", "0", "1", "yesterday")
	f.Add("99999999999999999999", "x", "blake3", "18446744073709551615", "1", "1", "1", "2262-04-11T23:47:16.854775807Z")
	f.Fuzz(func(t *testing.T, fv, fsid, hash, poly, min, avg, max, created string) {
		kv := map[string]string{hkFormatVersion: fv, hkFSID: fsid, hkHash: hash, hkPolynomial: poly,
			hkMinSize: min, hkAvgSize: avg, hkMaxSize: max, hkCreated: created}
		h, err := decodeHeader(kv)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		h2, err := decodeHeader(encodeHeader(h))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", h, err)
		}
		if h2.FSID != h.FSID || h2.Hash != h.Hash || h2.Polynomial != h.Polynomial || h2.MinSize != h.MinSize ||
			h2.AvgSize != h.AvgSize || h2.MaxSize != h.MaxSize || !h2.Created.Equal(h.Created) || h2.FormatVersion != h.FormatVersion {
			t.Fatalf("round trip %+v -> %+v", h, h2)
		}
		// Missing keys are corrupt too.
		for k := range kv {
			short := map[string]string{}
			for k2, v := range kv {
				if k2 != k {
					short[k2] = v
				}
			}
			if _, err := decodeHeader(short); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("without %s: %v", k, err)
			}
		}
	})
}

// FuzzName checks ValidateName against its definition, and that a valid
// name round-trips through the database unchanged and in byte order.
func FuzzName(f *testing.F) {
	for _, s := range []string{"a", "", ".", "..", "...", "a/b", "a\x00", "\xff\xfe", strings.Repeat("x", 255), strings.Repeat("x", 256), " ", "é"} {
		f.Add(s)
	}
	db, _ := newDB(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		valid := name != "" && name != "." && name != ".." && len(name) <= 255 &&
			!strings.ContainsRune(name, '/') && !strings.ContainsRune(name, 0)
		if (err == nil) != valid {
			t.Fatalf("ValidateName(%q) = %v, valid %v", name, err, valid)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNameTooLong) {
				t.Fatalf("ValidateName(%q) = %v", name, err)
			}
			return
		}
		a, err := db.Create(ctx, RootIno, name, fileNode())
		if errors.Is(err, ErrExist) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := db.Unlink(ctx, RootIno, name, t0); err != nil {
				t.Fatal(err)
			}
			if err := db.Purge(ctx, a.Ino); err != nil {
				t.Fatal(err)
			}
		}()
		if l, err := db.Lookup(ctx, RootIno, name); err != nil || l.Ino != a.Ino {
			t.Fatalf("Lookup(%q) = %v, %v", name, l, err)
		}
		es, err := db.ReadDir(ctx, RootIno, "", 0)
		if err != nil || len(es) != 1 || es[0].Name != name {
			t.Fatalf("ReadDir = %+v, %v", es, err)
		}
		if p, err := db.Path(ctx, a.Ino); err != nil || p != "/"+name {
			t.Fatalf("Path = %q, %v", p, err)
		}
	})
}

// FuzzDecodeRow feeds arbitrary column values to the row decoders.
func FuzzDecodeRow(f *testing.F) {
	f.Add([]byte{1, 2, 3}, int64(33188), int64(1), int64(0), int64(5), int64(-1))
	f.Add(make([]byte, 32), int64(1<<40), int64(-1), int64(1<<33), int64(0), int64(1<<62))
	f.Fuzz(func(t *testing.T, id []byte, mode, nlink, uid, size, ns int64) {
		got, err := decodeID(id, "chunks")
		if (err == nil) != (len(id) == 32) {
			t.Fatalf("decodeID(%d bytes) = %v", len(id), err)
		}
		if err != nil && (!errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "chunks")) {
			t.Fatalf("decodeID error %v", err)
		}
		if err == nil && !bytes.Equal(got[:], id) {
			t.Fatal("decodeID changed the bytes")
		}
		if _, err := decodeSize(size, "file_chunks"); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatal(err)
		}
		a, err := decodeAttr([11]int64{nlink + 2, mode, nlink, uid, uid, uid, size, ns, ns, ns, 0})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if int64(a.Mode) != mode || !validType(a.Mode) || int64(a.Size) != size || a.Mtime.UnixNano() != ns {
			t.Fatalf("decodeAttr %+v", a)
		}
	})
}

// FuzzOpen opens arbitrary file contents: Open must fail cleanly (never
// panic) and leave the file as it was.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("SQLite format 3\x00"))
	f.Add(append([]byte("SQLite format 3\x00"), make([]byte, 200)...))
	hdr := make([]byte, 4096)
	copy(hdr, "SQLite format 3\x00")
	hdr[16], hdr[17], hdr[18], hdr[19] = 0x10, 0, 2, 2
	binary.BigEndian.PutUint32(hdr[68:], ApplicationID)
	f.Add(hdr)
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "index.db")
		for _, s := range []string{"", "-wal", "-shm"} {
			os.Remove(path + s)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		o := testOpts(t, path)
		o.Log = o.Log.Level(10) // quiet
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db, err := Open(ctx, o)
		if err == nil {
			db.Close()
			t.Fatalf("Open of %d fuzzed bytes succeeded", len(data))
		}
		isOurs := len(data) >= 100 && bytes.Equal(data[68:72], hdr[68:72]) && bytes.HasPrefix(data, []byte("SQLite format 3\x00"))
		if after, _ := os.ReadFile(path); !isOurs && !bytes.Equal(after, data) {
			t.Fatal("Open modified a file that is not ours")
		}
	})
}
