package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
)

// TestPutAbandonedKeepsData checks that a Put abandoned at its deadline
// never stores a buffer the caller reused (Put does not keep data after it
// returns, and the caller reuses its buffer at once): -race reports a write
// that reads it late, and a chunk file, when one is in place, holds the
// real bytes. It runs until enough Puts were abandoned with their writes
// still running, the case that matters, or fails.
func TestPutAbandonedKeepsData(t *testing.T) {
	l := newLocal(t, Options{})
	data := []byte("the chunk's real bytes, long enough to matter")
	id := idOf(data)
	const want = 10
	running := 0
	deadline := time.Now().Add(time.Minute)
	for i := 0; running < want; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d Puts in a minute, only %d were abandoned with their writes running, want %d", i, running, want)
		}
		buf := append([]byte(nil), data...)
		// Deadlines so short that the call often gives up while its write
		// is still running.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%16)*time.Microsecond)
		err := l.Put(ctx, id, buf)
		cancel()
		if err != nil && l.abandoned.Load() > 0 {
			running++
		}
		for i := range buf {
			buf[i] = 'X' // the caller reuses its buffer
		}
		noneAbandoned(t, l)
		got, rerr := os.ReadFile(l.path(id))
		switch {
		case err == nil && rerr != nil:
			t.Fatalf("Put %d succeeded but the chunk file is unreadable: %v", i, rerr)
		case err != nil && rerr == nil:
			t.Fatalf("Put %d failed (%v) but its chunk file is in place: an abandoned write was renamed", i, err)
		case rerr == nil && !bytes.Equal(got, data):
			t.Fatalf("chunk file holds %q, want %q: an abandoned Put wrote a reused buffer", got, data)
		case rerr == nil:
			// Stored: remove it, so that the next Put writes again.
			if err := l.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		case !errors.Is(rerr, os.ErrNotExist):
			t.Fatal(rerr)
		}
	}
}

// TestAbandonedPutStoresNothing checks that a Put that fails at its
// deadline leaves no chunk file, also when the deadline passes just as its
// write renames the file into place: the caller was told the Put failed,
// and may act on that. It runs until enough Puts were abandoned with their
// writes still running, or fails.
func TestAbandonedPutStoresNothing(t *testing.T) {
	l := newLocal(t, Options{})
	const want = 100
	running := 0
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; running < want; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d Puts in two minutes, only %d were abandoned with their writes running, want %d", i, running, want)
		}
		data := fmt.Appendf(nil, "chunk %d", i)
		id := idOf(data)
		// Deadlines spread over the time a small Put takes.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%64)*2*time.Microsecond)
		err := l.Put(ctx, id, data)
		cancel()
		if err == nil {
			continue
		}
		if l.abandoned.Load() > 0 {
			running++
		}
		noneAbandoned(t, l)
		if _, serr := os.Lstat(l.path(id)); serr == nil {
			t.Fatalf("Put %d failed (%v) but its chunk file is in place", i, err)
		} else if !errors.Is(serr, os.ErrNotExist) {
			t.Fatal(serr)
		}
		if _, gerr := l.Get(context.Background(), id); !errors.Is(gerr, stores.ErrNotFound) {
			t.Fatalf("Get after Put %d failed (%v): %v, want ErrNotFound", i, err, gerr)
		}
	}
}

// TestPutImmutableData checks Puts marked with stores.WithImmutableData
// (no defensive copy) still store exactly the bytes, abandoned or not.
func TestPutImmutableData(t *testing.T) {
	if stores.ImmutableData(context.Background()) {
		t.Fatal("a plain context reports immutable data")
	}
	l := newLocal(t, Options{})
	for i := range 40 {
		data := []byte(fmt.Sprintf("immutable chunk %d, never modified by its caller", i))
		id := idOf(data)
		ctx, cancel := context.WithTimeout(stores.WithImmutableData(context.Background()), time.Duration(i%4)*time.Millisecond+time.Microsecond)
		err := l.Put(ctx, id, data)
		cancel()
		noneAbandoned(t, l)
		got, rerr := os.ReadFile(l.path(id))
		switch {
		case err == nil && rerr != nil:
			t.Fatalf("Put %d succeeded but the chunk file is unreadable: %v", i, rerr)
		case err != nil && rerr == nil:
			t.Fatalf("Put %d failed (%v) but its chunk file is in place: an abandoned write was renamed", i, err)
		case rerr == nil && string(got) != string(data):
			t.Fatalf("chunk file %d holds %q, want %q", i, got, data)
		}
	}
}
