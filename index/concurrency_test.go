package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestConcurrent runs many goroutines creating, committing, renaming,
// linking, unlinking and reading at once (run with -race), then checks the
// invariants and the totals.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	shared := mkdir(t, db, RootIno, "shared")
	const workers = 8
	ops := 60
	if testing.Short() {
		ops = 20
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers*4)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := db.Usage(ctx); err != nil {
					errc <- err
					return
				}
				es, err := db.ReadDir(ctx, shared.Ino, "", 50)
				if err != nil {
					errc <- err
					return
				}
				for _, e := range es {
					if _, err := db.GetAttr(ctx, e.Ino); err != nil && !errors.Is(err, ErrNotExist) {
						errc <- err
						return
					}
					if r == 0 {
						if _, err := db.Path(ctx, e.Ino); err != nil && !errors.Is(err, ErrNotExist) {
							errc <- err
							return
						}
					}
				}
			}
		}()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			fail := func(err error) { errc <- fmt.Errorf("worker %d: %w", w, err) }
			dir, err := db.Create(ctx, RootIno, fmt.Sprintf("w%d", w), dirNode())
			if err != nil {
				fail(err)
				return
			}
			for i := range ops {
				name := fmt.Sprintf("f%d-%d", w, i)
				f, err := db.Create(ctx, dir.Ino, name, fileNode())
				if err != nil {
					fail(err)
					return
				}
				// Chunks shared between workers contend on refcounts.
				cs := chunkList(1+rng.IntN(20), 1+rng.IntN(20), 100+w*1000+i)
				if _, err := db.CommitChunks(ctx, f.Ino, cs, time.Now()); err != nil {
					fail(err)
					return
				}
				switch rng.IntN(4) {
				case 0: // into the shared directory, maybe over another worker's file
					r, err := db.Rename(ctx, dir.Ino, name, shared.Ino, fmt.Sprintf("s%d", rng.IntN(10)), 0, time.Now())
					if err != nil {
						fail(err)
						return
					}
					if r != nil && r.Nlink == 0 {
						if err := db.Purge(ctx, r.Ino); err != nil {
							fail(err)
							return
						}
					}
				case 1:
					if _, err := db.Link(ctx, f.Ino, shared.Ino, "l"+name, time.Now()); err != nil {
						fail(err)
						return
					}
				case 2:
					a, err := db.Unlink(ctx, dir.Ino, name, time.Now())
					if err != nil {
						fail(err)
						return
					}
					if err := db.Purge(ctx, a.Ino); err != nil {
						fail(err)
						return
					}
				case 3: // move a subdirectory around the shared directory
					sub := fmt.Sprintf("d%d", rng.IntN(4))
					if _, err := db.Create(ctx, shared.Ino, sub, dirNode()); err != nil && !errors.Is(err, ErrExist) {
						fail(err)
						return
					}
					to := fmt.Sprintf("d%d", rng.IntN(4))
					_, err := db.Rename(ctx, shared.Ino, sub, dir.Ino, to, RenameNoReplace, time.Now())
					if err != nil && !errors.Is(err, ErrNotExist) && !errors.Is(err, ErrExist) {
						fail(err)
						return
					}
				}
				if _, err := db.Lookup(ctx, dir.Ino, name); err != nil && !errors.Is(err, ErrNotExist) {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	checkDB(t, db)
}

// TestRandomOps applies random operations on a small tree, where most of
// them fail, and checks that every error is one of the sentinels and that
// the invariants hold throughout.
func TestRandomOps(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	rng := rand.New(rand.NewPCG(42, 42))
	sentinels := []error{ErrNotExist, ErrExist, ErrNotEmpty, ErrNotDir, ErrIsDir, ErrInvalid, ErrPerm}
	inos := []uint64{RootIno}
	names := []string{"a", "b", "c", "d"}
	n := 1500
	if testing.Short() {
		n = 300
	}
	counts := map[string]int{}
	for i := range n {
		pick := func() uint64 {
			if rng.IntN(3) == 0 {
				return RootIno
			}
			return inos[len(inos)-1-rng.IntN(min(len(inos), 8))] // recent ones live longer
		}
		parent, parent2 := pick(), pick()
		name, name2 := names[rng.IntN(len(names))], names[rng.IntN(len(names))]
		now := t0.Add(time.Duration(i) * time.Second)
		var err error
		var op string
		switch rng.IntN(9) {
		case 0, 1:
			op = "create"
			mode := []uint32{syscall.S_IFREG | 0o644, syscall.S_IFDIR | 0o755, syscall.S_IFIFO | 0o600}[rng.IntN(3)]
			var a Attr
			a, err = db.Create(ctx, parent, name, NewNode{Mode: mode, Time: now})
			if err == nil {
				inos = append(inos, a.Ino)
			}
		case 2:
			op = "unlink"
			var a Attr
			a, err = db.Unlink(ctx, parent, name, now)
			if err == nil && a.Nlink == 0 && rng.IntN(2) == 0 {
				err = db.Purge(ctx, a.Ino)
			}
		case 3:
			op = "rmdir"
			err = db.Rmdir(ctx, parent, name, now)
		case 4, 5:
			op = "rename"
			var r *Attr
			r, err = db.Rename(ctx, parent, name, parent2, name2, uint32(rng.IntN(3)), now)
			if err == nil && r != nil && r.Nlink == 0 {
				err = db.Purge(ctx, r.Ino)
			}
		case 6:
			op = "link"
			_, err = db.Link(ctx, pick(), parent, name, now)
		case 7:
			op = "commit"
			_, err = db.CommitChunks(ctx, pick(), chunkList(1+rng.IntN(5), 1+rng.IntN(5)), now)
		case 8:
			op = "purge"
			err = db.Purge(ctx, pick())
		}
		if err != nil {
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known || errors.Is(err, ErrCorrupt) {
				t.Fatalf("op %d %s: unexpected error %v", i, op, err)
			}
			counts[op+" failed"]++
		} else {
			counts[op]++
		}
		if i%100 == 99 {
			checkDB(t, db)
			if t.Failed() {
				t.Fatalf("invariants broken after op %d (%s)", i, op)
			}
		}
	}
	t.Logf("ops: %v", counts)
}
