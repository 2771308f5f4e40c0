package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/dualstore/dualstore/stores"
)

const (
	// metaDir holds the meta objects, `<root>/_meta/<name>` with the
	// name's '/' as directories. It is no shard (isShard), so List and the
	// chunk paths never reach into it.
	metaDir = "_meta"
	// metaTempMark is in the name of every meta temp file, after the
	// instance's temp prefix: no meta object's name can hold it
	// (ValidMetaName), so an object named ".tmp-x" is never taken for a
	// temp file by the sweep or ListMeta.
	metaTempMark = "meta~"
)

var _ stores.MetaStore = (*Local)(nil)

// isMetaTemp reports whether n, a file name in the meta tree, is a meta
// temp file (of any instance).
func isMetaTemp(n string) bool {
	return strings.HasPrefix(n, tmpPrefix) && strings.Contains(n, metaTempMark)
}

// metaRoot returns the directory of the meta objects.
func (l *Local) metaRoot() string { return filepath.Join(l.root, metaDir) }

// metaPath returns the file of a meta object; name has passed
// ValidMetaName, so the path stays inside metaRoot.
func (l *Local) metaPath(name string) string {
	return filepath.Join(l.metaRoot(), filepath.FromSlash(name))
}

// beginMeta is begin for a meta object's call: it also refuses a bad
// name. When it returns nil the caller must call l.mu.RUnlock.
func (l *Local) beginMeta(ctx context.Context, op, name string) error {
	err := l.enter(ctx)
	if err == nil {
		if err = stores.ValidMetaName(name); err != nil {
			l.mu.RUnlock()
		}
	}
	if err != nil {
		return fmt.Errorf("local %s: %s %q: %w", l.root, op, name, err)
	}
	return nil
}

// PutMeta writes the meta object through a temp file beside it, synced and
// renamed into place, then syncs the directory: it is durable when PutMeta
// returns, whatever Options.Fsync says, since an index backup that a power
// loss can take away is no backup. Like Put, a call abandoned at its
// context's end never renames its file into place.
func (l *Local) PutMeta(ctx context.Context, name string, data []byte) error {
	if err := l.beginMeta(ctx, "put meta", name); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	if l.casync {
		if err := casyncMetaName(name); err != nil {
			return fmt.Errorf("local %s: put meta: %w", l.root, err)
		}
	}
	if ctx.Done() != nil && !stores.ImmutableData(ctx) {
		data = bytes.Clone(data) // the write may outlive the call (see put)
	}
	var state atomic.Int32 // writeRunning
	_, err := fsCallFlag(l, ctx, &state, func() (struct{}, error) {
		return struct{}{}, l.writeMeta(name, data, &state)
	})
	if err != nil {
		return fmt.Errorf("local %s: put meta %q: %w", l.root, name, err)
	}
	return nil
}

// writeMeta is PutMeta's work on fsCall's goroutine.
func (l *Local) writeMeta(name string, data []byte, state *atomic.Int32) error {
	final := l.metaPath(name)
	dir := filepath.Dir(final)
	pattern := l.tmpPrefix + metaTempMark + "*"
	tmp, err := os.CreateTemp(dir, pattern)
	// A missing directory is made; a DeleteMeta removing it again (it
	// removes the directories it empties) is met with another try.
	for attempt := 0; errors.Is(err, iofs.ErrNotExist) && attempt < 3; attempt++ {
		if err := l.mkdirMeta(dir); err != nil {
			return err
		}
		tmp, err = os.CreateTemp(dir, pattern)
	}
	if err != nil {
		return err
	}
	if err := placeTemp(tmp, data, true, state, final); err != nil {
		return err
	}
	return syncDir(dir)
}

// mkdirMeta makes dir, a directory of the meta tree, and the directories
// above it up to the root, syncing the parent of each one it makes so
// that the new entries are as durable as the object put in them.
func (l *Local) mkdirMeta(dir string) error {
	err := os.Mkdir(dir, dirPerm)
	if errors.Is(err, iofs.ErrNotExist) && dir != l.metaRoot() {
		if err := l.mkdirMeta(filepath.Dir(dir)); err != nil {
			return err
		}
		err = os.Mkdir(dir, dirPerm)
	}
	switch {
	case err == nil:
		return syncDir(filepath.Dir(dir))
	case errors.Is(err, iofs.ErrExist):
		return nil // made meanwhile (or a file: CreateTemp says so)
	default:
		return err
	}
}

// errMetaDir is readMeta's answer for a name that is a directory of the
// meta tree: a prefix of other objects, no object itself.
var errMetaDir = errors.New("a directory of meta objects, not one")

// GetMeta reads the meta object. A missing one wraps stores.ErrNotFound;
// one larger than max bytes, or that is not a regular file (a symbolic
// link is not followed), wraps stores.ErrCorrupt and is not read.
func (l *Local) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	if err := l.beginMeta(ctx, "get meta", name); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	p := l.metaPath(name)
	data, err := fsCall(l, ctx, func() ([]byte, error) { return readMeta(p, max) })
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, errMetaDir) {
		return nil, fmt.Errorf("local %s: get meta %q: %w", l.root, name, stores.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("local %s: get meta %q: %w", l.root, name, err)
	}
	return data, nil
}

// readMeta is GetMeta's work on fsCall's goroutine.
func readMeta(p string, max int64) ([]byte, error) {
	f, fi, err := openRegular(p)
	// A FUSE filesystem that opens files by path (go-fuse's loopback,
	// sshfs, rclone) fails the open of a file a concurrent PutMeta has
	// just renamed over with ENOENT: the kernel looked the name up before
	// the rename, the daemon finds the old file's path gone. The name
	// then holds the new object, which another try opens; an object
	// really missing costs two more opens, in a call that is rare.
	for try := 0; errors.Is(err, iofs.ErrNotExist) && try < 2; try++ {
		f, fi, err = openRegular(p)
	}
	switch {
	case fi != nil && fi.IsDir():
		return nil, errMetaDir
	case err != nil:
		return nil, err
	}
	defer f.Close()
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d allowed", p, stores.ErrCorrupt, fi.Size(), max)
	}
	// Meta files are replaced by rename, never written in place; still,
	// read no more than max+1 bytes whatever the file does meanwhile.
	var b bytes.Buffer
	b.Grow(int(fi.Size()) + bytes.MinRead)
	if _, err := b.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, err
	}
	if int64(b.Len()) > max {
		return nil, fmt.Errorf("%s: %w: grew past the %d bytes allowed while being read", p, stores.ErrCorrupt, max)
	}
	return b.Bytes(), nil
}

// ListMeta walks the meta tree and returns the objects whose names start
// with prefix, sorted by name. Temp files, and files whose paths are no
// valid meta name, symbolic links and other non-regular files, are not
// objects and are skipped.
func (l *Local) ListMeta(ctx context.Context, prefix string) ([]stores.MetaInfo, error) {
	if err := l.begin(ctx, "list meta", nil); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	root := l.metaRoot()
	out, err := fsCall(l, ctx, func() ([]stores.MetaInfo, error) { return listMeta(ctx, root, prefix) })
	if err != nil {
		return nil, fmt.Errorf("local %s: list meta %q: %w", l.root, prefix, err)
	}
	return out, nil
}

// listMeta is ListMeta's work on fsCall's goroutine. It stops when ctx
// ends, so that a walk abandoned in a slow filesystem does not go on.
func listMeta(ctx context.Context, root, prefix string) ([]stores.MetaInfo, error) {
	var out []stores.MetaInfo
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // no meta tree yet, or a directory DeleteMeta removed
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Names below dir start with dir/: walk it only if some can
			// start with prefix.
			if dir := name + "/"; p != root && !strings.HasPrefix(dir, prefix) && !strings.HasPrefix(prefix, dir) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(name, prefix) || stores.ValidMetaName(name) != nil {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		out = append(out, stores.MetaInfo{Name: name, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A walk goes directory by directory, and "a-b" sorts before "a/x".
	slices.SortFunc(out, func(a, b stores.MetaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteMeta removes the meta object, then the directories of the meta
// tree that it leaves empty (never the tree's root), so that a name once
// used as a prefix can name an object again. A missing object is not an
// error.
func (l *Local) DeleteMeta(ctx context.Context, name string) error {
	if err := l.beginMeta(ctx, "delete meta", name); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	root, p := l.metaRoot(), l.metaPath(name)
	if err := fsDo(l, ctx, func() error { return removeMeta(root, p) }); err != nil {
		return fmt.Errorf("local %s: delete meta %q: %w", l.root, name, err)
	}
	return nil
}

// removeMeta is DeleteMeta's work on fsCall's goroutine.
func removeMeta(root, p string) error {
	// unlink, not os.Remove: a directory is no object, and must not go.
	err := syscall.Unlink(p)
	switch {
	case err == nil:
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return nil // no such object
	default:
		return &os.PathError{Op: "unlink", Path: p, Err: err}
	}
	// rmdir fails on a directory that is not empty: it has other objects,
	// or a PutMeta's temp file.
	for dir := filepath.Dir(p); dir != root && strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
		if syscall.Rmdir(dir) != nil {
			break
		}
	}
	return nil
}
