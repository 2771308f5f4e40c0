package fs

import (
	"context"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/index"
)

// ChunkList is what `.dualstore/chunks/INO` shows: the chunks a regular
// file is made of, as its index entry lists them, with the chunker's
// parameters and hash. `dualstore export` builds a casync blob index from
// it while the filesystem stays mounted.
type ChunkList struct {
	Ino     uint64     `json:"ino"`
	Size    uint64     `json:"size"`
	Hash    string     `json:"hash"`
	MinSize uint32     `json:"min_size"`
	AvgSize uint32     `json:"avg_size"`
	MaxSize uint32     `json:"max_size"`
	Chunks  []ChunkRef `json:"chunks"`
}

// ChunkRef is one entry of a ChunkList: a chunk (its hex id) or a hole.
type ChunkRef struct {
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	ID     string `json:"id,omitempty"`
	Hole   bool   `json:"hole,omitempty"`
}

// chunksDir is `.dualstore/chunks`: it lists nothing, and looking up the
// decimal inode number of a regular file (its st_ino) gives a read-only
// file with that file's ChunkList. The entry is owned by the file's owner
// with mode 0400, so the kernel's own permission check
// (default_permissions) lets only that owner and root read it: chunk ids
// say something of the content, and a lookup by number passes no
// directory on the way. Like the rest of `.dualstore`, nothing can be
// created, removed or renamed in it (ctlDir's refusals).
type chunksDir struct {
	ctlDir
}

var (
	_ gofs.NodeLookuper  = (*chunksDir)(nil)
	_ gofs.NodeReaddirer = (*chunksDir)(nil)
	_ gofs.NodeGetattrer = (*chunksDir)(nil)
)

func (d *chunksDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = d.fs.controlAttr(ctlChunksIno, syscall.S_IFDIR|0555)
	return 0
}

func (d *chunksDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream(nil), 0
}

func (d *chunksDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ino, err := strconv.ParseUint(name, 10, 64)
	if err != nil || ino == 0 || strconv.FormatUint(ino, 10) != name {
		return nil, syscall.ENOENT
	}
	a, err := d.fs.db.GetAttr(ctx, ino)
	if err != nil {
		return nil, d.fs.fail("lookup chunks", ino, err)
	}
	if !a.IsRegular() {
		return nil, syscall.ENOENT
	}
	// Never cached: the inode may change owner or be gone next time.
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	out.Attr = chunkListAttr(d.fs, a)
	// Ino 0: go-fuse numbers the entry itself, far from the index's.
	return d.NewInode(ctx, &chunkListFile{fs: d.fs, ino: ino}, gofs.StableAttr{Mode: syscall.S_IFREG}), 0
}

func chunkListAttr(f *FS, a index.Attr) fuse.Attr {
	out := f.controlAttr(0, syscall.S_IFREG|0400)
	out.Uid, out.Gid = a.Uid, a.Gid
	return out
}

// chunkListFile is one `.dualstore/chunks/INO`.
type chunkListFile struct {
	gofs.Inode
	fs  *FS
	ino uint64
}

var (
	_ gofs.NodeOpener    = (*chunkListFile)(nil)
	_ gofs.NodeGetattrer = (*chunkListFile)(nil)
)

func (c *chunkListFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := c.fs.db.GetAttr(ctx, c.ino)
	if err != nil {
		return c.fs.fail("getattr chunks", c.ino, err)
	}
	out.SetTimeout(0)
	out.Attr = chunkListAttr(c.fs, a)
	return 0
}

// Open renders the list. A file open with writes its index entry does not
// have yet is EBUSY: the list would not be its content (fsync it first,
// as `dualstore export` does).
func (c *chunkListFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	if c.fs.vfs.Dirty(c.ino) {
		return nil, 0, syscall.EBUSY
	}
	l, err := ListChunks(ctx, c.fs.db, c.ino)
	if err != nil {
		return nil, 0, c.fs.fail("open chunks", c.ino, err)
	}
	data, err := jsonLine(l)
	if err != nil {
		return nil, 0, c.fs.fail("open chunks", c.ino, err)
	}
	return &ctlHandle{fs: c.fs, data: data}, fuse.FOPEN_DIRECT_IO, 0
}

// ChunkSource is what ListChunks reads: the index.
type ChunkSource interface {
	Header() index.Header
	Chunks(ctx context.Context, ino uint64) ([]index.Chunk, error)
}

// ListChunks returns the chunk list of a regular file as its index entry
// has it (the mount's `.dualstore/chunks/INO`, and offline export's).
func ListChunks(ctx context.Context, db ChunkSource, ino uint64) (ChunkList, error) {
	h := db.Header()
	l := ChunkList{Ino: ino, Hash: h.Hash, MinSize: h.MinSize, AvgSize: h.AvgSize, MaxSize: h.MaxSize, Chunks: []ChunkRef{}}
	chunks, err := db.Chunks(ctx, ino)
	if err != nil {
		return l, err
	}
	for _, c := range chunks {
		r := ChunkRef{Offset: l.Size, Size: uint64(c.Size), Hole: c.Hole()}
		if !r.Hole {
			r.ID = c.ID.String()
		}
		l.Chunks = append(l.Chunks, r)
		l.Size += r.Size
	}
	return l, nil
}
