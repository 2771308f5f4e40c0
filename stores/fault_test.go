package stores_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

func TestFaultConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		f := stores.NewFault(stores.NewMem("mem-0"))
		t.Cleanup(func() { f.Close() })
		return f
	})
}

// notLister hides Mem's List (and its meta calls), to check how a Fault
// over it behaves.
type notLister struct{ stores.Store }

func TestFaultConformanceOverNonLister(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		f := stores.NewFault(notLister{stores.NewMem("mem-0")})
		t.Cleanup(func() { f.Close() })
		return f
	})
}

func newFault(t *testing.T) (*stores.Fault, *stores.Mem) {
	t.Helper()
	m := stores.NewMem("mem-0")
	f := stores.NewFault(m)
	t.Cleanup(func() { f.Close() })
	return f, m
}

func TestFaultFail(t *testing.T) {
	ctx := t.Context()
	a := id("a")
	custom := errors.New("disk on fire")
	tests := []struct {
		name string
		rule stores.Rule
		want error
	}{
		{"default error", stores.Rule{}, stores.ErrInjected},
		{"given error", stores.Rule{Fail: custom}, custom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := newFault(t)
			f.Set(stores.OpPut, tt.rule)
			if err := f.Put(ctx, a, []byte("a")); !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if m.Len() != 0 {
				t.Fatal("a failed Put reached the inner store")
			}
			f.Clear()
			if err := f.Put(ctx, a, []byte("a")); err != nil {
				t.Fatalf("Put after Clear: %v", err)
			}
			for _, op := range []stores.Op{stores.OpGet, stores.OpStat, stores.OpDelete, stores.OpList, stores.OpSync} {
				f.Set(op, tt.rule)
			}
			if _, err := f.Get(ctx, a); !errors.Is(err, tt.want) {
				t.Errorf("Get = %v", err)
			}
			if _, err := f.Stat(ctx, a); !errors.Is(err, tt.want) {
				t.Errorf("Stat = %v", err)
			}
			if err := f.Delete(ctx, a); !errors.Is(err, tt.want) {
				t.Errorf("Delete = %v", err)
			}
			if err := f.List(ctx, func(stores.ID) error { return nil }); !errors.Is(err, tt.want) {
				t.Errorf("List = %v", err)
			}
			if err := f.Sync(ctx); !errors.Is(err, tt.want) {
				t.Errorf("Sync = %v", err)
			}
			if m.Len() != 1 {
				t.Error("a failed Delete reached the inner store")
			}
		})
	}
}

func TestFaultIDsAndCount(t *testing.T) {
	ctx := t.Context()
	f, _ := newFault(t)
	a, b := id("a"), id("b")
	f.Set(stores.OpPut, stores.Rule{IDs: []stores.ID{a}, Count: 2})
	if err := f.Put(ctx, b, []byte("b")); err != nil {
		t.Fatalf("Put of an id the rule does not name: %v", err)
	}
	for i := range 2 {
		if err := f.Put(ctx, a, []byte("a")); !errors.Is(err, stores.ErrInjected) {
			t.Fatalf("Put %d of a: %v, want ErrInjected", i, err)
		}
	}
	if err := f.Put(ctx, a, []byte("a")); err != nil {
		t.Fatalf("Put after the count ran out: %v", err)
	}
	if got := f.Calls(stores.OpPut); got != 4 {
		t.Errorf("Calls(put) = %d, want 4", got)
	}
	if got := f.Injected(stores.OpPut); got != 2 {
		t.Errorf("Injected(put) = %d, want 2", got)
	}
}

func TestFaultDelay(t *testing.T) {
	f, _ := newFault(t)
	a := id("a")
	f.Set(stores.OpPut, stores.Rule{Delay: 20 * time.Millisecond})
	start := time.Now()
	if err := f.Put(t.Context(), a, []byte("a")); err != nil {
		t.Fatalf("delayed Put: %v", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Put took %v, want at least the 20ms delay", d)
	}
	f.Set(stores.OpGet, stores.Rule{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Get(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get delayed past its deadline = %v, want DeadlineExceeded", err)
	}
}

func TestFaultCorrupt(t *testing.T) {
	ctx := t.Context()
	f, m := newFault(t)
	a, e := id("abc"), id("")
	data := []byte("abc")
	if err := f.Put(ctx, a, data); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(ctx, e, nil); err != nil {
		t.Fatal(err)
	}
	f.Set(stores.OpGet, stores.Rule{Corrupt: true})
	got, err := f.Get(ctx, a)
	if err != nil || bytes.Equal(got, data) || len(got) != len(data) {
		t.Fatalf("corrupted Get = %q, %v; want %d other bytes", got, err, len(data))
	}
	if got, err := f.Get(ctx, e); err != nil || len(got) == 0 {
		t.Fatalf("corrupted Get of an empty chunk = %q, %v; want some bytes", got, err)
	}
	if got, _ := m.Get(ctx, a); !bytes.Equal(got, data) {
		t.Fatal("a corrupting Get changed the stored chunk")
	}
	f.Clear()

	b := id("b")
	f.Set(stores.OpPut, stores.Rule{Corrupt: true})
	if err := f.Put(ctx, b, []byte("bbbb")); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, b); bytes.Equal(got, []byte("bbbb")) {
		t.Fatal("a corrupting Put stored the data intact")
	}
}

func TestFaultDrop(t *testing.T) {
	ctx := t.Context()
	f, m := newFault(t)
	a := id("a")
	f.Set(stores.OpPut, stores.Rule{Drop: true})
	if err := f.Put(ctx, a, []byte("a")); err != nil {
		t.Fatalf("dropped Put = %v, want nil", err)
	}
	if m.Len() != 0 {
		t.Fatal("a dropped Put stored the chunk")
	}
	f.Clear()
	if err := f.Put(ctx, a, []byte("a")); err != nil {
		t.Fatal(err)
	}
	f.Set(stores.OpGet, stores.Rule{Drop: true})
	f.Set(stores.OpStat, stores.Rule{Drop: true})
	f.Set(stores.OpDelete, stores.Rule{Drop: true})
	if _, err := f.Get(ctx, a); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("dropped Get = %v, want ErrNotFound", err)
	}
	if _, err := f.Stat(ctx, a); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("dropped Stat = %v, want ErrNotFound", err)
	}
	if err := f.Delete(ctx, a); err != nil || m.Len() != 1 {
		t.Errorf("dropped Delete = %v with %d chunks left, want nil and 1", err, m.Len())
	}
	f.Clear(stores.OpGet)
	if _, err := f.Get(ctx, a); err != nil {
		t.Errorf("Get after Clear(OpGet) = %v", err)
	}
	if _, err := f.Stat(ctx, a); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Clear(OpGet) cleared the Stat rule too: %v", err)
	}
}

// TestFaultConcurrentRules changes rules while calls run, for -race.
func TestFaultConcurrentRules(t *testing.T) {
	f, _ := newFault(t)
	ctx := t.Context()
	a := id("a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			f.Set(stores.OpGet, stores.Rule{Count: i % 3, Corrupt: i%2 == 0})
			f.Clear()
		}
	}()
	for range 200 {
		_ = f.Put(ctx, a, []byte("a"))
		_, _ = f.Get(ctx, a)
	}
	<-done
}

func TestFaultOpNames(t *testing.T) {
	for op, want := range map[stores.Op]string{
		stores.OpGet: "get", stores.OpPut: "put", stores.OpStat: "stat", stores.OpDelete: "delete",
		stores.OpList: "list", stores.OpSync: "sync",
		stores.OpPutMeta: "put-meta", stores.OpGetMeta: "get-meta", stores.OpListMeta: "list-meta", stores.OpDeleteMeta: "delete-meta",
	} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", int(op), got, want)
		}
	}
}

// TestFaultMeta: the meta operations have rules of their own, with the
// effects the chunk operations have.
func TestFaultMeta(t *testing.T) {
	ctx := t.Context()
	data := []byte("index backup")
	get := func(ms stores.MetaStore, name string) ([]byte, error) { return ms.GetMeta(ctx, name, 1<<20) }

	t.Run("fail", func(t *testing.T) {
		f, m := newFault(t)
		for _, op := range []stores.Op{stores.OpPutMeta, stores.OpGetMeta, stores.OpListMeta, stores.OpDeleteMeta} {
			f.Set(op, stores.Rule{})
		}
		if err := f.PutMeta(ctx, "x", data); !errors.Is(err, stores.ErrInjected) || !strings.Contains(err.Error(), "put-meta") {
			t.Errorf("PutMeta = %v, want ErrInjected naming put-meta", err)
		}
		if l, _ := m.ListMeta(ctx, ""); len(l) != 0 {
			t.Error("a failed PutMeta reached the inner store")
		}
		if err := m.PutMeta(ctx, "x", data); err != nil {
			t.Fatal(err)
		}
		if _, err := get(f, "x"); !errors.Is(err, stores.ErrInjected) {
			t.Errorf("GetMeta = %v", err)
		}
		if _, err := f.ListMeta(ctx, ""); !errors.Is(err, stores.ErrInjected) {
			t.Errorf("ListMeta = %v", err)
		}
		if err := f.DeleteMeta(ctx, "x"); !errors.Is(err, stores.ErrInjected) {
			t.Errorf("DeleteMeta = %v", err)
		}
		if _, err := get(m, "x"); err != nil {
			t.Errorf("a failed DeleteMeta reached the inner store: %v", err)
		}
		// Chunk rules do not touch meta calls, nor meta rules chunk calls.
		f.Clear()
		f.Set(stores.OpGet, stores.Rule{})
		f.Set(stores.OpPutMeta, stores.Rule{})
		if _, err := get(f, "x"); err != nil {
			t.Errorf("GetMeta under a Get rule: %v", err)
		}
		if err := f.Put(ctx, id("a"), []byte("a")); err != nil {
			t.Errorf("Put under a PutMeta rule: %v", err)
		}
		if c, i := f.Calls(stores.OpPutMeta), f.Injected(stores.OpPutMeta); c != 1 || i != 1 {
			t.Errorf("Calls, Injected(put-meta) = %d, %d; want the one PutMeta, 1, 1", c, i)
		}
	})

	t.Run("drop", func(t *testing.T) {
		f, m := newFault(t)
		for _, op := range []stores.Op{stores.OpPutMeta, stores.OpGetMeta, stores.OpListMeta, stores.OpDeleteMeta} {
			f.Set(op, stores.Rule{Drop: true})
		}
		if err := f.PutMeta(ctx, "x", data); err != nil {
			t.Errorf("dropped PutMeta = %v, want nil", err)
		}
		if _, err := get(m, "x"); !errors.Is(err, stores.ErrNotFound) {
			t.Errorf("a dropped PutMeta stored the object: %v", err)
		}
		if err := f.PutMeta(ctx, "../x", data); err == nil {
			t.Error("dropped PutMeta of a bad name succeeded")
		}
		if err := m.PutMeta(ctx, "x", data); err != nil {
			t.Fatal(err)
		}
		if _, err := get(f, "x"); !errors.Is(err, stores.ErrNotFound) {
			t.Errorf("dropped GetMeta = %v, want ErrNotFound", err)
		}
		if l, err := f.ListMeta(ctx, ""); err != nil || len(l) != 0 {
			t.Errorf("dropped ListMeta = %v, %v; want nothing", l, err)
		}
		if err := f.DeleteMeta(ctx, "x"); err != nil {
			t.Errorf("dropped DeleteMeta = %v", err)
		}
		if _, err := get(m, "x"); err != nil {
			t.Errorf("a dropped DeleteMeta removed the object: %v", err)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		f, m := newFault(t)
		if err := f.PutMeta(ctx, "x", data); err != nil {
			t.Fatal(err)
		}
		f.Set(stores.OpGetMeta, stores.Rule{Corrupt: true})
		got, err := get(f, "x")
		if err != nil || bytes.Equal(got, data) || len(got) != len(data) {
			t.Errorf("corrupted GetMeta = %q, %v; want %d other bytes", got, err, len(data))
		}
		if got, _ := get(m, "x"); !bytes.Equal(got, data) {
			t.Error("a corrupting GetMeta changed the stored object")
		}
		f.Clear()
		f.Set(stores.OpPutMeta, stores.Rule{Corrupt: true})
		if err := f.PutMeta(ctx, "y", data); err != nil {
			t.Fatal(err)
		}
		if got, _ := get(m, "y"); bytes.Equal(got, data) {
			t.Error("a corrupting PutMeta stored the data intact")
		}
	})

	t.Run("inner keeps no meta", func(t *testing.T) {
		f := stores.NewFault(notLister{stores.NewMem("m")})
		t.Cleanup(func() { f.Close() })
		if err := f.PutMeta(ctx, "x", data); !errors.Is(err, stores.ErrNoMeta) {
			t.Errorf("PutMeta = %v, want ErrNoMeta", err)
		}
		if _, err := get(f, "x"); !errors.Is(err, stores.ErrNoMeta) {
			t.Errorf("GetMeta = %v, want ErrNoMeta", err)
		}
		if _, err := f.ListMeta(ctx, ""); !errors.Is(err, stores.ErrNoMeta) {
			t.Errorf("ListMeta = %v, want ErrNoMeta", err)
		}
		if err := f.DeleteMeta(ctx, "x"); !errors.Is(err, stores.ErrNoMeta) {
			t.Errorf("DeleteMeta = %v, want ErrNoMeta", err)
		}
	})
}
