package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// The meta cases of Run check the contracts of stores.MetaStore. They run
// when the store implements it; a wrapper that implements it over a store
// that keeps no meta objects (its calls wrap stores.ErrNoMeta) is skipped.

// metaMax is the bound the suite reads meta objects with where it does not
// test the bound itself.
const metaMax = 64 << 20

// metaStore returns s as a MetaStore, or skips when it keeps no meta
// objects.
func metaStore(t *testing.T, s stores.Store) stores.MetaStore {
	t.Helper()
	ms, ok := s.(stores.MetaStore)
	if !ok {
		t.Skipf("%T does not implement stores.MetaStore", s)
	}
	if _, err := ms.ListMeta(t.Context(), ""); errors.Is(err, stores.ErrNoMeta) {
		t.Skipf("%T keeps no meta objects: %v", s, err)
	}
	return ms
}

func mustPutMeta(t *testing.T, ms stores.MetaStore, name string, data []byte) {
	t.Helper()
	if err := ms.PutMeta(t.Context(), name, data); err != nil {
		t.Fatalf("PutMeta(%q, %d bytes): %v", name, len(data), err)
	}
}

func mustGetMeta(t *testing.T, ms stores.MetaStore, name string, want []byte) []byte {
	t.Helper()
	got, err := ms.GetMeta(t.Context(), name, metaMax)
	if err != nil {
		t.Fatalf("GetMeta(%q): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GetMeta(%q) = %d bytes %s, want %d bytes %s", name, len(got), short(got), len(want), short(want))
	}
	return got
}

func mustListMeta(t *testing.T, ms stores.MetaStore, prefix string) []stores.MetaInfo {
	t.Helper()
	got, err := ms.ListMeta(t.Context(), prefix)
	if err != nil {
		t.Fatalf("ListMeta(%q): %v", prefix, err)
	}
	return got
}

// wantNamed fails t unless err's message names the meta object: the
// error is what a person reads to find the file or key.
func wantNamed(t *testing.T, what, name string, err error) {
	t.Helper()
	if err != nil && !strings.Contains(err.Error(), name) {
		t.Errorf("%s: error %q does not name the object %q", what, err, name)
	}
}

func testMetaPutGet(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	data, _ := chunk(20, 100<<10)
	want := bytes.Clone(data)
	name := "index/backup-000001.idx"
	mustPutMeta(t, ms, name, data)
	// The caller owns its buffer again once PutMeta returns.
	clear(data)
	got := mustGetMeta(t, ms, name, want)
	// And the caller owns what GetMeta returns.
	for i := range got {
		got[i] ^= 0xff
	}
	mustGetMeta(t, ms, name, want)
	// A bound of exactly the object's size reads it.
	if got, err := ms.GetMeta(t.Context(), name, int64(len(want))); err != nil || !bytes.Equal(got, want) {
		t.Errorf("GetMeta with max = its size: %d bytes, %v", len(got), err)
	}

	// Empty objects, and names at the limits.
	for _, name := range []string{"empty", "a", strings.Repeat("n", stores.MaxMetaName), strings.Repeat("d/", stores.MaxMetaName/2-1) + "x"} {
		mustPutMeta(t, ms, name, nil)
		got, err := ms.GetMeta(t.Context(), name, 0)
		if err != nil || len(got) != 0 {
			t.Errorf("GetMeta(%q) of an empty object = %d bytes, %v", name, len(got), err)
		}
	}
}

func testMetaReplace(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	long, _ := chunk(21, 10000)
	short, _ := chunk(22, 10)
	mustPutMeta(t, ms, "latest", long)
	mustPutMeta(t, ms, "latest", short)
	mustGetMeta(t, ms, "latest", short)
	mustPutMeta(t, ms, "latest", long)
	mustGetMeta(t, ms, "latest", long)
	mustPutMeta(t, ms, "latest", nil)
	mustGetMeta(t, ms, "latest", nil)
	if got := mustListMeta(t, ms, ""); !slices.Equal(got, []stores.MetaInfo{{Name: "latest", Size: 0}}) {
		t.Errorf("ListMeta after replacing = %v, want one empty object", got)
	}
}

func testMetaGetMissing(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	data, err := ms.GetMeta(t.Context(), "nothing/here", metaMax)
	wantNotFound(t, "GetMeta of a missing object", err)
	wantNamed(t, "GetMeta of a missing object", "nothing/here", err)
	if data != nil {
		t.Errorf("GetMeta of a missing object returned %d bytes as well as an error", len(data))
	}
	// A name that is only a prefix ("directory") of objects is no object.
	mustPutMeta(t, ms, "dir/object", []byte("x"))
	for _, name := range []string{"dir", "dir/obj", "dir/object/more"} {
		_, err := ms.GetMeta(t.Context(), name, metaMax)
		wantNotFound(t, fmt.Sprintf("GetMeta(%q) beside the object dir/object", name), err)
	}
}

func testMetaMax(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	data, _ := chunk(23, 1000)
	mustPutMeta(t, ms, "big", data)
	for _, max := range []int64{999, 1, 0} {
		got, err := ms.GetMeta(t.Context(), "big", max)
		if !errors.Is(err, stores.ErrCorrupt) {
			t.Errorf("GetMeta of a 1000-byte object with max %d: %d bytes, err = %v, want one wrapping stores.ErrCorrupt", max, len(got), err)
		}
		if got != nil {
			t.Errorf("GetMeta with max %d returned %d bytes as well as an error", max, len(got))
		}
		wantNamed(t, "GetMeta of an object over max", "big", err)
	}
	for _, max := range []int64{1000, 1001, 1 << 40} {
		if got, err := ms.GetMeta(t.Context(), "big", max); err != nil || !bytes.Equal(got, data) {
			t.Errorf("GetMeta of a 1000-byte object with max %d: %d bytes, %v", max, len(got), err)
		}
	}
}

func testMetaList(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	if got := mustListMeta(t, ms, ""); len(got) != 0 {
		t.Fatalf("ListMeta of an empty store = %v", got)
	}
	// Names whose order differs from that of a directory walk: '-' and
	// '.' sort before '/', so "a-b" and "a.b" come before "a/…".
	sizes := map[string]int{
		"a/1": 1, "a/10": 10, "a/2": 2, "a-b": 3, "a.b": 4, "ab": 5, "b": 0, "c/d/e": 7, "c/d/f/g": 8,
	}
	for name, n := range sizes {
		data, _ := chunk(uint64(30+n), n)
		mustPutMeta(t, ms, name, data)
	}
	want := func(prefix string) []stores.MetaInfo {
		var out []stores.MetaInfo
		for name, n := range sizes {
			if strings.HasPrefix(name, prefix) {
				out = append(out, stores.MetaInfo{Name: name, Size: int64(n)})
			}
		}
		slices.SortFunc(out, func(a, b stores.MetaInfo) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	for _, prefix := range []string{"", "a", "a/", "a/1", "a-", "c/d/", "c/d/e", "c/d/e/", "b", "z", "/", "../", "a b"} {
		got := mustListMeta(t, ms, prefix)
		if w := want(prefix); !slices.Equal(got, w) {
			t.Errorf("ListMeta(%q) = %v, want %v", prefix, got, w)
		}
	}
}

func testMetaDelete(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	mustPutMeta(t, ms, "gen/1", []byte("one"))
	mustPutMeta(t, ms, "gen/2", []byte("two"))
	ctx := t.Context()
	if err := ms.DeleteMeta(ctx, "gen/1"); err != nil {
		t.Fatalf("DeleteMeta: %v", err)
	}
	_, err := ms.GetMeta(ctx, "gen/1", metaMax)
	wantNotFound(t, "GetMeta after DeleteMeta", err)
	if err := ms.DeleteMeta(ctx, "gen/1"); err != nil {
		t.Errorf("second DeleteMeta: %v", err)
	}
	if err := ms.DeleteMeta(ctx, "never/put"); err != nil {
		t.Errorf("DeleteMeta of a name never put: %v", err)
	}
	mustGetMeta(t, ms, "gen/2", []byte("two"))
	if got := mustListMeta(t, ms, ""); !slices.Equal(got, []stores.MetaInfo{{Name: "gen/2", Size: 3}}) {
		t.Errorf("ListMeta after DeleteMeta = %v", got)
	}
	// A deleted object can be put again.
	mustPutMeta(t, ms, "gen/1", []byte("uno"))
	mustGetMeta(t, ms, "gen/1", []byte("uno"))
	// Once the last object under a prefix is gone, the prefix can be an
	// object's name.
	for _, name := range []string{"gen/1", "gen/2"} {
		if err := ms.DeleteMeta(ctx, name); err != nil {
			t.Fatalf("DeleteMeta(%q): %v", name, err)
		}
	}
	mustPutMeta(t, ms, "gen", []byte("now a name"))
	mustGetMeta(t, ms, "gen", []byte("now a name"))
	if got := mustListMeta(t, ms, ""); !slices.Equal(got, []stores.MetaInfo{{Name: "gen", Size: 10}}) {
		t.Errorf("ListMeta = %v, want only gen", got)
	}
}

// badMetaNames are names ValidMetaName refuses, which no call may turn
// into a path or key.
var badMetaNames = []string{
	"", "/a", "a/", "a//b", "..", "../x", "a/../../x", "a/./b", ".", "a b", "a\x00b", "a\\b", strings.Repeat("x", 300),
}

func testMetaBadNames(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	ctx := t.Context()
	for _, name := range badMetaNames {
		if err := ms.PutMeta(ctx, name, []byte("x")); err == nil {
			t.Errorf("PutMeta(%q) succeeded", name)
		}
		got, err := ms.GetMeta(ctx, name, metaMax)
		if err == nil || got != nil {
			t.Errorf("GetMeta(%q) = %d bytes, %v; want an error", name, len(got), err)
		}
		if err := ms.DeleteMeta(ctx, name); err == nil {
			t.Errorf("DeleteMeta(%q) succeeded", name)
		}
	}
	if got := mustListMeta(t, ms, ""); len(got) != 0 {
		t.Errorf("ListMeta after refused puts = %v, want nothing", got)
	}
}

func testMetaCancelled(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	mustPutMeta(t, ms, "kept", []byte("old"))
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"past its deadline", expired, context.DeadlineExceeded},
	} {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, c.want) {
				t.Errorf("%s with a context %s: err = %v, want one wrapping %v", op, c.name, err, c.want)
			}
		}
		check("PutMeta", ms.PutMeta(c.ctx, "kept", []byte("new")))
		check("PutMeta of a new name", ms.PutMeta(c.ctx, "other", []byte("new")))
		got, err := ms.GetMeta(c.ctx, "kept", metaMax)
		check("GetMeta", err)
		if got != nil {
			t.Errorf("GetMeta with a context %s returned %d bytes as well as an error", c.name, len(got))
		}
		list, err := ms.ListMeta(c.ctx, "")
		check("ListMeta", err)
		if list != nil {
			t.Errorf("ListMeta with a context %s returned %v as well as an error", c.name, list)
		}
		check("DeleteMeta", ms.DeleteMeta(c.ctx, "kept"))
		// Nothing above changed anything.
		mustGetMeta(t, ms, "kept", []byte("old"))
		if got := mustListMeta(t, ms, ""); !slices.Equal(got, []stores.MetaInfo{{Name: "kept", Size: 3}}) {
			t.Errorf("ListMeta after calls with a context %s = %v", c.name, got)
		}
	}
}

func testMetaClosed(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	mustPutMeta(t, ms, "x", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, stores.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want one wrapping stores.ErrClosed", op, err)
		}
	}
	check("PutMeta", ms.PutMeta(ctx, "x", []byte("y")))
	_, err := ms.GetMeta(ctx, "x", metaMax)
	check("GetMeta", err)
	_, err = ms.ListMeta(ctx, "")
	check("ListMeta", err)
	check("DeleteMeta", ms.DeleteMeta(ctx, "x"))
}

// testMetaApartFromChunks checks that meta objects and chunks never meet:
// a chunk listing reports no meta object, ListMeta reports no chunk, and a
// meta object named like a chunk's file or key is not that chunk.
func testMetaApartFromChunks(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	ctx := t.Context()
	data, id := chunk(24, 1000)
	mustPut(t, s, id, data)
	_, ghost := chunk(25, 1000)
	h, g := id.String(), ghost.String()
	names := []string{
		"index/backup", // the ordinary kind
		g[:4] + "/" + g + ".chunk", h[:4] + "/" + h + ".chunk",
		g, g + ".chunk", "_meta/" + g[:4] + "/" + g + ".chunk",
	}
	for _, name := range names {
		mustPutMeta(t, ms, name, []byte("meta "+name))
	}
	// The chunk is still the chunk, and the ghost no chunk at all.
	mustGet(t, s, id, data)
	wantAbsent(t, s, ghost, "with meta objects named like it")

	if l, ok := s.(stores.Lister); ok {
		var ids []stores.ID
		err := l.List(ctx, func(got stores.ID) error { ids = append(ids, got); return nil })
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("List: %v", err)
		}
		if err == nil && (len(ids) != 1 || ids[0] != id) {
			t.Errorf("List beside meta objects = %v, want only %s", ids, id)
		}
	}
	got := mustListMeta(t, ms, "")
	var gotNames []string
	for _, mi := range got {
		gotNames = append(gotNames, mi.Name)
	}
	wantNames := slices.Sorted(slices.Values(names))
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("ListMeta beside a chunk = %q, want %q", gotNames, wantNames)
	}
	// Deleting the chunk leaves the meta objects, and the other way round.
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		mustGetMeta(t, ms, name, []byte("meta "+name))
	}
	mustPut(t, s, id, data)
	for _, name := range names {
		if err := ms.DeleteMeta(ctx, name); err != nil {
			t.Fatalf("DeleteMeta(%q): %v", name, err)
		}
	}
	mustGet(t, s, id, data)
}

// testMetaConcurrent races PutMeta of one name with GetMeta of it: every
// read sees one whole version, never a mix or a part.
func testMetaConcurrent(t *testing.T, s stores.Store) {
	ms := metaStore(t, s)
	const name = "race/latest"
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i], _ = chunk(uint64(40+i), 64<<10+i*1000)
	}
	mustPutMeta(t, ms, name, versions[0])
	const goroutines, rounds = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				if (g+r)%2 == 0 {
					if err := ms.PutMeta(t.Context(), name, versions[(g+r)%len(versions)]); err != nil {
						errs <- fmt.Errorf("PutMeta: %w", err)
						return
					}
					continue
				}
				got, err := ms.GetMeta(t.Context(), name, metaMax)
				if err != nil {
					errs <- fmt.Errorf("GetMeta: %w", err)
					return
				}
				if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
					errs <- fmt.Errorf("GetMeta returned %d bytes %s, none of the versions put: a partial object", len(got), short(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := mustListMeta(t, ms, "race/"); len(got) != 1 || got[0].Name != name {
		t.Errorf("ListMeta after the race = %v, want %s alone", got, name)
	}
}
