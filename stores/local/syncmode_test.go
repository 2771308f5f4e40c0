package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/stores"
)

func TestResolveSyncMode(t *testing.T) {
	const (
		ext4  = 0xEF53
		tmpfs = 0x01021994
		fuse  = 0x65735546
	)
	for _, tc := range []struct {
		name  string
		mode  string
		magic uint32
		known bool
		want  string
	}{
		{"auto/ext4", SyncModeAuto, ext4, true, SyncModeSyncfs},
		{"auto/tmpfs", SyncModeAuto, tmpfs, true, SyncModeSyncfs},
		{"auto/xfs", SyncModeAuto, 0x58465342, true, SyncModeSyncfs},
		{"auto/nfs", SyncModeAuto, 0x6969, true, SyncModeSyncfs},
		{"unset is auto", "", ext4, true, SyncModeSyncfs},
		{"auto/fuse", SyncModeAuto, fuse, true, SyncModeFsync},
		{"unset/fuse", "", fuse, true, SyncModeFsync},
		{"auto/9p", SyncModeAuto, 0x01021997, true, SyncModeFsync},
		{"auto/cifs", SyncModeAuto, 0xFF534D42, true, SyncModeFsync},
		{"auto/smb2", SyncModeAuto, 0xFE534D42, true, SyncModeFsync},
		{"auto/unknown type", SyncModeAuto, 0, false, SyncModeFsync},
		{"syncfs forced on fuse (virtiofs)", SyncModeSyncfs, fuse, true, SyncModeSyncfs},
		{"syncfs forced, type unknown", SyncModeSyncfs, 0, false, SyncModeSyncfs},
		{"fsync forced on ext4", SyncModeFsync, ext4, true, SyncModeFsync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := resolveSyncMode(tc.mode, tc.magic, tc.known)
			if got != tc.want || why == "" {
				t.Errorf("resolveSyncMode(%q, %#x, %v) = %q (%q), want %q", tc.mode, tc.magic, tc.known, got, why, tc.want)
			}
		})
	}
}

func TestSyncModeConfig(t *testing.T) {
	for _, tc := range []struct {
		sync, want, err string
	}{
		{"", SyncModeAuto, ""},
		{"auto", SyncModeAuto, ""},
		{"syncfs", SyncModeSyncfs, ""},
		{"fsync", SyncModeFsync, ""},
		{"x", "", `primary[0].sync "x": want auto, syncfs or fsync`},
		{"FSYNC", "", `primary[0].sync "FSYNC": want auto, syncfs or fsync`},
	} {
		c := Config{Path: t.TempDir(), Sync: tc.sync}
		err := c.Complete("primary[0]")
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("sync %q: Complete = %v, want %q", tc.sync, err, tc.err)
		case tc.err == "" && (err != nil || c.Sync != tc.want):
			t.Errorf("sync %q: Complete = %v, sync %q, want %q", tc.sync, err, c.Sync, tc.want)
		}
	}
	if err := (Options{Root: "/x", SyncMode: "sometimes"}).Validate(); err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Errorf("Validate of a bad sync mode = %v", err)
	}
	// Open passes the mode on, and logs it through the logger in ctx.
	c := Config{Path: t.TempDir(), Sync: SyncModeFsync}
	var logged bytes.Buffer
	ctx := zerolog.New(&logged).WithContext(t.Context())
	s, _, err := c.Open(ctx, "primary-0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.(*Local).SyncMode(); got != SyncModeFsync {
		t.Errorf("a store opened with sync: fsync reports %q", got)
	}
	for _, want := range []string{`"level":"debug"`, `"store":"primary-0"`, `"sync_mode":"fsync"`, `"why":"configured"`, `"message":"sync mode"`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("the log lacks %s: %s", want, logged.String())
		}
	}
}

// TestSyncModeReported: forced modes are reported as set, and auto on the
// temp dir (ext4 or tmpfs here) resolves to syncfs.
func TestSyncModeReported(t *testing.T) {
	for _, mode := range []string{SyncModeSyncfs, SyncModeFsync} {
		if got := newLocal(t, Options{SyncMode: mode}).SyncMode(); got != mode {
			t.Errorf("SyncMode %q reports %q", mode, got)
		}
	}
	root := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	if name, ok := noSyncfs[uint32(st.Type)]; ok {
		t.Skipf("SKIPPING the auto check: the temp dir is on %s, where auto resolves to fsync (TestFUSEResolvesToFsync checks that)", name)
	}
	if got := newLocal(t, Options{Root: root}).SyncMode(); got != SyncModeSyncfs {
		t.Errorf("auto on the temp dir (f_type %#x) resolved to %q, want syncfs", st.Type, got)
	}
}

// putN puts n distinct chunks and returns their ids.
func putN(t *testing.T, l *Local, n int) []stores.ID {
	t.Helper()
	ids := make([]stores.ID, n)
	for i := range ids {
		data := fmt.Appendf(nil, "chunk %d", i)
		ids[i] = idOf(data)
		if err := l.Put(t.Context(), ids[i], data); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// shards returns the distinct shard directories of ids.
func shards(l *Local, ids []stores.ID) map[string]bool {
	out := map[string]bool{}
	for _, id := range ids {
		out[l.shardDir(id)] = true
	}
	return out
}

// tracked returns the tracked paths.
func tracked(l *Local) (files, dirs map[string]bool) {
	f, d := l.pending.snapshot()
	files, dirs = map[string]bool{}, map[string]bool{}
	for _, e := range f {
		files[e.path] = true
	}
	for _, e := range d {
		dirs[e.path] = true
	}
	return files, dirs
}

func TestSyncFsyncMode(t *testing.T) {
	l := newLocal(t, Options{SyncMode: SyncModeFsync})
	ids := putN(t, l, 40)
	files, dirs := tracked(l)
	if len(files) != len(ids) {
		t.Errorf("%d files tracked after %d puts", len(files), len(ids))
	}
	for _, id := range ids {
		if !files[l.path(id)] {
			t.Errorf("chunk file %s is not tracked", l.path(id))
		}
	}
	wantDirs := shards(l, ids)
	wantDirs[l.root] = true // the shards are new
	if len(dirs) != len(wantDirs) {
		t.Errorf("directories tracked: %v, want %v", dirs, wantDirs)
	}
	for d := range wantDirs {
		if !dirs[d] {
			t.Errorf("directory %s is not tracked", d)
		}
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked after Sync", nf, nd)
	}
	// A chunk in an existing shard tracks its shard, not the root; one
	// put again is not written, so nothing is tracked.
	data := []byte("one more")
	if err := l.Put(t.Context(), ids[0], []byte("chunk 0")); err != nil {
		t.Fatal(err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("a Put of a chunk held already tracked %d files and %d directories", nf, nd)
	}
	id := idOf(data)
	os.MkdirAll(l.shardDir(id), 0o700)
	if err := l.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	if files, dirs := tracked(l); len(files) != 1 || !files[l.path(id)] || len(dirs) != 1 || !dirs[l.shardDir(id)] {
		t.Errorf("tracked after a put into an existing shard: %v %v", files, dirs)
	}
	// The syncfs mode and Fsync track nothing.
	for _, opts := range []Options{{SyncMode: SyncModeSyncfs}, {SyncMode: SyncModeFsync, Fsync: true}} {
		o := newLocal(t, opts)
		putN(t, o, 3)
		if nf, nd := o.pending.len(); nf+nd != 0 {
			t.Errorf("%+v: %d files and %d directories tracked", opts, nf, nd)
		}
	}
}

func TestSyncSkipsDeleted(t *testing.T) {
	l := newLocal(t, Options{SyncMode: SyncModeFsync})
	ids := putN(t, l, 3)
	if err := l.Delete(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatalf("Sync with a tracked chunk deleted meanwhile: %v", err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked", nf, nd)
	}
}

// TestSyncErrorKeepsTracked makes a tracked chunk's path a directory,
// which cannot be opened for writing: Sync fails naming the store and the
// file, the file (and the directories) stay tracked, the other files do
// not, and once the path is fixed the next Sync gets through.
func TestSyncErrorKeepsTracked(t *testing.T) {
	l := newLocal(t, Options{SyncMode: SyncModeFsync})
	ids := putN(t, l, 5)
	bad := l.path(ids[2])
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	err := l.Sync(t.Context())
	if err == nil || !errors.Is(err, syscall.EISDIR) || !strings.Contains(err.Error(), l.root) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Sync with a tracked file that cannot be synced: %v, want EISDIR naming %s and %s", err, l.root, bad)
	}
	files, dirs := tracked(l)
	if len(files) != 1 || !files[bad] {
		t.Errorf("tracked files after the failed Sync: %v, want only %s", files, bad)
	}
	if want := len(shards(l, ids)) + 1; len(dirs) != want {
		t.Errorf("%d directories tracked after the failed Sync, want all %d", len(dirs), want)
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatalf("Sync after the fault was removed: %v", err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked", nf, nd)
	}
}

// TestCloseSyncs: a clean Close syncs what is tracked and removes the
// marker; a Close whose sync fails says so and leaves the marker, and
// after such an unclean close a Put that finds its chunk in place tracks
// it, since the last user may not have synced it.
func TestCloseSyncs(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, openMarker)
	l := newLocal(t, Options{Root: root, SyncMode: SyncModeFsync})
	ids := putN(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked after Close", nf, nd)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker after a clean close: %v", err)
	}

	// Clean: chunks found in place are trusted.
	l = newLocal(t, Options{Root: root, SyncMode: SyncModeFsync})
	putN(t, l, 3)
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("after a clean close, Puts of chunks in place tracked %d files and %d directories", nf, nd)
	}
	more := putN(t, l, 4)[3]
	bad := l.path(more)
	os.Remove(bad)
	os.Mkdir(bad, 0o700)
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Close whose sync fails: %v, want an error naming %s", err, bad)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the marker is gone after a Close whose sync failed: %v", err)
	}
	os.Remove(bad)

	// Unclean: they are tracked.
	l = newLocal(t, Options{Root: root, SyncMode: SyncModeFsync})
	putN(t, l, 3)
	files, dirs := tracked(l)
	for _, id := range ids {
		if !files[l.path(id)] || !dirs[l.shardDir(id)] || !dirs[root] {
			t.Errorf("after an unclean close, a Put of %s (in place) is not tracked: %v %v", id, files, dirs)
		}
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSyncPendingBounded: past the bound on tracked files, writes sync
// themselves instead of growing the set; so do Puts of chunks in place
// after an unclean close.
func TestSyncPendingBounded(t *testing.T) {
	root := t.TempDir()
	l := newLocal(t, Options{Root: root, SyncMode: SyncModeFsync})
	l.pending.limit = 3
	ids := putN(t, l, 6)
	if nf, _ := l.pending.len(); nf != 3 {
		t.Errorf("%d files tracked with a bound of 3", nf)
	}
	for _, id := range ids {
		if _, err := l.Get(t.Context(), id); err != nil {
			t.Error(err)
		}
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("%d files and %d directories still tracked after Sync", nf, nd)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, openMarker), nil, 0o600); err != nil {
		t.Fatal(err) // as a crash leaves it
	}
	l = newLocal(t, Options{Root: root, SyncMode: SyncModeFsync})
	l.pending.limit = 0
	putN(t, l, 6)
	if nf, nd := l.pending.len(); nf+nd != 0 {
		t.Errorf("with a bound of 0, Puts of chunks in place tracked %d files and %d directories", nf, nd)
	}
}
