package stores_test

import (
	"testing"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/storetest"
)

func TestMem(t *testing.T) {
	storetest.Run(t, func(t *testing.T) stores.Store {
		m := stores.NewMem("mem-0")
		t.Cleanup(func() { m.Close() })
		return m
	})
}

func TestMemLen(t *testing.T) {
	m := stores.NewMem("m")
	ctx := t.Context()
	if m.Len() != 0 {
		t.Fatalf("Len of a new store = %d", m.Len())
	}
	a, b := id("a"), id("b")
	for _, x := range []stores.ID{a, b, a} {
		if err := m.Put(ctx, x, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if m.Len() != 2 {
		t.Fatalf("Len = %d, want 2", m.Len())
	}
	if err := m.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 1 {
		t.Fatalf("Len after Delete = %d, want 1", m.Len())
	}
}
