package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
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
// with mode 0600, so the kernel's own permission check
// (default_permissions) lets only that owner and root use it: chunk ids
// say something of the content, and a lookup by number passes no
// directory on the way. Writing a ChunkList into it (one open, closed at
// the end) makes an empty file of those chunks where the tiers hold them
// already: see chunkListWriter. Like the rest of `.dualstore`, nothing can be
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
	out := f.controlAttr(0, syscall.S_IFREG|0600)
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
	_ gofs.NodeSetattrer = (*chunkListFile)(nil)
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

// Setattr accepts only the truncation of an open for writing (O_TRUNC).
func (c *chunkListFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) != 0 {
		return syscall.EPERM
	}
	return c.Getattr(ctx, fh, out)
}

// Open renders the list for reading; a file open with writes its index
// entry does not have yet is EBUSY: the list would not be its content
// (fsync it first, as `dualstore export` does). An open for writing takes
// a list to adopt.
func (c *chunkListFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	switch flags & syscall.O_ACCMODE {
	case syscall.O_WRONLY:
		return &chunkListWriter{fs: c.fs, ino: c.ino}, fuse.FOPEN_DIRECT_IO, 0
	case syscall.O_RDONLY:
	default:
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

// maxChunkListBytes bounds a list written to adopt: 1<<24 entries (a
// 16 TiB file of 1 MiB chunks) of at most about 120 bytes of JSON.
const maxChunkListBytes = 120 << 24

// chunkListWriter takes a ChunkList written into `.dualstore/chunks/INO`
// and, at close, makes the empty file INO of its chunks (vfs.Adopt): how
// `dualstore import` references chunks a casync primary already holds
// instead of copying them. close(2) reports the result: EINVAL for a
// malformed list, EBUSY for a file that is not empty, ENODATA when a
// chunk is in neither tier (the caller copies the bytes instead), EIO
// when no tier has a good copy.
type chunkListWriter struct {
	fs   *FS
	ino  uint64
	mu   sync.Mutex
	data []byte
	done bool
}

var (
	_ gofs.FileWriter  = (*chunkListWriter)(nil)
	_ gofs.FileFlusher = (*chunkListWriter)(nil)
)

func (w *chunkListWriter) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if off != int64(len(w.data)) || w.done {
		return 0, syscall.EINVAL // one sequential write of the whole list
	}
	if len(w.data)+len(data) > maxChunkListBytes {
		return 0, syscall.EFBIG
	}
	w.data = append(w.data, data...)
	return uint32(len(data)), 0
}

// Flush adopts the list at the first close; a dup's later close finds it
// done.
func (w *chunkListWriter) Flush(ctx context.Context) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || len(w.data) == 0 {
		return 0
	}
	w.done = true
	chunks, err := parseChunkList(w.data, w.fs.db.Header())
	if err != nil {
		w.fs.log.Warn().Uint64("ino", w.ino).Err(err).Msg("chunk list to adopt rejected")
		return syscall.EINVAL
	}
	err = w.fs.vfs.Adopt(ctx, w.ino, chunks)
	switch {
	case err == nil:
		w.fs.log.Info().Uint64("ino", w.ino).Int("chunks", len(chunks)).Msg("chunk list adopted")
		return 0
	case errors.Is(err, vfs.ErrNotInTiers):
		w.fs.log.Debug().Uint64("ino", w.ino).Err(err).Msg("chunk list not adopted")
		return syscall.ENODATA
	case errors.Is(err, vfs.ErrNotEmpty):
		return syscall.EBUSY
	}
	return w.fs.fail("adopt chunk list", w.ino, err)
}

// parseChunkList reads a written ChunkList: the filesystem's hash, entries
// in order from offset 0, ids that parse.
func parseChunkList(b []byte, h index.Header) ([]index.Chunk, error) {
	var l ChunkList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if l.Hash != h.Hash {
		return nil, fmt.Errorf("hash %q: this filesystem's is %q", l.Hash, h.Hash)
	}
	chunks := make([]index.Chunk, 0, len(l.Chunks))
	var off uint64
	for i, r := range l.Chunks {
		if r.Offset != off || r.Size == 0 || r.Size > math.MaxUint32 {
			return nil, fmt.Errorf("entry %d: offset %d size %d, want offset %d and a size of 1..%d", i, r.Offset, r.Size, off, uint32(math.MaxUint32))
		}
		c := index.Chunk{Size: uint32(r.Size)}
		if !r.Hole {
			id, err := stores.ParseID(r.ID)
			if err != nil || id.IsZero() {
				return nil, fmt.Errorf("entry %d: id %q: %v", i, r.ID, err)
			}
			c.ID = id
		}
		chunks = append(chunks, c)
		off += r.Size
	}
	return chunks, nil
}
