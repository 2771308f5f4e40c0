package dual_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/storetest"
)

// TestMaxChunkSizeIsTheChunkers: the stores' bound on any chunk is the
// chunker's ceiling on max_size (stores import nothing of the chunker).
func TestMaxChunkSizeIsTheChunkers(t *testing.T) {
	if stores.MaxChunkSize != chunker.MaxSizeLimit {
		t.Fatalf("stores.MaxChunkSize %d, chunker.MaxSizeLimit %d", stores.MaxChunkSize, chunker.MaxSizeLimit)
	}
}

// hostileDamages are what a damaged or hostile store puts in a chunk
// file's place: the file grown to 64 GiB (sparse, as `truncate -s 64G`
// leaves it), a FIFO, a chunk of another size (bytes appended: still
// within what a compressed copy could take, so read, then refused).
var hostileDamages = map[string]func(t testing.TB, p string){
	"sparse 64GiB": func(t testing.TB, p string) {
		if err := os.Truncate(p, 64<<30); err != nil {
			t.Fatal(err)
		}
	},
	"fifo": func(t testing.TB, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	},
	"another size": func(t testing.TB, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("more")); err != nil {
			t.Fatal(err)
		}
	},
}

// TestReadHostileCopy damages one tier's copy of a chunk: the read falls
// back to the other tier at once (not after the store timeout), counts a
// checksum error for the damaged store, and heals it: its chunk file is a
// regular file with the chunk again. Damaged in both tiers, the read fails
// at once with ErrCorrupt and an error naming the chunk, and leaves no
// goroutine behind.
func TestReadHostileCopy(t *testing.T) {
	for name, damage := range hostileDamages {
		for _, where := range []string{"primary", "safety", "both"} {
			t.Run(name+"/"+where, func(t *testing.T) {
				r := newRig(t, rigConfig{local: true, opts: func(o *dual.Options) {
					o.StoreTimeout = time.Minute
					o.MaxChunkSize = 1 << 20
					if where == "safety" {
						o.ReadPreference = dual.PreferSafety
					}
				}})
				data, id := chunk(71, 200<<10)
				r.put(t, data)
				var bad []*local.Local
				switch where {
				case "primary":
					bad = []*local.Local{r.pLocal}
				case "safety":
					bad = []*local.Local{r.sLocal}
				default:
					bad = []*local.Local{r.pLocal, r.sLocal}
				}
				for _, l := range bad {
					damage(t, chunkFile(l, id))
				}
				goroutines := runtime.NumGoroutine()
				r.m.ResetStats()
				ctx := stores.WithExpectedSize(t.Context(), id, int64(len(data)))
				start := time.Now()
				got, err := r.m.Get(ctx, id)
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("the read took %s", d)
				}
				if where == "both" {
					if !errors.Is(err, stores.ErrCorrupt) || !strings.Contains(err.Error(), id.String()) || got != nil {
						t.Fatalf("Get with both copies damaged = %d bytes, %v; want ErrCorrupt naming %s", len(got), err, id)
					}
					wantStats(t, r.m, map[string]float64{
						"chunk_reads.errors": 1, "self_heals": 0,
						"tiers.primary.reads.checksum_errors": 1, "tiers.safety.reads.checksum_errors": 1,
					})
					storetest.WaitFor(t, 10*time.Second, func() error {
						if n := runtime.NumGoroutine(); n > goroutines {
							return fmt.Errorf("%d goroutines after the read, %d before", n, goroutines)
						}
						return nil
					})
					return
				}
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Get with the %s copy damaged = %d bytes, %v; want the chunk", where, len(got), err)
				}
				wantStats(t, r.m, map[string]float64{
					"chunk_reads.ok": 1, "fallbacks": 1, "self_heals": 1,
					"tiers." + where + ".reads.checksum_errors": 1,
				})
				p := chunkFile(bad[0], id)
				if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("after the heal %s is %v, %v; want a regular file", p, fi, err)
				}
				if got, err := bad[0].Get(ctx, id); err != nil || !bytes.Equal(got, data) {
					t.Errorf("the healed copy: %d bytes, %v", len(got), err)
				}
			})
		}
	}
}

// TestCompareRepairHostile: a deep comparison classes a damaged copy
// (grown to 64 GiB, a FIFO) as a mismatch with the good one named, without
// reading it or waiting on it, and a repair replaces it.
func TestCompareRepairHostile(t *testing.T) {
	for name, damage := range hostileDamages {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigConfig{local: true})
			data, id := chunk(72, 100<<10)
			r.put(t, data)
			damage(t, chunkFile(r.sLocal, id))
			c := dual.ChunkInfo{ID: id, Size: int64(len(data))}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if v := r.m.CompareChunk(ctx, c, true); v.Class != dual.ClassMismatch || v.Good != dual.TierPrimary {
				t.Errorf("deep compare: %+v, want a mismatch with the primary good", v)
			}
			if _, wrote, err := r.m.RepairChunk(ctx, c); err != nil || !wrote {
				t.Fatalf("repair: wrote %v, %v", wrote, err)
			}
			if !bytes.Equal(onDisk(t, r.sLocal, id), data) {
				t.Error("the repaired safety copy is not the chunk")
			}
		})
	}
}
