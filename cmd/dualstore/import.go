package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/chunker/caibx"
)

func importCmd() *cobra.Command {
	var store string
	c := &cobra.Command{
		Use:   "import FILE.caibx --store DIR MNT/PATH",
		Short: "Make a file of a mount from a desync blob index and its chunk store",
		Long: `import reads a casync blob index, fetches every chunk it lists from a desync/casync local
store (DIR/<4 hex>/<id>.cacnk, zstd), verifies each against its id (SHA512/256, or SHA256 for an
index without that flag), and writes the file through the mount at MNT/PATH, so both tiers get
it. A chunk that is missing or fails verification aborts the import, names the chunk, and leaves
no file behind: the bytes go to a temporary name beside PATH, renamed into place at the end.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || store == "" {
				return usageErr(fmt.Errorf("usage: %s", cmd.UseLine()))
			}
			return importCaibx(args[0], store, args[1])
		},
	}
	c.Flags().StringVar(&store, "store", "", "the desync local store (a directory) holding the chunks")
	return c
}

// maxIndexBytes bounds a .caibx read into memory: 1<<24 entries of 40 bytes.
const maxIndexBytes = 64 + 40<<24 + 64

func importCaibx(indexPath, store, dst string) error {
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
	if st, err := os.Stat(store); err != nil || !st.IsDir() {
		return usageErr(fmt.Errorf("--store %s: not a directory (%v)", store, err))
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
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(x.Max)+1))
	if err != nil {
		return err
	}
	defer dec.Close()
	var bar *progressbar.ProgressBar
	if stderrIsTerminal() {
		bar = progressbar.NewOptions64(int64(x.Length()), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("import"),
			progressbar.OptionShowBytes(true), progressbar.OptionThrottle(200*time.Millisecond))
	}
	for i, c := range x.Chunks {
		id := hex.EncodeToString(c.ID[:])
		p := filepath.Join(store, id[:4], id+".cacnk")
		raw, err := readBounded(p, int64(c.Size)+1<<16)
		if err != nil {
			return fmt.Errorf("chunk %d (%s) of %s: %w", i, id, indexPath, err)
		}
		data, err := dec.DecodeAll(raw, make([]byte, 0, c.Size))
		if err != nil {
			return fmt.Errorf("chunk %d (%s) of %s: %s: not zstd: %w", i, id, indexPath, p, err)
		}
		if uint64(len(data)) != c.Size || sum(data) != c.ID {
			return fmt.Errorf("chunk %d (%s) of %s: %s does not verify (%d bytes, the index says %d): import aborted, nothing written", i, id, indexPath, p, len(data), c.Size)
		}
		if _, err := out.Write(data); err != nil {
			return err
		}
		if bar != nil {
			_ = bar.Add64(int64(len(data)))
		}
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
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

// readBounded reads a chunk file, refusing one larger than max (a damaged
// or hostile store) without reading it.
func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > max {
		return nil, fmt.Errorf("%s: not a chunk file of at most %d bytes", p, max)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > max {
		return nil, errors.New(p + ": grew while read")
	}
	return buf.Bytes(), nil
}
