package maint_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// TestScrubOptionsSubtree checks that a run limited to a path walks
// exactly the chunks of the files below it, each once, in id order, and
// that the whole filesystem is every referenced chunk.
func TestScrubOptionsSubtree(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.mkdir(t, index.RootIno, "a")
	e.file(t, a, "f1", 1, 2)
	sub := e.mkdir(t, a, "sub")
	f2 := e.file(t, sub, "f2", 3, 1, 3) // shares chunk 1 with f1, 3 twice
	if _, err := e.DB.Link(ctx, f2, index.RootIno, "f2-link", time.Now()); err != nil {
		t.Fatal(err)
	}
	b := e.mkdir(t, index.RootIno, "b")
	e.file(t, b, "f3", 4)
	e.file(t, index.RootIno, "f4", 5)
	if _, err := e.DB.Create(ctx, a, "l", index.NewNode{Mode: syscall.S_IFLNK | 0o777, Target: "../b/f3"}); err != nil {
		t.Fatal(err)
	}
	e.mkdir(t, b, "empty")
	// A directory longer than one ReadDir page, its only chunk at the end.
	big := e.mkdir(t, index.RootIno, "big")
	for i := range 1100 {
		if _, err := e.DB.Create(ctx, big, fmt.Sprintf("e%04d", i), index.NewNode{Mode: syscall.S_IFREG | 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	e.file(t, big, "zzz", 6)

	for _, tc := range []struct {
		path     string
		want     []int // seeds
		wantPath string
		err      error
	}{
		{path: "/", want: []int{1, 2, 3, 4, 5, 6}},
		{path: "", want: []int{1, 2, 3, 4, 5, 6}},
		{path: "/a", want: []int{1, 2, 3}, wantPath: "/a"},
		{path: "/a/sub", want: []int{1, 3}, wantPath: "/a/sub"},
		{path: "a/sub/", want: []int{1, 3}, wantPath: "a/sub/"},
		{path: "/a/./sub/../sub", want: []int{1, 3}, wantPath: "/a/./sub/../sub"},
		{path: "/b", want: []int{4}, wantPath: "/b"},
		{path: "/b/f3", want: []int{4}, wantPath: "/b/f3"},
		{path: "/b/empty", want: nil, wantPath: "/b/empty"},
		{path: "/a/l", want: nil, wantPath: "/a/l"}, // a symlink is not followed
		{path: "/big", want: []int{6}, wantPath: "/big"},
		{path: "/nope", err: index.ErrNotExist},
		{path: "/b/f3/x", err: index.ErrNotDir},
	} {
		t.Run(tc.path, func(t *testing.T) {
			base := dual.ScrubOptions{Deep: true, Concurrency: 3, MaxDetails: 7}
			o, err := e.x.ScrubOptions(ctx, base, tc.path)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ScrubOptions(%q) error %v, want %v", tc.path, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !o.Deep || o.Concurrency != 3 || o.MaxDetails != 7 || o.Path != tc.wantPath || o.FilesOf == nil {
				t.Errorf("options not completed as asked: %+v", o)
			}
			var want []stores.ID
			var wantBytes int64
			for _, s := range tc.want {
				want = append(want, id(s))
				wantBytes += size(s)
			}
			slices.SortFunc(want, func(a, b stores.ID) int { return slices.Compare(a[:], b[:]) })
			// Page through with a small limit, as the scrub does.
			var got []stores.ID
			var gotBytes int64
			var after stores.ID
			for {
				page, err := o.Source(ctx, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > 2 {
					t.Fatalf("page of %d, limit 2", len(page))
				}
				for _, c := range page {
					got = append(got, c.ID)
					gotBytes += c.Size
				}
				after = page[len(page)-1].ID
			}
			if !slices.Equal(got, want) || gotBytes != wantBytes {
				t.Errorf("chunks of %q: %d (%d B), want %d (%d B) in id order:\n got %v\nwant %v", tc.path, len(got), gotBytes, len(want), wantBytes, got, want)
			}
			n, nb, err := o.Count(ctx)
			if err != nil || n != int64(len(want)) || nb != wantBytes {
				t.Errorf("Count = %d, %d, %v; want %d, %d", n, nb, err, len(want), wantBytes)
			}
			// And the run itself compares exactly those.
			r, err := e.DM.Run(ctx, o)
			if err != nil || r.Done != int64(len(want)) || r.Matches != r.Done || r.Path != tc.wantPath {
				t.Errorf("run over %q: %+v, %v; want %d matches", tc.path, r, err, len(want))
			}
		})
	}
}

// TestScrubOptionsFilesOf checks the report names the files of a chunk.
func TestScrubOptionsFilesOf(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	d := e.mkdir(t, index.RootIno, "d")
	e.file(t, d, "x", 1, 2)
	e.file(t, index.RootIno, "y", 2)
	if err := e.Primary.Delete(ctx, id(2)); err != nil {
		t.Fatal(err)
	}
	o, err := e.x.ScrubOptions(ctx, dual.ScrubOptions{}, "/")
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.DM.Run(ctx, o)
	if err != nil || r.SafetyOnly != 1 || len(r.Details) != 1 {
		t.Fatalf("compare: %+v, %v; want one safety_only", r, err)
	}
	if got := r.Details[0].Files; !slices.Equal(got, []string{"/d/x", "/y"}) {
		t.Errorf("files of the chunk: %q, want /d/x and /y", got)
	}
}

// TestGCOptions checks gc removes exactly the chunks no file references.
func TestGCOptions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := e.file(t, index.RootIno, "f", 1, 2)
	e.file(t, index.RootIno, "g", 2, 3)
	e.commit(t, f, 4) // 1 is now unreferenced
	r, err := e.DM.GC(ctx, e.x.GCOptions(dual.GCOptions{}))
	if err != nil || r.Removed != 1 || r.Errors != 0 {
		t.Fatalf("gc: %+v, %v; want 1 removed", r, err)
	}
	for s, want := range map[int]bool{1: false, 2: true, 3: true, 4: true} {
		for _, m := range []*stores.Mem{e.Primary, e.Safety} {
			if _, err := m.Stat(ctx, id(s)); (err == nil) != want {
				t.Errorf("chunk %d in %s: %v, want present %v", s, m.Name(), err, want)
			}
		}
	}
	if n, _, err := e.DB.UnrefCount(ctx); err != nil || n != 0 {
		t.Errorf("unreferenced rows after gc: %d, %v", n, err)
	}
}
