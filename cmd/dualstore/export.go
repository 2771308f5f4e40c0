package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/chunker/caibx"
	"github.com/dualstore/dualstore/dual/engine"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

func exportCmd(g *globals) *cobra.Command {
	var out, toStore string
	c := &cobra.Command{
		Use:   "export [--config FILE | --data-dir DIR] [--to-store DIR|URL] PATH (-o OUT | OUT)",
		Short: "Write casync blob indexes (.caibx) of files, for desync extract",
		Long: `export writes, for a file of the filesystem, a casync blob index: with a casync-layout primary,
` + "`desync extract -s PRIMARY OUT file`" + ` then gives the file bit-exact with no copying. A directory
exports one .caibx per regular file below it, into the directory OUT, as a tree of NAME.caibx,
with progress.

PATH is a file or directory in a mounted dualstore (MNT/PATH: the mount stays up; each file is
fsynced first, and its chunk list read from MNT/.dualstore/chunks/INO, which only the file's owner
and root may read), or, offline with --config/--data-dir, a path from the filesystem's root.

Without --to-store it needs a filesystem created with chunker.hash: sha512-256 and files without
holes (the index names the chunks as they are). With --to-store it writes each file's chunks,
re-hashed with SHA512/256 and zstd-compressed (holes as zero chunks), into a desync store (a
directory, or s3+http(s)://HOST[:PORT]/BUCKET[/PREFIX][?lookup=path] with desync's S3_ACCESS_KEY,
S3_SECRET_KEY, S3_REGION or the AWS credentials), so the same works for any filesystem.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 && out == "" {
				out, args = args[1], args[:1] // `export FILE out.caibx`, as DESIGN.md spells it
			}
			if len(args) != 1 || out == "" {
				return usageErr(fmt.Errorf("usage: %s", cmd.UseLine()))
			}
			ctx, done := interruptible()
			defer done()
			if offline(g) {
				return exportOffline(ctx, g, cmd, args[0], out, toStore)
			}
			return exportOnline(ctx, args[0], out, toStore)
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "the .caibx to write (a directory for a directory)")
	c.Flags().StringVar(&toStore, "to-store", "", "write the chunks, re-hashed with SHA512/256, into this desync store (a directory or an s3+http(s):// URL)")
	return c
}

// exportJob is one file to export: its name (for messages) and the .caibx
// to write.
type exportJob struct{ name, dst string }

// exportAll writes the .caibx of every job with one, with a progress bar
// over files when there are several.
func exportAll(jobs []exportJob, out string, one func(exportJob) (caibx.Index, error)) error {
	var b *bar
	if len(jobs) > 1 {
		b = newBar(int64(len(jobs)), "export", false)
	}
	for _, j := range jobs {
		x, err := one(j)
		if err != nil {
			return err
		}
		if err := writeCaibx(j.dst, x); err != nil {
			return err
		}
		b.add(1)
	}
	b.finish()
	if len(jobs) != 1 || jobs[0].dst != out {
		fmt.Fprintf(os.Stderr, "dualstore: exported %d files into %s\n", len(jobs), out)
	}
	return nil
}

func writeCaibx(dst string, x caibx.Index) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := caibx.Write(f, x); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	return f.Close()
}

// sinkFor opens the --to-store target (nil without one).
func sinkFor(ctx context.Context, toStore string, maxChunk uint64) (*desyncStore, func(id [32]byte, data []byte) error, error) {
	if toStore == "" {
		return nil, nil, nil
	}
	d, err := openDesyncStore(ctx, toStore, maxChunk)
	if err != nil {
		return nil, nil, err
	}
	return d, func(id [32]byte, data []byte) error { return d.Put(ctx, id, data) }, nil
}

func exportOffline(ctx context.Context, g *globals, cmd *cobra.Command, p, out, toStore string) error {
	e, _, err := offlineEngine(g, cmd, "export")
	if err != nil {
		return err
	}
	defer closeEngine(e, e.Log())
	a, err := e.Resolve(ctx, p)
	if err != nil {
		return usageErr(err)
	}
	if !a.IsDir() && !a.IsRegular() {
		return usageErr(fmt.Errorf("%s: not a regular file", p))
	}
	inos := map[string]uint64{}
	jobs := []exportJob{{p, out}}
	inos[p] = a.Ino
	if a.IsDir() {
		jobs = nil
		err = walkFiles(ctx, e, a.Ino, p, func(f index.Attr, name string) error {
			jobs = append(jobs, exportJob{name, filepath.Join(out, filepath.FromSlash(name)+".caibx")})
			inos[name] = f.Ino
			return nil
		})
		if err != nil {
			return err
		}
	}
	sink, put, err := sinkFor(ctx, toStore, uint64(e.Index.Header().MaxSize))
	if err != nil {
		return err
	}
	if sink != nil {
		defer sink.Close()
	}
	return exportAll(jobs, out, func(j exportJob) (caibx.Index, error) {
		var x caibx.Index
		if put != nil {
			x, err = e.CaibxToStore(ctx, inos[j.name], put)
		} else {
			var l dsfs.ChunkList
			if l, err = dsfs.ListChunks(ctx, e.Index, inos[j.name]); err == nil {
				x, err = caibxOfList(l)
			}
		}
		return x, exportErr(j.name, err)
	})
}

// exportErr names the file, and makes what the user must change a usage
// error.
func exportErr(name string, err error) error {
	var ce *engine.ConfigError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return usageErr(err)
	case errors.Is(err, engine.ErrNeedsRehash):
		return usageErr(fmt.Errorf("%s: %w", name, err))
	}
	return fmt.Errorf("%s: %w", name, err)
}

// walkFiles calls fn for every regular file below dir, with its path.
func walkFiles(ctx context.Context, e *engine.Engine, dir uint64, p string, fn func(index.Attr, string) error) error {
	after := ""
	for {
		ents, err := e.Index.ReadDir(ctx, dir, after, 1000)
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			return nil
		}
		for _, ent := range ents {
			after = ent.Name
			a, err := e.Index.GetAttr(ctx, ent.Ino)
			if err != nil {
				return err
			}
			child := path.Join(p, ent.Name)
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				if err := walkFiles(ctx, e, a.Ino, child, fn); err != nil {
					return err
				}
			case syscall.S_IFREG:
				if err := fn(a, child); err != nil {
					return err
				}
			}
		}
	}
}

// ctlDirIno is the inode number of a mount's `.dualstore` (fs.ctlIno).
const ctlDirIno = 0x7FFFFFFF00000000

// mountRoot returns the root of the dualstore mount that holds p: the
// nearest directory at or above it whose `.dualstore` is the control
// directory (a plain directory of that name below the root is not).
func mountRoot(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(d, ".dualstore"), &st) == nil && st.Ino == ctlDirIno && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", usageErr(fmt.Errorf("%s is not in a dualstore mount (give --config or --data-dir to export offline)", p))
		}
	}
}

func exportOnline(ctx context.Context, p, out, toStore string) error {
	root, err := mountRoot(p)
	if err != nil {
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return usageErr(err)
	}
	jobs := []exportJob{{p, out}}
	if st.IsDir() {
		jobs = nil
		err = filepath.WalkDir(p, func(name string, d iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".dualstore" && filepath.Dir(name) == root {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() {
				rel, _ := filepath.Rel(p, name)
				jobs = append(jobs, exportJob{name, filepath.Join(out, rel+".caibx")})
			}
			return nil
		})
		if err != nil {
			return err
		}
	} else if !st.Mode().IsRegular() {
		return usageErr(fmt.Errorf("%s: not a regular file", p))
	}
	var sink *desyncStore
	var put func(id [32]byte, data []byte) error
	defer func() {
		if sink != nil {
			sink.Close()
		}
	}()
	return exportAll(jobs, out, func(j exportJob) (caibx.Index, error) {
		f, err := os.Open(j.name)
		if err != nil {
			return caibx.Index{}, err
		}
		defer f.Close()
		l, err := chunkListOf(root, f)
		if err != nil {
			return caibx.Index{}, fmt.Errorf("%s: %w", j.name, err)
		}
		if toStore == "" {
			x, err := caibxOfList(l)
			return x, exportErr(j.name, err)
		}
		if sink == nil {
			if sink, put, err = sinkFor(ctx, toStore, uint64(l.MaxSize)); err != nil {
				return caibx.Index{}, err
			}
		}
		x, err := caibxFromFile(f, l, put)
		return x, exportErr(j.name, err)
	})
}

// chunkListOf fsyncs an open file of the mount at root (so its index entry
// is its content) and reads its chunk list from `.dualstore/chunks`.
func chunkListOf(root string, f *os.File) (dsfs.ChunkList, error) {
	var l dsfs.ChunkList
	if err := f.Sync(); err != nil {
		return l, fmt.Errorf("fsync: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return l, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return l, usageErr(errors.New("not a regular file"))
	}
	p := filepath.Join(root, ".dualstore", "chunks", strconv.FormatUint(st.Ino, 10))
	b, err := os.ReadFile(p)
	if errors.Is(err, syscall.EBUSY) {
		return l, fmt.Errorf("%s: the file is being written (its writes are not committed yet): %w", p, err)
	}
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("%s: %w", p, err)
	}
	if l.Size != uint64(st.Size) {
		return l, fmt.Errorf("changed while exported (size %d, its chunks say %d): export it again", st.Size, l.Size)
	}
	return l, nil
}

// caibxOfList is the blob index of a chunk list as it is (no copying).
func caibxOfList(l dsfs.ChunkList) (caibx.Index, error) {
	x := caibx.Index{FeatureFlags: caibx.FlagExcludeNoDump | caibx.FlagSHA512_256,
		Min: uint64(l.MinSize), Avg: uint64(l.AvgSize), Max: uint64(l.MaxSize)}
	if l.Hash != chunker.HashSHA512_256 {
		return x, fmt.Errorf("filesystem hash %s: %w", l.Hash, engine.ErrNeedsRehash)
	}
	for _, c := range l.Chunks {
		if c.Hole {
			return x, fmt.Errorf("a hole at %d: %w", c.Offset, engine.ErrNeedsRehash)
		}
		id, err := stores.ParseID(c.ID)
		if err != nil {
			return x, err
		}
		x.Chunks = append(x.Chunks, caibx.Chunk{Start: c.Offset, Size: c.Size, ID: id})
	}
	return x, nil
}

// caibxFromFile reads the file through the mount along its chunks (each
// read verified by the daemon, as any read is) and hands them, re-hashed,
// to put.
func caibxFromFile(f *os.File, l dsfs.ChunkList, put func(id [32]byte, data []byte) error) (caibx.Index, error) {
	b := caibx.NewBuilder(uint64(l.MinSize), uint64(l.AvgSize), uint64(l.MaxSize), put)
	var buf []byte
	for _, c := range l.Chunks {
		if c.Hole {
			if err := b.Hole(c.Size); err != nil {
				return b.Index(), err
			}
			continue
		}
		if c.Size > uint64(l.MaxSize) || c.Size > chunker.MaxSizeLimit {
			return b.Index(), fmt.Errorf("chunk %s at %d: %d bytes, more than the chunker's maximum", c.ID, c.Offset, c.Size)
		}
		if uint64(cap(buf)) < c.Size {
			buf = make([]byte, c.Size)
		}
		data := buf[:c.Size]
		if _, err := f.ReadAt(data, int64(c.Offset)); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the file shrank while exported: export it again")
			}
			return b.Index(), fmt.Errorf("read at %d: %w", c.Offset, err)
		}
		if err := b.Data(data); err != nil {
			return b.Index(), err
		}
	}
	return b.Index(), nil
}
