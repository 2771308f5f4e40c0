package index

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// image is a database as pages, built from a snapshot and cuts.
type image struct {
	psize uint32
	pages map[uint32][]byte
	n     uint32
}

func snapImage(t *testing.T, db *DB) *image {
	t.Helper()
	im := &image{pages: map[uint32][]byte{}}
	info, err := db.Snapshot(context.Background(), func(pgno uint32, data []byte) error {
		im.pages[pgno] = bytes.Clone(data)
		return nil
	})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	im.psize, im.n = info.PageSize, info.Pages
	return im
}

func (im *image) apply(c Cut) {
	for pg, data := range c.Pages {
		im.pages[pg] = bytes.Clone(data)
	}
	for pg := range im.pages {
		if pg > c.Commit {
			delete(im.pages, pg)
		}
	}
	im.n = c.Commit
}

func (im *image) diff(o *image) string {
	if im.n != o.n || im.psize != o.psize {
		return fmt.Sprintf("size %d×%d, want %d×%d", im.n, im.psize, o.n, o.psize)
	}
	for pg := uint32(1); pg <= im.n; pg++ {
		if !bytes.Equal(im.pages[pg], o.pages[pg]) {
			return fmt.Sprintf("page %d differs", pg)
		}
	}
	return ""
}

func (im *image) write(t *testing.T, path string) {
	t.Helper()
	buf := make([]byte, int(im.n)*int(im.psize))
	for pg, data := range im.pages {
		copy(buf[int(pg-1)*int(im.psize):], data)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureRebuildsDatabase: a snapshot plus every settled cut, applied
// in order, is the database page for page, across checkpoints that restart
// the log, with commits between Seal and Settle, and with a background
// tailer reading while commits run. The image opens as a valid index.
func TestCaptureRebuildsDatabase(t *testing.T) {
	t.Run("seal-only", func(t *testing.T) { testCaptureRebuilds(t, false) })
	t.Run("tailer", func(t *testing.T) { testCaptureRebuilds(t, true) })
}

func testCaptureRebuilds(t *testing.T, tailer bool) {
	ctx := context.Background()
	db, _ := newDB(t)
	var mu sync.Mutex
	var got []Cut
	if err := db.StartCapture(func(cuts []Cut, err error) {
		if err != nil {
			t.Errorf("capture: %v", err)
		}
		mu.Lock()
		got = append(got, cuts...)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	dir := mkdir(t, db, RootIno, "d")
	im := snapImage(t, db)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	if !tailer {
		wg.Done()
	} else {
		go db.tailLoop(t, stop, &wg)
	}
	n := 0
	for round := range 6 {
		for i := range 40 {
			f := mkfile(t, db, dir.Ino, fmt.Sprintf("f%d-%d", round, i))
			if _, err := db.CommitChunks(ctx, f.Ino, chunkList(1000+n, 2000+n), t0); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if round%2 == 1 {
			if _, err := db.Unlink(ctx, dir.Ino, fmt.Sprintf("f%d-3", round-1), t0); err != nil {
				t.Fatal(err)
			}
		}
		e := db.Seal()
		// A commit after Seal belongs to the next cut.
		mkfile(t, db, RootIno, fmt.Sprintf("late%d", round))
		if _, err := db.Settle(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, c := range got {
		im.apply(c)
	}
	cuts := len(got)
	mu.Unlock()
	if cuts < 6 {
		t.Fatalf("%d cuts, want at least 6", cuts)
	}
	if d := im.diff(snapImage(t, db)); d != "" {
		t.Fatalf("snapshot + %d cuts is not the database: %s", cuts, d)
	}
	// The rebuilt pages are a working index with the same files.
	path := filepath.Join(t.TempDir(), "rebuilt.db")
	im.write(t, path)
	re := openDB(t, path)
	checkDB(t, re)
	if _, err := re.Lookup(ctx, dir.Ino, "f5-39"); err != nil {
		t.Fatalf("rebuilt index: %v", err)
	}
	if _, err := re.Lookup(ctx, dir.Ino, "f0-3"); err == nil {
		t.Fatalf("rebuilt index still has the unlinked f0-3")
	}
}

// TestCaptureWithoutSettleHoldsCuts: cuts wait until their epoch settles,
// and Settle hands over only the epochs it covers.
func TestCaptureWithoutSettleHoldsCuts(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	var got []Cut
	if err := db.StartCapture(func(cuts []Cut, err error) { got = append(got, cuts...) }); err != nil {
		t.Fatal(err)
	}
	mkfile(t, db, RootIno, "a")
	e1 := db.Seal()
	mkfile(t, db, RootIno, "b")
	e2 := db.Seal()
	if len(got) != 0 {
		t.Fatalf("%d cuts before any Settle", len(got))
	}
	if _, err := db.Settle(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Epoch != e1 {
		t.Fatalf("after Settle(%d): %d cuts", e1, len(got))
	}
	if _, err := db.Settle(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Epoch != e2 {
		t.Fatalf("after Settle(%d): %d cuts", e2, len(got))
	}
	// Settle's own commit (dropping undo records) lands in the next cut;
	// after that, a point with no commit adds no cut.
	for range 2 {
		e := db.Seal()
		if _, err := db.Settle(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	n := len(got)
	e := db.Seal()
	if _, err := db.Settle(ctx, e); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("an epoch without commits made a cut")
	}
}

func (db *DB) tailLoop(t *testing.T, stop chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Millisecond):
		}
		if err := db.Tail(); err != nil {
			t.Errorf("Tail: %v", err)
			return
		}
	}
}
