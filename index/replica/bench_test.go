package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// BenchmarkRestore measures what `dualstore restore` spends on the index
// itself: the objects read from a tier (a directory on this disk, as a
// local store keeps them), verified and applied, the database opened and
// checked. The index holds DUALSTORE_RESTORE_FILES files (default 100,000)
// in 100 directories, each with two chunks, replicated as a snapshot and
// then one segment per 1,000 files (issue #14's target: under 30 s).
func BenchmarkRestore(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("DUALSTORE_RESTORE_FILES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	dir := b.TempDir()
	db, err := index.Open(ctx, index.Options{Path: filepath.Join(dir, "index.db"), NewHeader: testHeader, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	store := &dirMeta{root: filepath.Join(dir, "tier")}
	ts := []Target{{Name: "safety", Store: store}}
	r, err := Start(ctx, db, Options{FSID: db.Header().FSID, Targets: ts, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var dirs []uint64
	for d := range 100 {
		a, err := db.Create(ctx, index.RootIno, fmt.Sprintf("d%02d", d), index.NewNode{Mode: syscall.S_IFDIR | 0o755, Time: start})
		if err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, a.Ino)
	}
	for i := range n {
		a, err := db.Create(ctx, dirs[i%100], fmt.Sprintf("file-%07d", i), index.NewNode{Mode: syscall.S_IFREG | 0o644, Time: start})
		if err != nil {
			b.Fatal(err)
		}
		var c1, c2 stores.ID
		copy(c1[:], fmt.Sprintf("a%031d", i))
		copy(c2[:], fmt.Sprintf("b%031d", i))
		if _, err := db.CommitChunks(ctx, a.Ino, []index.Chunk{{ID: c1, Size: 4096}, {ID: c2, Size: 100}}, start); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			e := db.Seal()
			if _, err := db.Settle(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.Close(ctx); err != nil {
		b.Fatal(err)
	}
	db.Close()
	b.Logf("built and replicated %d files in %s", n, time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for i := range b.N {
		path := filepath.Join(dir, fmt.Sprintf("restored-%d.db", i))
		t0 := time.Now()
		res, err := Restore(ctx, RestoreOptions{Targets: ts, Path: path})
		if err != nil {
			b.Fatal(err)
		}
		rdb, err := index.Open(ctx, index.Options{Path: path, MustExist: true, Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		if err := rdb.Check(ctx, 10); err != nil {
			b.Fatal(err)
		}
		u, err := rdb.Usage(ctx)
		if err != nil || u.Files != int64(n) {
			b.Fatalf("restored %d files, want %d (%v)", u.Files, n, err)
		}
		rdb.Close()
		el := time.Since(t0)
		b.ReportMetric(el.Seconds(), "s/restore")
		b.ReportMetric(float64(res.Bytes)/(1<<20), "MiB-read")
		b.ReportMetric(float64(res.Objects), "objects")
		b.Logf("restored %d files: %d objects, %.1f MiB, %d pages in %s (target < 30 s)", n, res.Objects, float64(res.Bytes)/(1<<20), res.Pages, el.Round(time.Millisecond))
	}
}

// dirMeta keeps meta objects as files in a directory, as the local store
// does, for the benchmark (the stores' own MetaStore is tested by their
// conformance suite).
type dirMeta struct{ root string }

func (d *dirMeta) PutMeta(ctx context.Context, name string, data []byte) error {
	p := filepath.Join(d.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o600)
}

func (d *dirMeta) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.root, name))
}

func (d *dirMeta) ListMeta(ctx context.Context, prefix string) ([]stores.MetaInfo, error) {
	var out []stores.MetaInfo
	err := filepath.Walk(d.root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d.root, p)
		if len(rel) >= len(prefix) && rel[:len(prefix)] == prefix {
			out = append(out, stores.MetaInfo{Name: rel, Size: fi.Size()})
		}
		return nil
	})
	return out, err
}

func (d *dirMeta) DeleteMeta(ctx context.Context, name string) error {
	return os.Remove(filepath.Join(d.root, name))
}
