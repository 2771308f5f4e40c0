package main

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/chunker/caibx"
	dsfs "github.com/dualstore/dualstore/fs"
)

func importCmd() *cobra.Command {
	var store string
	c := &cobra.Command{
		Use:   "import FILE.caibx [--store DIR|s3+http(s)://HOST/BUCKET/PREFIX] MNT/PATH",
		Short: "Make a file of a mount from a desync blob index and its chunk store",
		Long: `import reads a casync blob index, fetches every chunk it lists from a desync/casync store
(a directory DIR/<4 hex>/<id>.cacnk, zstd; or an S3 store named as desync names it, with
S3_ACCESS_KEY/S3_SECRET_KEY/S3_REGION or the AWS credentials), verifies each against its id
(SHA512/256, or SHA256 for an index without that flag), and writes the file through the mount at
MNT/PATH, so both tiers get it. A chunk that is missing or fails verification aborts the import,
names the chunk, and leaves no file behind: the bytes go to a temporary name beside PATH, renamed
into place at the end.

Where the filesystem names chunks as the index does (chunker.hash: sha512-256) and its tiers hold
every chunk already (desync wrote them into the casync primary), the file references them in place
and nothing is read from the store: --store may then be left out.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageErr(fmt.Errorf("usage: %s", cmd.UseLine()))
			}
			return importCaibx(cmd.Context(), args[0], store, args[1])
		},
	}
	c.Flags().StringVar(&store, "store", "", "the desync store (a directory or an s3+http(s):// URL) holding the chunks (not needed when the tiers hold them all)")
	return c
}

// maxIndexBytes bounds a .caibx read into memory: 1<<24 entries of 40 bytes.
const maxIndexBytes = 64 + 40<<24 + 64

func importCaibx(ctx context.Context, indexPath, store, dst string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f, err := os.Open(indexPath)
	if err != nil {
		return usageErr(err)
	}
	x, err := caibx.Read(io.LimitReader(f, maxIndexBytes), caibx.Limits{})
	f.Close()
	if err != nil {
		return usageErr(fmt.Errorf("%s: %w", indexPath, err))
	}
	sum := func(b []byte) [32]byte { return sha256.Sum256(b) }
	if x.FeatureFlags&caibx.FlagSHA512_256 != 0 {
		sum = sha512.Sum512_256
	}
	tmp := filepath.Join(filepath.Dir(dst), fmt.Sprintf(".%s.import-%d", filepath.Base(dst), os.Getpid()))
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			out.Close()
			os.Remove(tmp)
		}
	}()
	n, err := adoptInPlace(out, x)
	if err != nil {
		return fmt.Errorf("%s: %w", indexPath, err)
	}
	if n > 0 {
		if err := out.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		done = true
		fmt.Fprintf(os.Stderr, "dualstore: imported %s (%d chunks, %d bytes) as %s, referencing the chunks the tiers hold in place\n", indexPath, n, x.Length(), dst)
		return nil
	}
	if store == "" {
		return usageErr(fmt.Errorf("%s: the tiers do not hold every chunk it lists (or the filesystem does not name chunks with SHA512/256): give --store, the desync store that holds them", indexPath))
	}
	src, err := openDesyncStore(ctx, store, x.Max)
	if err != nil {
		return err
	}
	defer src.Close()
	bar := newBar(int64(x.Length()), "import", true)
	for i, c := range x.Chunks {
		data, err := src.Get(ctx, c.ID, c.Size)
		if err != nil {
			return fmt.Errorf("chunk %d (%x) of %s: %w", i, c.ID, indexPath, err)
		}
		if uint64(len(data)) != c.Size || sum(data) != c.ID {
			return fmt.Errorf("chunk %d (%x) of %s does not verify in %s (%d bytes, the index says %d): import aborted, nothing written", i, c.ID, indexPath, store, len(data), c.Size)
		}
		if _, err := out.Write(data); err != nil {
			return err
		}
		bar.add(int64(len(data)))
	}
	bar.finish()
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	done = true
	fmt.Fprintf(os.Stderr, "dualstore: imported %s (%d chunks, %d bytes) as %s\n", indexPath, len(x.Chunks), x.Length(), dst)
	return nil
}

// adoptInPlace makes the empty file f of the mount the chunks of x where
// the filesystem names chunks as x does (SHA512/256) and its tiers hold
// every one already, a casync primary that desync wrote them into for
// example: nothing is copied, the daemon verifies each chunk in the tiers
// and puts it into a tier that lacks it. It returns the number of chunks
// referenced, 0 when the bytes must be copied instead (another hash, a
// chunk over the filesystem's maximum, a chunk in neither tier).
func adoptInPlace(f *os.File, x caibx.Index) (int, error) {
	if x.FeatureFlags&caibx.FlagSHA512_256 == 0 || len(x.Chunks) == 0 {
		return 0, nil
	}
	root, err := mountRoot(f.Name())
	if err != nil {
		return 0, err
	}
	l, err := chunkListOf(root, f)
	if err != nil {
		return 0, err
	}
	if l.Hash != chunker.HashSHA512_256 {
		return 0, nil
	}
	want := dsfs.ChunkList{Hash: l.Hash, Size: x.Length()}
	for _, c := range x.Chunks {
		if c.Size > uint64(l.MaxSize) {
			return 0, nil
		}
		want.Chunks = append(want.Chunks, dsfs.ChunkRef{Offset: c.Start, Size: c.Size, ID: hex.EncodeToString(c.ID[:])})
	}
	b, err := json.Marshal(want)
	if err != nil {
		return 0, err
	}
	p := filepath.Join(root, ".dualstore", "chunks", strconv.FormatUint(l.Ino, 10))
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	_, werr := w.Write(b)
	cerr := w.Close() // the daemon adopts the list at close
	switch {
	case werr != nil:
		return 0, fmt.Errorf("%s: %w", p, werr)
	case errors.Is(cerr, syscall.ENODATA):
		return 0, nil
	case cerr != nil:
		return 0, fmt.Errorf("%s: referencing the chunks in place failed (the daemon's log says why): %w", p, cerr)
	}
	return len(x.Chunks), nil
}
