package local

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

func TestCasyncConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"casync", Options{Layout: LayoutCasync}},
		{"casync+compress", Options{Layout: LayoutCasync, Compress: true}},
		{"casync+fsync", Options{Layout: LayoutCasync, Fsync: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) stores.Store { return newLocal(t, tc.opts) })
		})
	}
}

// casyncID is how desync names a chunk: the SHA512/256 of its bytes.
func casyncID(data []byte) stores.ID { return sha512.Sum512_256(data) }

// TestCasyncFiles checks the files themselves: `<4 hex>/<id>.cacnk`, a
// zstd frame that a plain decoder (desync's: zstd.NewReader(nil)) reads,
// also for data that does not compress and for an empty chunk.
func TestCasyncFiles(t *testing.T) {
	ctx := t.Context()
	l := newLocal(t, Options{Layout: LayoutCasync})
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	random := make([]byte, 100_000)
	for i := range random {
		random[i] = byte(i*7919>>3) ^ byte(i>>11) ^ byte(i*i)
	}
	for name, data := range map[string][]byte{
		"text":         bytes.Repeat([]byte("casync "), 10_000),
		"incompressed": random,
		"empty":        {},
		"zstd magic":   []byte(zstdMagic + "not a frame"),
	} {
		id := casyncID(data)
		if err := l.Put(ctx, id, data); err != nil {
			t.Fatalf("%s: Put: %v", name, err)
		}
		p := filepath.Join(l.Root(), id.String()[:4], id.String()+".cacnk")
		stored, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: the chunk file: %v", name, err)
		}
		if !isZstd(stored) {
			t.Errorf("%s: %s is not a zstd frame", name, p)
		}
		got, err := dec.DecodeAll(stored, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: a plain zstd decoder reads %d bytes, %v; want %d", name, len(got), err, len(data))
		}
		if got, err := l.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: Get: %d bytes, %v", name, len(got), err)
		}
		if n, err := l.Stat(ctx, id); err != nil || n != int64(len(data)) {
			t.Errorf("%s: Stat: %d, %v; want %d", name, n, err, len(data))
		}
		if _, err := os.Stat(strings.TrimSuffix(p, ".cacnk") + ".chunk"); err == nil {
			t.Errorf("%s: a .chunk file was written too", name)
		}
	}
}

// TestCasyncReadsDesyncChunks puts chunk files as desync writes them (its
// encoder is zstd.NewWriter(nil) with the defaults, files 0644 in shards
// 0755) and reads and lists them; the dualstore layout's files and foreign
// files beside them are not chunks of a casync store, and the other way
// round.
func TestCasyncReadsDesyncChunks(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("desync wrote this "), 5000)
	id := casyncID(data)
	shard := filepath.Join(root, id.String()[:4])
	if err := os.MkdirAll(shard, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shard, id.String()+".cacnk"), enc.EncodeAll(data, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	other := casyncID([]byte("a dualstore-layout chunk"))
	if err := os.MkdirAll(filepath.Join(root, other.String()[:4]), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, other.String()[:4], other.String()+".chunk"), []byte("a dualstore-layout chunk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README", "abcd.cacnk", filepath.Join(id.String()[:4], ".tmp-cacnk123")} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	l := newLocal(t, Options{Root: root, Layout: LayoutCasync})
	if got, err := l.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get of desync's chunk: %d bytes, %v", len(got), err)
	}
	if _, err := l.Get(ctx, other); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get of a .chunk file in the casync layout: %v, want ErrNotFound", err)
	}
	if ids := listIDs(t, l); len(ids) != 1 || ids[0] != id {
		t.Errorf("List in the casync layout: %v, want only %s", ids, id)
	}
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatalf("Put over desync's chunk: %v", err)
	}
	if got, err := l.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after a Put over desync's chunk: %d bytes, %v", len(got), err)
	}
	l.Close()

	d := newLocal(t, Options{Root: root})
	if ids := listIDs(t, d); len(ids) != 1 || ids[0] != other {
		t.Errorf("List in the dualstore layout: %v, want only %s", ids, other)
	}
}

func listIDs(t *testing.T, l *Local) []stores.ID {
	t.Helper()
	var ids []stores.ID
	if err := l.List(t.Context(), func(id stores.ID) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatalf("List: %v", err)
	}
	return ids
}

// TestCasyncRawIsCorrupt: a .cacnk that is no zstd frame is corrupt (desync
// refuses it), so the tier falls back and heals it instead of serving it.
func TestCasyncRawIsCorrupt(t *testing.T) {
	ctx := t.Context()
	l := newLocal(t, Options{Layout: LayoutCasync})
	data := []byte("raw bytes in a .cacnk")
	id := casyncID(data)
	if err := os.MkdirAll(filepath.Join(l.Root(), id.String()[:4]), 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.Root(), id.String()[:4], id.String()+".cacnk")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
		t.Errorf("Get of a raw .cacnk: %v, want ErrCorrupt", err)
	}
	if _, err := l.Stat(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
		t.Errorf("Stat of a raw .cacnk: %v, want ErrCorrupt", err)
	}
	// A Put does not take the raw file of the chunk's size for a copy.
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after Put over the raw file: %q, %v", got, err)
	}
}

// TestCasyncSweepSparesDesync: after an unclean close the sweep removes
// dualstore's leftover temp files but not desync's, which may be a write
// in flight of a desync process using the same store.
func TestCasyncSweepSparesDesync(t *testing.T) {
	root := t.TempDir()
	shard := filepath.Join(root, "abcd")
	if err := os.MkdirAll(shard, 0o755); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(shard, tmpPrefix+"0123456789abcdef-"+strings.Repeat("a", 64)+"-1")
	theirs := filepath.Join(shard, desyncTmpPrefix+"4711")
	for _, p := range []string{ours, theirs, filepath.Join(root, openMarker)} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l := newLocal(t, Options{Root: root, Layout: LayoutCasync})
	<-l.SweepDone()
	if _, err := os.Stat(ours); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("our leftover temp file: %v, want removed", err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("desync's temp file: %v, want kept", err)
	}
}

func TestCasyncMetaNames(t *testing.T) {
	ctx := t.Context()
	l := newLocal(t, Options{Layout: LayoutCasync})
	for _, name := range []string{
		"x/" + strings.Repeat("a", 64) + ".cacnk", "a.cacnk", ".tmp-cacnk1", "d/.tmp-cacnk",
	} {
		if err := l.PutMeta(ctx, name, []byte("x")); err == nil {
			t.Errorf("PutMeta(%q) in the casync layout succeeded, want a refusal", name)
		}
	}
	for _, name := range []string{"index/fs/gen/0000000000000001-0000000000001-0000000000000000.ltx", "a.cacnk/b", ".tmp-x"} {
		if err := l.PutMeta(ctx, name, []byte("x")); err != nil {
			t.Errorf("PutMeta(%q): %v", name, err)
		}
	}
	d := newLocal(t, Options{})
	if err := d.PutMeta(ctx, "a.cacnk", []byte("x")); err != nil {
		t.Errorf("PutMeta(a.cacnk) in the dualstore layout: %v", err)
	}
}

func TestLayoutConfig(t *testing.T) {
	for _, tc := range []struct {
		layout, want, hash string
		ok                 bool
	}{
		{"", LayoutDualstore, "", true},
		{LayoutDualstore, LayoutDualstore, "", true},
		{LayoutCasync, LayoutCasync, "sha512-256", true},
		{"desync", "", "", false},
	} {
		c := &Config{Path: t.TempDir(), Layout: tc.layout}
		err := c.Complete("primary[0]")
		if (err == nil) != tc.ok {
			t.Errorf("layout %q: Complete: %v, want ok=%v", tc.layout, err, tc.ok)
			continue
		}
		if !tc.ok {
			if !strings.Contains(err.Error(), "primary[0].layout") {
				t.Errorf("layout %q: %v does not name the key", tc.layout, err)
			}
			if (Options{Root: "/x", Layout: tc.layout}).Validate() == nil {
				t.Errorf("Options.Validate accepts layout %q", tc.layout)
			}
			continue
		}
		if c.Layout != tc.want || c.RequiredHash() != tc.hash {
			t.Errorf("layout %q: completed to %q, hash %q; want %q, %q", tc.layout, c.Layout, c.RequiredHash(), tc.want, tc.hash)
		}
	}
}
