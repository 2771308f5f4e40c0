package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
	"github.com/zeebo/blake3"
)

func newLocal(t *testing.T, opts Options) *Local {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Writes abandoned at their deadline may still be removing their temp
	// files: the test's temp dir goes only once they are done.
	t.Cleanup(func() {
		noneAbandoned(t, l)
		l.Close()
	})
	return l
}

func TestConformance(t *testing.T) {
	for _, opts := range []struct {
		name string
		opts Options
	}{
		{"raw", Options{}},
		{"compressed", Options{Compress: true}},
		{"fsync", Options{Fsync: true}},
		{"compressed+fsync", Options{Compress: true, Fsync: true}},
		{"sync=fsync", Options{SyncMode: SyncModeFsync}},
		{"compressed+sync=fsync", Options{Compress: true, SyncMode: SyncModeFsync}},
		{"sync=syncfs", Options{SyncMode: SyncModeSyncfs}},
	} {
		t.Run(opts.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) stores.Store { return newLocal(t, opts.opts) })
		})
	}
}

func idOf(data []byte) stores.ID { return sha256.Sum256(data) }

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"root", Options{Root: "/tmp/x"}, true},
		{"no root", Options{}, false},
		{"nul", Options{Root: "/tmp/\x00"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewRootErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing", "deeper")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"missing", Options{Root: missing}, "does not exist"},
		{"not a directory", Options{Root: file}, "not a directory"},
		{"under a file", Options{Root: filepath.Join(file, "sub"), CreateRoot: true}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.opts.Root) {
				t.Errorf("New error %q does not say %q about %s", err, tt.want, tt.opts.Root)
			}
		})
	}
	l := newLocal(t, Options{Root: missing, CreateRoot: true})
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Fatalf("CreateRoot did not create %s: %v", missing, err)
	}
	if l.Name() != missing {
		t.Errorf("default Name = %q, want the root", l.Name())
	}
}

func TestLayout(t *testing.T) {
	l := newLocal(t, Options{Name: "primary-0"})
	data := []byte("layout")
	id := idOf(data)
	if err := l.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.Root(), id.String()[:4], id.String()+".chunk")
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("chunk file %s = %q, %v", p, got, err)
	}
	if l.Name() != "primary-0" {
		t.Errorf("Name = %q", l.Name())
	}
}

// TestPutExistingNotRewritten checks Put leaves a present chunk file alone
// (the same id means the same data, and rewriting costs I/O).
func TestPutExistingNotRewritten(t *testing.T) {
	l := newLocal(t, Options{})
	ctx := t.Context()
	data := []byte("once")
	id := idOf(data)
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(l.path(id), old, old); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(l.path(id)); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("second Put rewrote the chunk file (mtime %v, want %v): %v", fi.ModTime(), old, err)
	}
}

func TestLeftoverTempFiles(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	ctx := t.Context()
	data := []byte("real chunk")
	id := idOf(data)
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	// What a crash between CreateTemp and Rename leaves behind.
	partial := []byte("partial")
	pid := idOf(partial)
	shard := filepath.Join(root, pid.String()[:4])
	if err := os.MkdirAll(shard, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(shard, ".tmp-"+pid.String()+"-123456")
	if err := os.WriteFile(tmp, partial[:3], 0o600); err != nil {
		t.Fatal(err)
	}
	// Other debris List must skip.
	for _, junk := range []string{"README", "zz/x.chunk", id.String()[:4] + "/notanid.chunk"} {
		p := filepath.Join(root, junk)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := l.Get(ctx, pid); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get of a chunk with only a temp file = %v, want ErrNotFound", err)
	}
	var ids []stores.ID
	if err := l.List(ctx, func(id stores.ID) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != id {
		t.Errorf("List = %v, want only %s", ids, id)
	}

	marker := filepath.Join(root, openMarker)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("no open marker while the store is open: %v", err)
	}
	l.Close()
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the open marker survived a clean close: %v", err)
	}
	// The crash that left the temp file also left the marker.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := newLocal(t, Options{Root: root})
	<-l2.SweepDone()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sweep after an unclean close left the temp file %s: %v", tmp, err)
	}
	if got, err := l2.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get after reopening = %q, %v", got, err)
	}
}

func TestCorruptCompressed(t *testing.T) {
	l := newLocal(t, Options{Compress: true})
	ctx := t.Context()
	data := bytes.Repeat([]byte("compress me "), 1000)
	id := idOf(data)
	if err := l.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(l.path(id))
	if err != nil {
		t.Fatal(err)
	}
	if !isZstd(stored) || len(stored) >= len(data) {
		t.Fatalf("compressible chunk stored as %d bytes, not a smaller zstd frame", len(stored))
	}
	flipped := bytes.Clone(stored)
	flipped[len(flipped)-5] ^= 0xff
	tests := []struct {
		name string
		file []byte
	}{
		{"truncated", stored[:len(stored)/2]},
		{"flipped byte", flipped},
		{"magic then garbage", append([]byte(zstdMagic), "garbage garbage garbage"...)},
		{"magic only", []byte(zstdMagic)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(l.path(id), tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := l.Get(ctx, id)
			if !errors.Is(err, stores.ErrCorrupt) {
				t.Fatalf("Get = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), l.path(id)) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// TestRawWrongContent: a raw chunk file is returned as it is; checking it
// against its id is the dual manager's job.
func TestRawWrongContent(t *testing.T) {
	l := newLocal(t, Options{})
	data := []byte("right")
	id := idOf(data)
	if err := l.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.path(id), []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Get(t.Context(), id); err != nil || string(got) != "wrong" {
		t.Fatalf("Get = %q, %v; want the file's bytes", got, err)
	}
}

// TestMixed checks that turning compression on or off keeps every chunk
// readable, and that data which looks like a zstd frame survives a raw
// store.
func TestMixed(t *testing.T) {
	root := t.TempDir()
	ctx := t.Context()
	text := bytes.Repeat([]byte("mixed "), 500)
	lookalike := append([]byte(zstdMagic), bytes.Repeat([]byte{1}, 100)...)
	random := make([]byte, 64<<10)
	rand.Read(random)
	chunks := map[string][]byte{"raw text": text, "lookalike": lookalike, "binary": random}
	rawOnly := []byte("stored raw, tiny")

	raw := newLocal(t, Options{Root: root})
	if err := raw.Put(ctx, idOf(rawOnly), rawOnly); err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(ctx, idOf(lookalike), lookalike); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	comp := newLocal(t, Options{Root: root, Compress: true})
	for _, data := range chunks {
		if err := comp.Put(ctx, idOf(data), data); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range chunks {
		got, err := comp.Get(ctx, idOf(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: Get = %d bytes, %v", name, len(got), err)
		}
		if size, err := comp.Stat(ctx, idOf(data)); err != nil || size != int64(len(data)) {
			t.Errorf("%s: Stat = %d, %v; want %d", name, size, err, len(data))
		}
	}
	if got, err := comp.Get(ctx, idOf(rawOnly)); err != nil || !bytes.Equal(got, rawOnly) {
		t.Errorf("raw chunk through a compressing store: %q, %v", got, err)
	}
	comp.Close()

	again := newLocal(t, Options{Root: root})
	for name, data := range chunks {
		if got, err := again.Get(ctx, idOf(data)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s after turning compression off: %d bytes, %v", name, len(got), err)
		}
	}
}

// TestStatUnknownSize covers a compressed chunk whose frame does not record
// its size (another tool's, or a streamed one): Stat says -1, Get still
// works.
func TestStatUnknownSize(t *testing.T) {
	l := newLocal(t, Options{Compress: true})
	data := bytes.Repeat([]byte("no size "), 100)
	id := idOf(data)
	// A frame by hand: magic, a descriptor with neither single segment nor
	// content size, a window descriptor (1 KiB), and one last raw block.
	frame := append([]byte(zstdMagic), 0x00, 0x00)
	hdr := uint32(len(data))<<3 | 1
	frame = append(frame, byte(hdr), byte(hdr>>8), byte(hdr>>16))
	frame = append(frame, data...)
	if err := os.MkdirAll(filepath.Dir(l.path(id)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.path(id), frame, 0o600); err != nil {
		t.Fatal(err)
	}
	if size, err := l.Stat(t.Context(), id); err != nil || size != -1 {
		t.Errorf("Stat = %d, %v; want -1", size, err)
	}
	if got, err := l.Get(t.Context(), id); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get = %d bytes, %v", len(got), err)
	}
}

func TestErrorsNameRoot(t *testing.T) {
	l := newLocal(t, Options{})
	id := idOf([]byte("x"))
	_, err := l.Get(t.Context(), id)
	if err == nil || !strings.Contains(err.Error(), l.Root()) || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("Get error %q does not name the root and the chunk", err)
	}
}

// TestSweepTemps: the sweep removes other instances' temp files, in the
// root, in the shards and in the meta tree, and spares this instance's, the chunks and
// anything that is not a shard; it stops when its context ends.
func TestSweepTemps(t *testing.T) {
	root := t.TempDir()
	const keep = tmpPrefix + "0011223344556677-"
	files := map[string]bool{ // path → survives
		"ab12/" + tmpPrefix + "8899aabbccddeeff-x-1": false,
		"ab12/" + keep + "x-2":                       true,
		"ab12/" + strings.Repeat("a", 64) + chunkExt: true,
		tmpPrefix + "probe-3":                        false,
		"notashard/" + tmpPrefix + "x-4":             true,
		"ffff/" + tmpPrefix + "x-5":                  false,
		// In the meta tree, temp files carry metaTempMark; a meta object
		// may be named like a chunk temp file.
		metaDir + "/" + tmpPrefix + "8899aabbccddeeff-" + metaTempMark + "6":     false,
		metaDir + "/a/b/" + tmpPrefix + "8899aabbccddeeff-" + metaTempMark + "7": false,
		metaDir + "/a/" + keep + metaTempMark + "8":                              true,
		metaDir + "/" + tmpPrefix + "object":                                     true,
		metaDir + "/a/object":                                                    true,
	}
	for p := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sweepTemps(ctx, root, keep); !errors.Is(err, context.Canceled) {
		t.Errorf("sweep with an ended context = %v, want context.Canceled", err)
	}
	if err := sweepTemps(t.Context(), root, keep); err != nil {
		t.Fatal(err)
	}
	for p, survives := range files {
		_, err := os.Stat(filepath.Join(root, p))
		if survives != (err == nil) {
			t.Errorf("%s: exists %v after the sweep, want %v", p, err == nil, survives)
		}
	}
}

// TestCleanStoreNotSwept: a store closed cleanly is not read shard by
// shard at its next open, and its temp files carry the instance's token.
func TestCleanStoreNotSwept(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	if !strings.HasPrefix(l.tmpPrefix, tmpPrefix) || len(l.tmpPrefix) <= len(tmpPrefix)+1 {
		t.Errorf("temp file prefix %q carries no token", l.tmpPrefix)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(root, "ab12", tmpPrefix+"x")
	os.MkdirAll(filepath.Dir(planted), 0o700)
	if err := os.WriteFile(planted, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := newLocal(t, Options{Root: root})
	select {
	case <-l2.SweepDone():
	default:
		t.Error("a sweep is running after a clean close")
	}
	if _, err := os.Stat(planted); err != nil {
		t.Errorf("the open of a cleanly closed store read the shards: %v", err)
	}
}

// TestStoreInUse: a store is open in one place at a time, and the error
// says who holds it; a clean close lets the next user in.
func TestStoreInUse(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	_, err := New(Options{Root: root})
	if err == nil || !strings.Contains(err.Error(), "in use by dualstore pid") || !strings.Contains(err.Error(), root) {
		t.Fatalf("second open of a store in use: err = %v, want \"in use by dualstore pid\" naming %s", err, root)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := New(Options{Root: root})
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	select {
	case <-l2.SweepDone():
	default:
		t.Error("the refused open left the store looking uncleanly closed: a sweep runs")
	}
	l2.Close()
}

// TestPutReplacesShortCopy: a chunk file a power loss left empty or short
// (its rename durable, its bytes not) is replaced by the next Put of the
// chunk, raw or compressed, instead of counting as held.
func TestPutReplacesShortCopy(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			ctx := context.Background()
			s, err := New(Options{Root: t.TempDir(), Compress: compress})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			data := bytes.Repeat([]byte("power loss "), 1000)
			id := stores.ID(blake3.Sum256(data))
			if err := s.Put(ctx, id, data); err != nil {
				t.Fatal(err)
			}
			for _, size := range []int64{0, 7} {
				if err := os.Truncate(s.path(id), size); err != nil {
					t.Fatal(err)
				}
				if err := s.Put(ctx, id, data); err != nil {
					t.Fatal(err)
				}
				got, err := s.Get(ctx, id)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("after a Put over a %d-byte copy: %d bytes, %v", size, len(got), err)
				}
			}
		})
	}
}
