package local

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// TestMetaLayout: a meta object is the file _meta/<name>, holding its
// bytes as they are (never compressed), with no temp file left beside it,
// and the chunk listing does not see it.
func TestMetaLayout(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root, Compress: true})
	ctx := t.Context()
	data := bytes.Repeat([]byte("index backup "), 1000)
	if err := l.PutMeta(ctx, "index/gen-000001", data); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, metaDir, "index")
	if got, err := os.ReadFile(filepath.Join(dir, "gen-000001")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("meta file = %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("meta directory holds %v, %v; want the object alone", entries, err)
	}
	n := 0
	if err := l.List(ctx, func(stores.ID) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("List beside a meta object: %d chunks, %v", n, err)
	}
	if isShard(metaDir) {
		t.Errorf("%s passes for a shard", metaDir)
	}
}

// TestMetaDurableWithoutFsync: PutMeta syncs whatever the store's sync
// settings, so a meta object leaves nothing for Sync to do.
func TestMetaDurableWithoutFsync(t *testing.T) {
	for _, mode := range []string{SyncModeFsync, SyncModeSyncfs} {
		t.Run(mode, func(t *testing.T) {
			l := newLocal(t, Options{SyncMode: mode})
			if err := l.PutMeta(t.Context(), "a/b/c", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if nf, nd := l.pending.len(); nf+nd != 0 {
				t.Errorf("PutMeta left %d files and %d directories for Sync", nf, nd)
			}
			if l.dirty.Load() {
				t.Error("PutMeta left the store dirty for Sync")
			}
		})
	}
}

// TestMetaNotObjects: what is in the meta tree but is no object is not
// read, or listed, as one.
func TestMetaNotObjects(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	ctx := t.Context()
	if err := l.PutMeta(ctx, "real", []byte("real")); err != nil {
		t.Fatal(err)
	}
	mroot := filepath.Join(root, metaDir)
	outside := filepath.Join(root, "outside")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(mroot, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(mroot, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(mroot, "dir", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, junk := range []string{"a b", "dir/" + tmpPrefix + "0011223344556677-" + metaTempMark + "1"} {
		if err := os.WriteFile(filepath.Join(mroot, junk), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, name := range []string{"link", "fifo"} {
		done := make(chan error, 1)
		go func() {
			_, err := l.GetMeta(ctx, name, 1<<20)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, stores.ErrCorrupt) || !strings.Contains(err.Error(), name) {
				t.Errorf("GetMeta of a %s = %v, want an error naming it and wrapping ErrCorrupt", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("GetMeta of a %s hangs", name)
		}
	}
	for _, name := range []string{"dir", "dir/sub", "real/x"} {
		if _, err := l.GetMeta(ctx, name, 1<<20); !errors.Is(err, stores.ErrNotFound) {
			t.Errorf("GetMeta(%q) = %v, want ErrNotFound", name, err)
		}
	}
	// One name cannot be an object and a directory of others.
	if err := l.PutMeta(ctx, "real/x", []byte("x")); err == nil {
		t.Error("PutMeta(real/x) beside the object real succeeded")
	}
	if err := l.PutMeta(ctx, "dir", []byte("x")); err == nil {
		t.Error("PutMeta(dir) over a directory of the meta tree succeeded")
	}
	got, err := l.ListMeta(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []stores.MetaInfo{{Name: "real", Size: 4}}; !slices.Equal(got, want) {
		t.Errorf("ListMeta = %v, want %v", got, want)
	}
	// DeleteMeta of a directory or a link's name removes no directory and
	// nothing the link points to.
	for _, name := range []string{"dir", "link"} {
		if err := l.DeleteMeta(ctx, name); err != nil {
			t.Errorf("DeleteMeta(%q): %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(mroot, "dir", "sub")); err != nil {
		t.Errorf("DeleteMeta of a directory's name removed it: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("DeleteMeta of a link removed its target: %v", err)
	}
}

// TestMetaDeleteRemovesEmptyDirs: DeleteMeta removes the directories it
// empties, up to but not including the meta tree's root, and leaves the
// ones that still hold objects.
func TestMetaDeleteRemovesEmptyDirs(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	ctx := t.Context()
	for _, name := range []string{"a/b/c", "a/d"} {
		if err := l.PutMeta(ctx, name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	mroot := filepath.Join(root, metaDir)
	if err := l.DeleteMeta(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mroot, "a", "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a/b after deleting its only object: %v, want it gone", err)
	}
	if _, err := os.Stat(filepath.Join(mroot, "a", "d")); err != nil {
		t.Errorf("a/d after deleting a/b/c: %v", err)
	}
	if err := l.DeleteMeta(ctx, "a/d"); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(mroot); err != nil || len(entries) != 0 {
		t.Errorf("meta tree after deleting every object = %v, %v; want it there and empty", entries, err)
	}
}

// TestMetaTempsSwept: a PutMeta that a crash interrupted leaves a temp
// file in the meta tree, which the sweep after the unclean close removes;
// objects, whatever their names, stay.
func TestMetaTempsSwept(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root})
	ctx := t.Context()
	for _, name := range []string{"a/obj", tmpPrefix + "obj"} {
		if err := l.PutMeta(ctx, name, []byte("object")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mroot := filepath.Join(root, metaDir)
	temps := []string{
		filepath.Join(mroot, tmpPrefix+"8899aabbccddeeff-"+metaTempMark+"123"),
		filepath.Join(mroot, "a", tmpPrefix+"8899aabbccddeeff-"+metaTempMark+"456"),
	}
	for _, p := range temps {
		if err := os.WriteFile(p, []byte("part"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The crash that left them also left the marker.
	if err := os.WriteFile(filepath.Join(root, openMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := newLocal(t, Options{Root: root})
	<-l2.SweepDone()
	for _, p := range temps {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the sweep left the meta temp file %s: %v", p, err)
		}
	}
	got, err := l2.ListMeta(ctx, "")
	want := []stores.MetaInfo{{Name: tmpPrefix + "obj", Size: 6}, {Name: "a/obj", Size: 6}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ListMeta after the sweep = %v, %v; want %v", got, err, want)
	}
}
