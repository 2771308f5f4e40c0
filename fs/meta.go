package fs

import (
	"context"
	"time"

	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/index"
)

// Meta is the metadata the adapter needs: the file layer's (vfs.Meta),
// maintenance's (maint.Index, for the runs ctl starts), plus
// the tree (names, directories, links, attributes, extended attributes)
// and the usage statfs and stats report. *index.DB implements it.
type Meta interface {
	vfs.Meta
	maint.Index
	Lookup(ctx context.Context, parent uint64, name string) (index.Attr, error)
	Create(ctx context.Context, parent uint64, name string, n index.NewNode) (index.Attr, error)
	ReadDir(ctx context.Context, parent uint64, after string, limit int) ([]index.DirEntry, error)
	Readlink(ctx context.Context, ino uint64) (string, error)
	SetAttr(ctx context.Context, ino uint64, in index.SetAttrIn) (index.Attr, error)
	Unlink(ctx context.Context, parent uint64, name string, now time.Time) (index.Attr, error)
	Rmdir(ctx context.Context, parent uint64, name string, now time.Time) error
	Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string, flags uint32, now time.Time) (replaced *index.Attr, err error)
	Link(ctx context.Context, ino, newParent uint64, newName string, now time.Time) (index.Attr, error)
	GetXattr(ctx context.Context, ino uint64, name string) ([]byte, error)
	SetXattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) error
	ListXattr(ctx context.Context, ino uint64) ([]string, error)
	RemoveXattr(ctx context.Context, ino uint64, name string) error
	Usage(ctx context.Context) (index.Usage, error)
}

var _ Meta = (*index.DB)(nil)
