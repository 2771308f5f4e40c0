package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// NewNode describes an inode for Create.
type NewNode struct {
	// Mode is the type and permission bits. A type of 0 means a regular
	// file, as for mknod(2).
	Mode     uint32
	Uid, Gid uint32
	Rdev     uint32    // for character and block devices
	Target   string    // symlink target; must be empty for other types
	Time     time.Time // atime, mtime and ctime; the current time when zero
}

// SetAttrIn says which attributes SetAttr changes: nil pointers are left
// alone. Size is not here: a file's size follows its chunk list
// (CommitChunks), so truncation is a commit.
type SetAttrIn struct {
	// Mode sets the permission bits (mode & 07777); the type is kept.
	Mode         *uint32
	Uid, Gid     *uint32
	Atime, Mtime *time.Time
	// Ctime is always set (the current time when zero).
	Ctime time.Time
}

// Rename flags, as renameat2(2).
const (
	RenameNoReplace uint32 = 1
	RenameExchange  uint32 = 2
)

// GetAttr returns an inode's attributes (orphans included, with Nlink 0).
func (db *DB) GetAttr(ctx context.Context, ino uint64) (Attr, error) {
	var a Attr
	err := db.read(ctx, func(q *conn) error {
		var err error
		a, err = getAttr(ctx, q, ino)
		return err
	})
	return a, errf(err, "getattr")
}

// Lookup returns the attributes of the inode name refers to in parent.
// A missing name wraps ErrNotExist; a parent that is not a directory
// ErrNotDir.
func (db *DB) Lookup(ctx context.Context, parent uint64, name string) (Attr, error) {
	if err := ValidateName(name); err != nil {
		return Attr{}, errf(err, "lookup in %d", parent)
	}
	var a Attr
	err := db.read(ctx, func(q *conn) error {
		var ok bool
		var err error
		a, ok, err = entry(ctx, q, parent, name)
		if err == nil && !ok {
			if _, err = getDir(ctx, q, parent); err == nil {
				err = ErrNotExist
			}
		}
		return err
	})
	return a, errf(err, "lookup %q in %d", name, parent)
}

// Create makes an inode of any type and names it name in the directory
// parent. It fails with ErrExist if the name exists, ErrNotDir if parent
// is not a directory, ErrInvalid or ErrNameTooLong for a bad name, mode or
// target. A directory starts with nlink 2 and adds one to its parent's; a
// symlink's size is the length of its target. The parent's mtime and ctime
// become n.Time.
func (db *DB) Create(ctx context.Context, parent uint64, name string, n NewNode) (Attr, error) {
	if err := ValidateName(name); err != nil {
		return Attr{}, errf(err, "create in %d", parent)
	}
	a, err := newAttr(n)
	if err != nil {
		return Attr{}, errf(err, "create %q in %d", name, parent)
	}
	var target []byte
	if a.Mode&modeType == syscall.S_IFLNK {
		target = []byte(n.Target)
	}
	err = db.update(ctx, func(w *wtx) error {
		if _, err := getDir(ctx, w, parent); err != nil {
			return err
		}
		if _, ok, err := entry(ctx, w, parent, name); err != nil {
			return err
		} else if ok {
			return ErrExist
		}
		ns := toNS(a.Ctime)
		var ino int64
		if err := w.QueryRowContext(ctx, `INSERT INTO inodes
			(mode, nlink, uid, gid, rdev, size, atime_ns, mtime_ns, ctime_ns, target)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ino`,
			a.Mode, a.Nlink, a.Uid, a.Gid, a.Rdev, int64(a.Size), ns, ns, ns, target).Scan(&ino); err != nil {
			return err
		}
		a.Ino = uint64(ino)
		if _, err := w.ExecContext(ctx, "INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)",
			int64(parent), []byte(name), ino); err != nil {
			return err
		}
		w.d.inodes++
		var dn int64
		switch {
		case a.IsDir():
			w.d.dirs++
			dn = 1
		case a.IsRegular():
			w.d.files++
		}
		return w.touchDir(ctx, parent, dn, ns)
	})
	if err != nil {
		return Attr{}, errf(err, "create %q in %d", name, parent)
	}
	db.log.Debug().Uint64("parent", parent).Str("name", name).Uint64("ino", a.Ino).Msg("create")
	return a, nil
}

// newAttr checks a NewNode and returns the inode it describes (Ino unset).
func newAttr(n NewNode) (Attr, error) {
	mode := n.Mode
	if mode&modeType == 0 {
		mode |= syscall.S_IFREG
	}
	if !validType(mode) {
		return Attr{}, fmt.Errorf("mode %#o: %w", n.Mode, ErrInvalid)
	}
	t := orNow(n.Time)
	a := Attr{Mode: mode, Nlink: 1, Uid: n.Uid, Gid: n.Gid, Rdev: n.Rdev, Atime: t, Mtime: t, Ctime: t}
	switch mode & modeType {
	case syscall.S_IFDIR:
		a.Nlink = 2
	case syscall.S_IFLNK:
		switch {
		case n.Target == "":
			return Attr{}, fmt.Errorf("empty symlink target: %w", ErrInvalid)
		case len(n.Target) > MaxTargetLen:
			return Attr{}, fmt.Errorf("symlink target of %d bytes: %w", len(n.Target), ErrNameTooLong)
		case strings.IndexByte(n.Target, 0) >= 0:
			return Attr{}, fmt.Errorf("symlink target contains NUL: %w", ErrInvalid)
		}
		a.Size = uint64(len(n.Target))
	}
	if n.Target != "" && mode&modeType != syscall.S_IFLNK {
		return Attr{}, fmt.Errorf("target for a non-symlink (mode %#o): %w", mode, ErrInvalid)
	}
	// Round-trip through the stored form so the returned times equal what
	// a later GetAttr reads.
	a.Atime, a.Mtime, a.Ctime = fromNS(toNS(t)), fromNS(toNS(t)), fromNS(toNS(t))
	return a, nil
}

// touchDir adds dn to a directory's nlink and sets its mtime and ctime.
func (w *wtx) touchDir(ctx context.Context, ino uint64, dn int64, ns int64) error {
	res, err := w.ExecContext(ctx, "UPDATE inodes SET nlink = nlink + ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
		dn, ns, ns, int64(ino))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("directory %d vanished: %w", ino, ErrCorrupt)
	}
	return nil
}

func (w *wtx) setNlinkCtime(ctx context.Context, ino uint64, dn int64, ns int64) error {
	_, err := w.ExecContext(ctx, "UPDATE inodes SET nlink = nlink + ?, ctime_ns = ? WHERE ino = ?", dn, ns, int64(ino))
	return err
}

// ReadDir returns the entries of directory parent whose names sort
// strictly after `after` (byte order), at most limit of them (all when
// limit <= 0). "." and ".." are not included. Paging costs O(limit), not
// O(position): the names are the primary key.
func (db *DB) ReadDir(ctx context.Context, parent uint64, after string, limit int) ([]DirEntry, error) {
	var out []DirEntry
	if limit <= 0 {
		limit = math.MaxInt32
	}
	err := db.view(ctx, func(tx *conn) error {
		q := "SELECT d.name, d.ino, i.mode FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ?"
		args := []any{int64(parent)}
		if after != "" {
			q += " AND d.name > ?"
			args = append(args, []byte(after))
		}
		rows, err := tx.QueryContext(ctx, q+" ORDER BY d.name LIMIT ?", append(args, limit)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name []byte
			var ino, mode int64
			if err := rows.Scan(&name, &ino, &mode); err != nil {
				return scanErr(err, "dentries")
			}
			if ValidateName(string(name)) != nil || ino <= 0 || mode < 0 || mode > math.MaxUint32 || !validType(uint32(mode)) {
				return fmt.Errorf("dentries: bad entry %q -> %d in %d: %w", name, ino, parent, ErrCorrupt)
			}
			out = append(out, DirEntry{Name: string(name), Ino: uint64(ino), Mode: uint32(mode)})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			_, err := getDir(ctx, tx, parent)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, errf(err, "readdir %d after %q", parent, after)
	}
	return out, nil
}

// Readlink returns a symlink's target; ErrInvalid if ino is not a symlink.
func (db *DB) Readlink(ctx context.Context, ino uint64) (string, error) {
	var target []byte
	err := db.read(ctx, func(q *conn) error {
		var mode int64
		err := q.QueryRowContext(ctx, "SELECT mode, target FROM inodes WHERE ino = ?", int64(ino)).Scan(&mode, &target)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotExist
		case err != nil:
			return scanErr(err, "inodes")
		case uint32(mode)&modeType != syscall.S_IFLNK:
			return ErrInvalid
		case len(target) == 0 || len(target) > MaxTargetLen:
			return fmt.Errorf("inodes: symlink target of %d bytes: %w", len(target), ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return "", errf(err, "readlink %d", ino)
	}
	return string(target), nil
}

// SetAttr changes the attributes in, sets ctime, and returns the result.
// It does not clear setuid/setgid bits on chown: the caller decides that.
func (db *DB) SetAttr(ctx context.Context, ino uint64, in SetAttrIn) (Attr, error) {
	var a Attr
	err := db.update(ctx, func(w *wtx) error {
		var err error
		if a, err = getAttr(ctx, w, ino); err != nil {
			return err
		}
		if in.Mode != nil {
			a.Mode = a.Mode&modeType | *in.Mode&modePerm
		}
		if in.Uid != nil {
			a.Uid = *in.Uid
		}
		if in.Gid != nil {
			a.Gid = *in.Gid
		}
		if in.Atime != nil {
			a.Atime = fromNS(toNS(*in.Atime))
		}
		if in.Mtime != nil {
			a.Mtime = fromNS(toNS(*in.Mtime))
		}
		a.Ctime = fromNS(toNS(orNow(in.Ctime)))
		_, err = w.ExecContext(ctx, `UPDATE inodes SET mode = ?, uid = ?, gid = ?,
			atime_ns = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?`,
			a.Mode, a.Uid, a.Gid, toNS(a.Atime), toNS(a.Mtime), toNS(a.Ctime), int64(ino))
		return err
	})
	if err != nil {
		return Attr{}, errf(err, "setattr %d", ino)
	}
	return a, nil
}

// Unlink removes the name of a non-directory (ErrIsDir for a directory)
// and returns the inode's attributes after its nlink was decremented. At
// nlink 0 the inode stays, as an orphan, until Purge: the caller purges it
// once no handle has it open. The parent's mtime and ctime and the inode's
// ctime become now.
func (db *DB) Unlink(ctx context.Context, parent uint64, name string, now time.Time) (Attr, error) {
	if err := ValidateName(name); err != nil {
		return Attr{}, errf(err, "unlink in %d", parent)
	}
	ns := toNS(orNow(now))
	var a Attr
	err := db.update(ctx, func(w *wtx) error {
		if _, err := getDir(ctx, w, parent); err != nil {
			return err
		}
		var ok bool
		var err error
		if a, ok, err = entry(ctx, w, parent, name); err != nil {
			return err
		} else if !ok {
			return ErrNotExist
		}
		if a.IsDir() {
			return ErrIsDir
		}
		if a.Nlink == 0 {
			return fmt.Errorf("inode %d has a name but nlink 0: %w", a.Ino, ErrCorrupt)
		}
		if _, err := w.ExecContext(ctx, "DELETE FROM dentries WHERE parent = ? AND name = ?",
			int64(parent), []byte(name)); err != nil {
			return err
		}
		if err := w.setNlinkCtime(ctx, a.Ino, -1, ns); err != nil {
			return err
		}
		a.Nlink--
		a.Ctime = fromNS(ns)
		return w.touchDir(ctx, parent, 0, ns)
	})
	if err != nil {
		return Attr{}, errf(err, "unlink %q in %d", name, parent)
	}
	db.log.Debug().Uint64("parent", parent).Str("name", name).Uint64("ino", a.Ino).Uint32("nlink", a.Nlink).Msg("unlink")
	return a, nil
}

// Rmdir removes an empty directory (ErrNotDir for anything else,
// ErrNotEmpty if it has entries) completely, and decrements its parent's
// nlink.
func (db *DB) Rmdir(ctx context.Context, parent uint64, name string, now time.Time) error {
	if err := ValidateName(name); err != nil {
		return errf(err, "rmdir in %d", parent)
	}
	ns := toNS(orNow(now))
	err := db.update(ctx, func(w *wtx) error {
		if _, err := getDir(ctx, w, parent); err != nil {
			return err
		}
		a, ok, err := entry(ctx, w, parent, name)
		if err != nil {
			return err
		} else if !ok {
			return ErrNotExist
		}
		if !a.IsDir() {
			return ErrNotDir
		}
		if err := w.checkEmpty(ctx, a.Ino); err != nil {
			return err
		}
		if _, err := w.ExecContext(ctx, "DELETE FROM dentries WHERE parent = ? AND name = ?",
			int64(parent), []byte(name)); err != nil {
			return err
		}
		if err := w.deleteInode(ctx, a); err != nil {
			return err
		}
		return w.touchDir(ctx, parent, -1, ns)
	})
	if err != nil {
		return errf(err, "rmdir %q in %d", name, parent)
	}
	db.log.Debug().Uint64("parent", parent).Str("name", name).Msg("rmdir")
	return nil
}

func (w *wtx) checkEmpty(ctx context.Context, dir uint64) error {
	var one int
	err := w.QueryRowContext(ctx, "SELECT 1 FROM dentries WHERE parent = ? LIMIT 1", int64(dir)).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("directory %d: %w", dir, ErrNotEmpty)
}

// Rename moves the name oldName in oldParent to newName in newParent, like
// rename(2) and renameat2(2):
//
//   - flags may be 0, RenameNoReplace (ErrExist if the new name exists) or
//     RenameExchange (swap two existing names; ErrNotExist if either is
//     missing); anything else is ErrInvalid;
//   - a non-directory replaces a non-directory: the replaced inode's nlink
//     is decremented and its attributes (after that) returned, so the
//     caller can Purge it at nlink 0 once no handle has it open;
//   - a directory replaces an empty directory (ErrNotEmpty otherwise),
//     which is removed completely and returned with Nlink 0;
//   - a directory over a non-directory is ErrNotDir, a non-directory over a
//     directory ErrIsDir; a directory into its own subtree ErrInvalid;
//   - two names of the same inode (hard links, or the same name) make it a
//     successful no-op that returns nil;
//   - moving a directory between parents moves one nlink from the old
//     parent to the new one.
//
// Both parents' mtime and ctime and the moved inodes' ctime become now.
func (db *DB) Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string,
	flags uint32, now time.Time) (replaced *Attr, err error) {
	if err := ValidateName(oldName); err != nil {
		return nil, errf(err, "rename in %d", oldParent)
	}
	if err := ValidateName(newName); err != nil {
		return nil, errf(err, "rename to %d", newParent)
	}
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return nil, errf(fmt.Errorf("flags %#x: %w", flags, ErrInvalid), "rename %q in %d", oldName, oldParent)
	}
	ns := toNS(orNow(now))
	err = db.update(ctx, func(w *wtx) error {
		if _, err := getDir(ctx, w, oldParent); err != nil {
			return err
		}
		if newParent != oldParent {
			if _, err := getDir(ctx, w, newParent); err != nil {
				return err
			}
		}
		src, ok, err := entry(ctx, w, oldParent, oldName)
		if err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%q in %d: %w", oldName, oldParent, ErrNotExist)
		}
		dst, dstOK, err := entry(ctx, w, newParent, newName)
		if err != nil {
			return err
		}
		if flags&RenameNoReplace != 0 && dstOK {
			return fmt.Errorf("%q in %d: %w", newName, newParent, ErrExist)
		}
		if flags&RenameExchange != 0 {
			if !dstOK {
				return fmt.Errorf("%q in %d: %w", newName, newParent, ErrNotExist)
			}
			return w.exchange(ctx, oldParent, oldName, src, newParent, newName, dst, ns)
		}
		if dstOK && dst.Ino == src.Ino {
			return nil
		}
		if src.IsDir() && newParent != oldParent {
			if in, err := w.within(ctx, newParent, src.Ino); err != nil {
				return err
			} else if in {
				return fmt.Errorf("directory %d into its own subtree (%d): %w", src.Ino, newParent, ErrInvalid)
			}
		}
		var dNew int64 // nlink change of newParent
		if dstOK {
			switch {
			case src.IsDir() && !dst.IsDir():
				return fmt.Errorf("%q in %d: %w", newName, newParent, ErrNotDir)
			case !src.IsDir() && dst.IsDir():
				return fmt.Errorf("%q in %d: %w", newName, newParent, ErrIsDir)
			}
			if _, err := w.ExecContext(ctx, "DELETE FROM dentries WHERE parent = ? AND name = ?",
				int64(newParent), []byte(newName)); err != nil {
				return err
			}
			r := dst
			r.Ctime = fromNS(ns)
			if dst.IsDir() {
				if err := w.checkEmpty(ctx, dst.Ino); err != nil {
					return err
				}
				if err := w.deleteInode(ctx, dst); err != nil {
					return err
				}
				r.Nlink = 0
				dNew--
			} else {
				if err := w.setNlinkCtime(ctx, dst.Ino, -1, ns); err != nil {
					return err
				}
				r.Nlink--
			}
			replaced = &r
		}
		if _, err := w.ExecContext(ctx, "UPDATE dentries SET parent = ?, name = ? WHERE parent = ? AND name = ?",
			int64(newParent), []byte(newName), int64(oldParent), []byte(oldName)); err != nil {
			return err
		}
		if err := w.setNlinkCtime(ctx, src.Ino, 0, ns); err != nil {
			return err
		}
		var dOld int64
		if src.IsDir() {
			dOld--
			dNew++
		}
		if newParent == oldParent {
			return w.touchDir(ctx, oldParent, dOld+dNew, ns)
		}
		if err := w.touchDir(ctx, oldParent, dOld, ns); err != nil {
			return err
		}
		return w.touchDir(ctx, newParent, dNew, ns)
	})
	if err != nil {
		return nil, errf(err, "rename %q in %d to %q in %d", oldName, oldParent, newName, newParent)
	}
	db.log.Debug().Uint64("old_parent", oldParent).Str("old_name", oldName).
		Uint64("new_parent", newParent).Str("new_name", newName).Uint32("flags", flags).Msg("rename")
	return replaced, nil
}

// exchange swaps two existing names (RENAME_EXCHANGE).
func (w *wtx) exchange(ctx context.Context, oldParent uint64, oldName string, src Attr,
	newParent uint64, newName string, dst Attr, ns int64) error {
	if src.Ino == dst.Ino {
		return nil
	}
	if oldParent != newParent {
		if src.IsDir() {
			if in, err := w.within(ctx, newParent, src.Ino); err != nil {
				return err
			} else if in {
				return fmt.Errorf("directory %d into its own subtree (%d): %w", src.Ino, newParent, ErrInvalid)
			}
		}
		if dst.IsDir() {
			if in, err := w.within(ctx, oldParent, dst.Ino); err != nil {
				return err
			} else if in {
				return fmt.Errorf("directory %d into its own subtree (%d): %w", dst.Ino, oldParent, ErrInvalid)
			}
		}
	}
	for _, e := range []struct {
		parent uint64
		name   string
		ino    uint64
	}{{oldParent, oldName, dst.Ino}, {newParent, newName, src.Ino}} {
		if _, err := w.ExecContext(ctx, "UPDATE dentries SET ino = ? WHERE parent = ? AND name = ?",
			int64(e.ino), int64(e.parent), []byte(e.name)); err != nil {
			return err
		}
	}
	for _, ino := range []uint64{src.Ino, dst.Ino} {
		if err := w.setNlinkCtime(ctx, ino, 0, ns); err != nil {
			return err
		}
	}
	if oldParent == newParent {
		return w.touchDir(ctx, oldParent, 0, ns)
	}
	b := func(x bool) int64 {
		if x {
			return 1
		}
		return 0
	}
	d := b(dst.IsDir()) - b(src.IsDir())
	if err := w.touchDir(ctx, oldParent, d, ns); err != nil {
		return err
	}
	return w.touchDir(ctx, newParent, -d, ns)
}

// maxDepth bounds walks up the tree, so a corrupt cycle ends in an error.
const maxDepth = 1 << 16

// within reports whether directory ino is ancestor or ino itself.
func (w *wtx) within(ctx context.Context, ino, ancestor uint64) (bool, error) {
	cur := ino
	for range maxDepth {
		if cur == ancestor {
			return true, nil
		}
		if cur == RootIno {
			return false, nil
		}
		var p int64
		err := w.QueryRowContext(ctx, "SELECT parent FROM dentries WHERE ino = ? LIMIT 1", int64(cur)).Scan(&p)
		if errors.Is(err, sql.ErrNoRows) {
			return false, fmt.Errorf("directory %d has no name: %w", cur, ErrCorrupt)
		}
		if err != nil {
			return false, scanErr(err, "dentries")
		}
		cur = uint64(p)
	}
	return false, fmt.Errorf("directory %d: tree deeper than %d or cyclic: %w", ino, maxDepth, ErrCorrupt)
}

// Link gives the non-directory ino another name (ErrPerm for a directory,
// as link(2); ErrNotExist for an orphan) and returns its attributes with
// nlink incremented. ino's ctime and newParent's mtime and ctime become now.
func (db *DB) Link(ctx context.Context, ino, newParent uint64, newName string, now time.Time) (Attr, error) {
	if err := ValidateName(newName); err != nil {
		return Attr{}, errf(err, "link %d into %d", ino, newParent)
	}
	ns := toNS(orNow(now))
	var a Attr
	err := db.update(ctx, func(w *wtx) error {
		var err error
		if a, err = getAttr(ctx, w, ino); err != nil {
			return err
		}
		if a.IsDir() {
			return fmt.Errorf("inode %d is a directory: %w", ino, ErrPerm)
		}
		if a.Nlink == 0 {
			return fmt.Errorf("inode %d was unlinked: %w", ino, ErrNotExist)
		}
		if a.Nlink == math.MaxUint32 {
			return fmt.Errorf("inode %d has too many links: %w", ino, ErrInvalid)
		}
		if _, err := getDir(ctx, w, newParent); err != nil {
			return err
		}
		if _, ok, err := entry(ctx, w, newParent, newName); err != nil {
			return err
		} else if ok {
			return ErrExist
		}
		if _, err := w.ExecContext(ctx, "INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)",
			int64(newParent), []byte(newName), int64(ino)); err != nil {
			return err
		}
		if err := w.setNlinkCtime(ctx, ino, 1, ns); err != nil {
			return err
		}
		a.Nlink++
		a.Ctime = fromNS(ns)
		return w.touchDir(ctx, newParent, 0, ns)
	})
	if err != nil {
		return Attr{}, errf(err, "link %d as %q in %d", ino, newName, newParent)
	}
	return a, nil
}

// Purge deletes an orphan (nlink 0): the inode, its chunk list (chunk
// reference counts decremented) and its xattrs. It is a no-op for an inode
// with links or one already gone.
func (db *DB) Purge(ctx context.Context, ino uint64) error {
	err := db.update(ctx, func(w *wtx) error {
		a, err := getAttr(ctx, w, ino)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil || a.Nlink > 0 {
			return err
		}
		if a.IsDir() {
			// rmdir and rename delete directories; none is ever orphaned.
			return fmt.Errorf("directory %d with nlink 0: %w", ino, ErrCorrupt)
		}
		return w.deleteInode(ctx, a)
	})
	if err != nil {
		return errf(err, "purge %d", ino)
	}
	return nil
}

// purgeOrphans purges every inode with nlink 0: after a crash nothing has
// them open any more. Each is its own transaction, and one that fails (a
// corrupt chunk list) is logged and left, so that one bad row does not make
// the filesystem unmountable.
func (db *DB) purgeOrphans(ctx context.Context) (int, error) {
	var orphans []uint64
	err := db.read(ctx, func(q *conn) error {
		var err error
		orphans, err = queryInos(ctx, q, "inodes", "SELECT ino FROM inodes WHERE nlink = 0 ORDER BY ino")
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ino := range orphans {
		if err := db.Purge(ctx, ino); err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			db.log.Error().Err(err).Uint64("ino", ino).Msg("cannot purge orphan; left in place")
			continue
		}
		n++
	}
	return n, nil
}

// deleteInode removes an inode without names: its chunk list (releasing
// the references), its xattrs and its row.
func (w *wtx) deleteInode(ctx context.Context, a Attr) error {
	if a.IsRegular() {
		old, err := loadChunks(ctx, w, a.Ino)
		if err != nil {
			return err
		}
		dec := map[stores.ID]int64{}
		for _, c := range old {
			if !c.Hole() {
				dec[c.ID]++
			}
		}
		for _, t := range []string{"file_chunks", "file_holes"} {
			if _, err := w.ExecContext(ctx, "DELETE FROM "+t+" WHERE ino = ?", int64(a.Ino)); err != nil {
				return err
			}
		}
		if err := w.decRefs(ctx, dec); err != nil {
			return err
		}
		w.d.files--
		w.d.logicalBytes -= int64(a.Size)
	}
	if a.IsDir() {
		w.d.dirs--
	}
	w.d.inodes--
	if _, err := w.ExecContext(ctx, "DELETE FROM xattrs WHERE ino = ?", int64(a.Ino)); err != nil {
		return err
	}
	_, err := w.ExecContext(ctx, "DELETE FROM inodes WHERE ino = ?", int64(a.Ino))
	return err
}

// Path returns one absolute path of ino ("/" for the root, "/a/b"), through
// any of its names; an orphan wraps ErrNotExist.
func (db *DB) Path(ctx context.Context, ino uint64) (string, error) {
	var p string
	err := db.view(ctx, func(tx *conn) error {
		var err error
		p, err = pathOf(ctx, tx, ino)
		return err
	})
	if err != nil {
		return "", errf(err, "path %d", ino)
	}
	return p, nil
}

func pathOf(ctx context.Context, q querier, ino uint64) (string, error) {
	if ino == RootIno {
		return "/", nil
	}
	var parts []string
	cur := ino
	for range maxDepth {
		if cur == RootIno {
			var b strings.Builder
			for i := len(parts) - 1; i >= 0; i-- {
				b.WriteByte('/')
				b.WriteString(parts[i])
			}
			return b.String(), nil
		}
		var p int64
		var name []byte
		err := q.QueryRowContext(ctx, "SELECT parent, name FROM dentries WHERE ino = ? ORDER BY parent, name LIMIT 1",
			int64(cur)).Scan(&p, &name)
		if errors.Is(err, sql.ErrNoRows) {
			if cur == ino {
				return "", fmt.Errorf("inode %d has no name: %w", ino, ErrNotExist)
			}
			return "", fmt.Errorf("directory %d has no name: %w", cur, ErrCorrupt)
		}
		if err != nil {
			return "", scanErr(err, "dentries")
		}
		if ValidateName(string(name)) != nil {
			return "", fmt.Errorf("dentries: bad name %q in %d: %w", name, p, ErrCorrupt)
		}
		parts = append(parts, string(name))
		cur = uint64(p)
	}
	return "", fmt.Errorf("inode %d: tree deeper than %d or cyclic: %w", ino, maxDepth, ErrCorrupt)
}

// queryInos runs a query whose rows are one inode number each.
func queryInos(ctx context.Context, q *conn, table, query string, args ...any) ([]uint64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var ino int64
		if err := rows.Scan(&ino); err != nil {
			return nil, scanErr(err, table)
		}
		out = append(out, uint64(ino))
	}
	return out, rows.Err()
}
