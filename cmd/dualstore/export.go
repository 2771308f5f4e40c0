package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/chunker/caibx"
	"github.com/dualstore/dualstore/dual/engine"
	"github.com/dualstore/dualstore/index"
)

func exportCmd(g *globals) *cobra.Command {
	var out, toStore string
	c := &cobra.Command{
		Use:   "export (--config FILE | --data-dir DIR) [--to-store DIR] PATH -o OUT",
		Short: "Write casync blob indexes (.caibx) of files, for desync extract (offline)",
		Long: `export writes, for a file of the filesystem (PATH from its root), a casync blob index: with a
casync-layout primary, ` + "`desync extract -s PRIMARY OUT file`" + ` then gives the file bit-exact with no
copying. A directory exports one .caibx per regular file below it, into the directory OUT, as a
tree of PATH.caibx. Without --to-store it needs a filesystem created with chunker.hash:
sha512-256 and files without holes (the index names the chunks as they are); with --to-store DIR
it writes the file's chunks, re-hashed with SHA512/256 and zstd-compressed (holes as zero chunks),
into the desync local store DIR, so the same works for any filesystem. It runs offline (unmount
first).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || out == "" || !offline(g) {
				return usageErr(fmt.Errorf("usage: %s", cmd.UseLine()))
			}
			e, _, err := offlineEngine(g, cmd, "export")
			if err != nil {
				return err
			}
			defer closeEngine(e, e.Log())
			ctx := context.Background()
			a, err := e.Resolve(ctx, args[0])
			if err != nil {
				return usageErr(err)
			}
			if !a.IsDir() {
				return exportOne(ctx, e, a, args[0], out, toStore)
			}
			n := 0
			err = walkFiles(ctx, e, a.Ino, args[0], func(f index.Attr, p string) error {
				dst := filepath.Join(out, filepath.FromSlash(p)+".caibx")
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				n++
				return exportOne(ctx, e, f, p, dst, toStore)
			})
			fmt.Fprintf(os.Stderr, "dualstore: exported %d files into %s\n", n, out)
			return err
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "the .caibx to write (a directory for a directory)")
	c.Flags().StringVar(&toStore, "to-store", "", "write the chunks, re-hashed with SHA512/256, into this desync local store")
	return c
}

func exportOne(ctx context.Context, e *engine.Engine, a index.Attr, name, dst, toStore string) error {
	if !a.IsRegular() {
		return usageErr(fmt.Errorf("%s: not a regular file", name))
	}
	var x caibx.Index
	var err error
	if toStore != "" {
		x, err = e.CaibxToStore(ctx, a.Ino, toStore)
	} else {
		x, err = e.CaibxOf(ctx, a.Ino)
	}
	var ce *engine.ConfigError
	if errors.As(err, &ce) {
		return usageErr(err)
	}
	if errors.Is(err, engine.ErrNeedsRehash) {
		return usageErr(fmt.Errorf("%s: %w", name, err))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
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
