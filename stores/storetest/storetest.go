// Package storetest is the conformance suite for stores.Store: every backend
// and every wrapper runs Run from its tests, so the contracts written on the
// Store interface are checked the same way everywhere (like io/fs's
// fstest.TestFS, or rclone's fstests).
//
// It imports only package stores and the standard library, so any backend's
// test can use it.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// Run checks that the stores made by newStore keep the contracts of
// stores.Store, and of stores.Lister, stores.Syncer and stores.MetaStore
// when they implement them. Each subtest calls newStore once and expects a fresh, empty store;
// newStore registers whatever cleanup the store needs with its t, and that
// cleanup must cope with a store the test already closed.
func Run(t *testing.T, newStore func(t *testing.T) stores.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s stores.Store)
	}{
		{"Names", testNames},
		{"GetMissing", testGetMissing},
		{"StatMissing", testStatMissing},
		{"PutGet", testPutGet},
		{"PutExisting", testPutExisting},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"LargeCompressible", testLargeCompressible},
		{"ConcurrentSameID", testConcurrentSameID},
		{"ConcurrentManyIDs", testConcurrentManyIDs},
		{"List", testList},
		{"ListStops", testListStops},
		{"Sync", testSync},
		{"Closed", testClosed},
		{"CancelledContext", testCancelled},
		{"ContextEndsDuringPut", testContextEndsDuringPut},
		{"ExpectedSize", testExpectedSize},
		{"MaxSize", testMaxSize},
		{"MetaPutGet", testMetaPutGet},
		{"MetaReplace", testMetaReplace},
		{"MetaGetMissing", testMetaGetMissing},
		{"MetaMax", testMetaMax},
		{"MetaList", testMetaList},
		{"MetaDelete", testMetaDelete},
		{"MetaBadNames", testMetaBadNames},
		{"MetaCancelled", testMetaCancelled},
		{"MetaClosed", testMetaClosed},
		{"MetaApartFromChunks", testMetaApartFromChunks},
		{"MetaConcurrent", testMetaConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tt.fn(t, s)
		})
	}
}

// chunk returns n bytes of pseudo-random data derived from seed, and its id.
// Stores do not check ids, but real ids keep the suite honest for wrappers
// that do (a Tier with a verify function).
func chunk(seed uint64, n int) ([]byte, stores.ID) {
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	return data, idOf(data)
}

// idOf is the id the suite gives data.
func idOf(data []byte) stores.ID { return sha256.Sum256(data) }

// Verify reports whether data hashes to id the way this suite computes ids,
// for wrappers under test that take a verify function (stores.NewTier).
func Verify(id stores.ID, data []byte) bool { return idOf(data) == id }

func mustPut(t *testing.T, s stores.Store, id stores.ID, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), id, data); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", id, len(data), err)
	}
}

func mustGet(t *testing.T, s stores.Store, id stores.ID, want []byte) []byte {
	t.Helper()
	got, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes %s, want %d bytes %s", id, len(got), short(got), len(want), short(want))
	}
	return got
}

// short describes data briefly for failure messages (chunks can be MiBs).
func short(data []byte) string {
	if len(data) > 16 {
		return fmt.Sprintf("%x…", data[:16])
	}
	return fmt.Sprintf("%x", data)
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("%s: err = %v, want one wrapping stores.ErrNotFound", what, err)
	}
}

func testNames(t *testing.T, s stores.Store) {
	if s.Name() == "" {
		t.Error("Name() is empty")
	}
	if s.Type() == "" {
		t.Error("Type() is empty")
	}
}

func testGetMissing(t *testing.T, s stores.Store) {
	_, id := chunk(1, 100)
	data, err := s.Get(t.Context(), id)
	wantNotFound(t, "Get of a missing chunk", err)
	if data != nil {
		t.Errorf("Get of a missing chunk returned %d bytes as well as an error", len(data))
	}
}

func testStatMissing(t *testing.T, s stores.Store) {
	_, id := chunk(1, 100)
	_, err := s.Stat(t.Context(), id)
	wantNotFound(t, "Stat of a missing chunk", err)
}

func testPutGet(t *testing.T, s stores.Store) {
	data, id := chunk(2, 64<<10)
	want := bytes.Clone(data)
	mustPut(t, s, id, data)
	// The caller owns its buffer again once Put returns.
	for i := range data {
		data[i] = 0
	}
	got := mustGet(t, s, id, want)
	// And the caller owns what Get returns.
	for i := range got {
		got[i] ^= 0xff
	}
	mustGet(t, s, id, want)
}

func testPutExisting(t *testing.T, s stores.Store) {
	data, id := chunk(3, 1000)
	mustPut(t, s, id, data)
	mustPut(t, s, id, data)
	mustGet(t, s, id, data)
}

func testStat(t *testing.T, s stores.Store) {
	for _, n := range []int{0, 1, 1234, 300 << 10} {
		data, id := chunk(uint64(4+n), n)
		mustPut(t, s, id, data)
		size, err := s.Stat(t.Context(), id)
		if err != nil {
			t.Fatalf("Stat of a %d-byte chunk: %v", n, err)
		}
		if size != int64(n) && size != -1 {
			t.Errorf("Stat of a %d-byte chunk = %d, want %d (or -1 for unknown)", n, size, n)
		}
	}
}

func testDelete(t *testing.T, s stores.Store) {
	data, id := chunk(5, 4096)
	other, otherID := chunk(6, 4096)
	mustPut(t, s, id, data)
	mustPut(t, s, otherID, other)
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Get(t.Context(), id)
	wantNotFound(t, "Get after Delete", err)
	_, err = s.Stat(t.Context(), id)
	wantNotFound(t, "Stat after Delete", err)
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	mustGet(t, s, otherID, other)
	// A deleted chunk can be stored again.
	mustPut(t, s, id, data)
	mustGet(t, s, id, data)
}

func testDeleteMissing(t *testing.T, s stores.Store) {
	_, id := chunk(7, 10)
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatalf("Delete of a missing chunk: %v", err)
	}
}

func testEmpty(t *testing.T, s stores.Store) {
	id := idOf(nil)
	mustPut(t, s, id, nil)
	got, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get of an empty chunk: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("Get of an empty chunk = %d bytes", len(got))
	}
	mustPut(t, s, id, []byte{})
}

func testLarge(t *testing.T, s stores.Store) {
	data, id := chunk(8, 8<<20)
	mustPut(t, s, id, data)
	mustGet(t, s, id, data)
}

// testLargeCompressible gives compressing stores something to compress.
func testLargeCompressible(t *testing.T, s stores.Store) {
	pattern, _ := chunk(9, 4096)
	data := bytes.Repeat(pattern, 2048) // 8 MiB
	id := idOf(data)
	mustPut(t, s, id, data)
	mustGet(t, s, id, data)
	size, err := s.Stat(t.Context(), id)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if size != int64(len(data)) && size != -1 {
		t.Errorf("Stat = %d, want %d (or -1)", size, len(data))
	}
}

// testConcurrentSameID races writers and readers of one chunk: Put must be
// atomic, so every Get sees all of it or nothing.
func testConcurrentSameID(t *testing.T, s stores.Store) {
	data, id := chunk(10, 1<<20)
	const goroutines, rounds = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds)
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				if (g+r)%2 == 0 {
					if err := s.Put(t.Context(), id, data); err != nil {
						errs <- fmt.Errorf("put: %w", err)
						return
					}
					continue
				}
				got, err := s.Get(t.Context(), id)
				switch {
				case errors.Is(err, stores.ErrNotFound):
				case err != nil:
					errs <- fmt.Errorf("get: %w", err)
					return
				case !bytes.Equal(got, data):
					errs <- fmt.Errorf("get returned %d bytes, not the %d put: a partial chunk", len(got), len(data))
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
	mustGet(t, s, id, data)
}

func testConcurrentManyIDs(t *testing.T, s stores.Store) {
	const goroutines, perGoroutine = 16, 16
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				data, id := chunk(uint64(1000+g*perGoroutine+i), 1000+i*100)
				if err := s.Put(t.Context(), id, data); err != nil {
					errs <- fmt.Errorf("put: %w", err)
					return
				}
				got, err := s.Get(t.Context(), id)
				if err != nil {
					errs <- fmt.Errorf("get: %w", err)
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("Get(%s) returned other data", id)
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
	if l, ok := s.(stores.Lister); ok {
		n := 0
		err := l.List(t.Context(), func(stores.ID) error { n++; return nil })
		if errors.Is(err, errors.ErrUnsupported) {
			return
		}
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if n != goroutines*perGoroutine {
			t.Errorf("List found %d chunks, want %d", n, goroutines*perGoroutine)
		}
	}
}

// lister returns s as a Lister, or skips when it cannot list. A wrapper that
// implements Lister but wraps a store that cannot list reports
// errors.ErrUnsupported, which counts as "cannot list".
func lister(t *testing.T, s stores.Store) stores.Lister {
	t.Helper()
	l, ok := s.(stores.Lister)
	if !ok {
		t.Skipf("%T does not implement stores.Lister", s)
	}
	if err := l.List(t.Context(), func(stores.ID) error { return nil }); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("%T cannot list: %v", s, err)
	}
	return l
}

func testList(t *testing.T, s stores.Store) {
	l := lister(t, s)
	want := make(map[stores.ID]bool)
	for i := range 10 {
		data, id := chunk(uint64(100+i), 100+i)
		mustPut(t, s, id, data)
		want[id] = true
	}
	n := 0
	for id := range want {
		if n == 3 {
			break
		}
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		delete(want, id)
		n++
	}
	got := make(map[stores.ID]int)
	if err := l.List(t.Context(), func(id stores.ID) error { got[id]++; return nil }); err != nil {
		t.Fatalf("List: %v", err)
	}
	for id, times := range got {
		if !want[id] {
			t.Errorf("List reported %s, which is not stored", id)
		}
		if times > 1 {
			t.Errorf("List reported %s %d times", id, times)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("List missed %s", id)
		}
	}
}

func testListStops(t *testing.T, s stores.Store) {
	l := lister(t, s)
	for i := range 5 {
		data, id := chunk(uint64(200+i), 10)
		mustPut(t, s, id, data)
	}
	stop := errors.New("stop here")
	calls := 0
	err := l.List(t.Context(), func(stores.ID) error { calls++; return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want the error fn returned", err)
	}
	if calls != 1 {
		t.Errorf("List called fn %d times after it returned an error, want 1 call in all", calls)
	}
}

func testSync(t *testing.T, s stores.Store) {
	sy, ok := s.(stores.Syncer)
	if !ok {
		t.Skipf("%T does not implement stores.Syncer", s)
	}
	data, id := chunk(11, 1000)
	mustPut(t, s, id, data)
	if err := sy.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	mustGet(t, s, id, data)
}

func testClosed(t *testing.T, s stores.Store) {
	data, id := chunk(12, 1000)
	mustPut(t, s, id, data)
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
	_, err := s.Get(ctx, id)
	check("Get", err)
	check("Put", s.Put(ctx, id, data))
	_, err = s.Stat(ctx, id)
	check("Stat", err)
	check("Delete", s.Delete(ctx, id))
	if l, ok := s.(stores.Lister); ok {
		check("List", l.List(ctx, func(stores.ID) error { return nil }))
	}
	if sy, ok := s.(stores.Syncer); ok {
		check("Sync", sy.Sync(ctx))
	}
	_ = s.Close() // a second Close may fail but must not panic
}

// testCancelled checks the contract for a context that is done before the
// call: every call fails with an error wrapping ctx.Err() and changes
// nothing. A Put that failed that way must have stored nothing at all, not
// a part of the chunk and not all of it: a caller told that Put failed may
// act on it (record the chunk as missing, retry elsewhere).
func testCancelled(t *testing.T, s stores.Store) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for i, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"past its deadline", expired, context.DeadlineExceeded},
	} {
		data, id := chunk(uint64(13+2*i), 1000)
		mustPut(t, s, id, data)
		ctx := c.ctx
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, c.want) {
				t.Errorf("%s with a context %s: err = %v, want one wrapping %v", op, c.name, err, c.want)
			}
		}
		got, err := s.Get(ctx, id)
		check("Get", err)
		if got != nil {
			t.Errorf("Get with a context %s returned %d bytes as well as an error", c.name, len(got))
		}
		other, otherID := chunk(uint64(14+2*i), 64<<10)
		check("Put", s.Put(ctx, otherID, other))
		check("Put of a held chunk", s.Put(ctx, id, data))
		_, err = s.Stat(ctx, id)
		check("Stat", err)
		check("Delete", s.Delete(ctx, id))
		if l, ok := s.(stores.Lister); ok {
			err := l.List(ctx, func(stores.ID) error { return nil })
			if !errors.Is(err, errors.ErrUnsupported) {
				check("List", err)
			}
		}
		if sy, ok := s.(stores.Syncer); ok {
			check("Sync", sy.Sync(ctx))
		}
		// Nothing above may have removed the chunk, nor stored the other.
		mustGet(t, s, id, data)
		wantAbsent(t, s, otherID, fmt.Sprintf("after a Put with a context %s failed", c.name))
	}
}

// wantAbsent fails t unless s holds nothing under id: Get, Stat and
// stores.Has report it missing, and List (where the store can list) does
// not report it.
func wantAbsent(t *testing.T, s stores.Store, id stores.ID, when string) {
	t.Helper()
	data, err := s.Get(t.Context(), id)
	switch {
	case err == nil:
		t.Errorf("Get %s: found %d bytes, want nothing stored", when, len(data))
	case !errors.Is(err, stores.ErrNotFound):
		t.Errorf("Get %s: err = %v, want one wrapping stores.ErrNotFound", when, err)
	}
	if _, err := s.Stat(t.Context(), id); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Stat %s: err = %v, want one wrapping stores.ErrNotFound", when, err)
	}
	if has, err := stores.Has(t.Context(), s, id); has || err != nil {
		t.Errorf("Has %s = %v, %v, want false, nil", when, has, err)
	}
	if l, ok := s.(stores.Lister); ok {
		err := l.List(t.Context(), func(got stores.ID) error {
			if got == id {
				t.Errorf("List %s reports the chunk", when)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("List %s: %v", when, err)
		}
	}
}

// testContextEndsDuringPut ends Puts' contexts while they run, at
// different points. The contract asks no more of such a Put than of any:
// it is atomic. A Put that returned nil stored the whole chunk; one that
// failed stored the whole chunk or nothing, never a part. (Whole is
// allowed: an S3 server may finish a PUT whose client gave up. A backend
// may promise more; stores/local checks its own "nothing" itself.)
func testContextEndsDuringPut(t *testing.T, s stores.Store) {
	i := 0
	for d := time.Duration(0); d < 100*time.Millisecond; d = max(4*d, time.Microsecond) {
		i++
		data, id := chunk(uint64(300+i), 1<<20)
		ctx, cancel := context.WithTimeout(t.Context(), d)
		err := s.Put(ctx, id, data)
		cancel()
		if err == nil {
			mustGet(t, s, id, data)
			continue
		}
		got, gerr := s.Get(t.Context(), id)
		switch {
		case errors.Is(gerr, stores.ErrNotFound):
		case gerr != nil:
			t.Errorf("Get after a Put whose context ended after %s failed (%v): %v, want the chunk or ErrNotFound", d, err, gerr)
		case !bytes.Equal(got, data):
			t.Errorf("Get after a Put whose context ended after %s failed (%v) = %d bytes %s, want all %d bytes or nothing: a partial chunk",
				d, err, len(got), short(got), len(data))
		}
	}
}

// wantCorrupt fails t unless err wraps stores.ErrCorrupt.
func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, stores.ErrCorrupt) {
		t.Errorf("%s: %v, want an error wrapping ErrCorrupt", what, err)
	}
}

// testExpectedSize: a Get under stores.WithExpectedSize returns exactly
// that many bytes or ErrCorrupt (the stored copy is not that chunk),
// never another size; the expectation applies to its own id only, leaves
// a missing chunk missing, and changes nothing stored.
func testExpectedSize(t *testing.T, s stores.Store) {
	ctx := t.Context()
	data, id := chunk(20, 1000)
	mustPut(t, s, id, data)
	got, err := s.Get(stores.WithExpectedSize(ctx, id, 1000), id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get with the right expected size: %d bytes, %v", len(got), err)
	}
	for _, n := range []int64{0, 999, 1001, 4000} {
		got, err := s.Get(stores.WithExpectedSize(ctx, id, n), id)
		wantCorrupt(t, fmt.Sprintf("Get of a 1000-byte chunk expected to be %d bytes", n), err)
		if got != nil {
			t.Errorf("Get expecting %d bytes returned %d bytes as well as an error", n, len(got))
		}
	}
	_, other := chunk(21, 10)
	mustGetCtx(t, stores.WithExpectedSize(ctx, other, 10), s, id, data)
	_, err = s.Get(stores.WithExpectedSize(ctx, other, 10), other)
	wantNotFound(t, "Get of a missing chunk with an expected size", err)
	empty := idOf(nil)
	mustPut(t, s, empty, nil)
	if got, err := s.Get(stores.WithExpectedSize(ctx, empty, 0), empty); err != nil || len(got) != 0 {
		t.Errorf("Get of the empty chunk expected empty: %d bytes, %v", len(got), err)
	}
	_, err = s.Get(stores.WithExpectedSize(ctx, empty, 1), empty)
	wantCorrupt(t, "Get of the empty chunk expected to be 1 byte", err)
	mustGet(t, s, id, data) // nothing changed
}

// testMaxSize: under stores.WithMaxSize a chunk larger than the max is
// ErrCorrupt for Get, and for Stat where the store can tell its size.
func testMaxSize(t *testing.T, s stores.Store) {
	ctx := t.Context()
	data, id := chunk(22, 1000)
	mustPut(t, s, id, data)
	mustGetCtx(t, stores.WithMaxSize(ctx, 1000), s, id, data)
	got, err := s.Get(stores.WithMaxSize(ctx, 999), id)
	wantCorrupt(t, "Get of a 1000-byte chunk under a max of 999", err)
	if got != nil {
		t.Errorf("Get past the max returned %d bytes as well as an error", len(got))
	}
	// The smallest max along the context holds.
	_, err = s.Get(stores.WithMaxSize(stores.WithMaxSize(ctx, 999), 4000), id)
	wantCorrupt(t, "Get under a max of 999 widened to 4000", err)
	if size, err := s.Stat(stores.WithMaxSize(ctx, 999), id); size != -1 || err != nil {
		wantCorrupt(t, "Stat of a 1000-byte chunk under a max of 999 (or -1, unknown)", err)
	}
	if size, err := s.Stat(stores.WithMaxSize(ctx, 1000), id); err != nil || (size != 1000 && size != -1) {
		t.Errorf("Stat under a max of its size: %d, %v", size, err)
	}
	mustGet(t, s, id, data)
}

func mustGetCtx(t *testing.T, ctx context.Context, s stores.Store, id stores.ID, want []byte) {
	t.Helper()
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes, %v; want %d bytes", id, len(got), err, len(want))
	}
}

// WaitFor polls cond until it returns nil, and fails t with cond's last
// error if that takes longer than timeout: how a test waits for work it
// cannot join (a write abandoned at its deadline finishing in the
// background, goroutines exiting, a server coming back) instead of
// sleeping for a guess.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond) // the poll interval
	}
}
