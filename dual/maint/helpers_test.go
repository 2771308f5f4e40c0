package maint_test

import (
	"context"
	"database/sql"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual/dualtest"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// env is a filesystem without FUSE (dualtest.Env) with its maintenance.
type env struct {
	*dualtest.Env
	x *maint.Maintenance
}

func hash(b []byte) stores.ID { return dualtest.Hash(b) }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Env: dualtest.New(t)}
	e.x = maint.New(e.DB, e.DM)
	return e
}

// open reopens the index and the manager over the same stores.
func (e *env) open(t *testing.T) {
	t.Helper()
	e.Open(t)
	e.x = maint.New(e.DB, e.DM)
}

func (e *env) close(t *testing.T) {
	t.Helper()
	e.Close(t)
	e.x = nil
}

// rawExec changes the closed index behind its back, then reopens it.
func (e *env) rawExec(t *testing.T, stmts ...string) {
	t.Helper()
	e.close(t)
	d, err := sql.Open("sqlite", e.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := d.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
}

// chunk returns the bytes of chunk seed (sizes differ per seed) and its id.
func chunk(seed int) ([]byte, stores.ID) {
	b := []byte(fmt.Sprintf("chunk %d|", seed))
	for len(b) < 1000+seed {
		b = append(b, byte(seed*7+len(b)))
	}
	return b, hash(b)
}

// mkdir makes a directory under parent.
func (e *env) mkdir(t *testing.T, parent uint64, name string) uint64 {
	t.Helper()
	a, err := e.DB.Create(context.Background(), parent, name, index.NewNode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	return a.Ino
}

// file makes a regular file under parent whose chunks are the given
// seeds, stored in both tiers.
func (e *env) file(t *testing.T, parent uint64, name string, seeds ...int) uint64 {
	t.Helper()
	ctx := context.Background()
	a, err := e.DB.Create(ctx, parent, name, index.NewNode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	e.commit(t, a.Ino, seeds...)
	return a.Ino
}

// commit stores the seeds' chunks and makes them ino's chunk list.
func (e *env) commit(t *testing.T, ino uint64, seeds ...int) {
	t.Helper()
	ctx := context.Background()
	var list []index.Chunk
	for _, s := range seeds {
		b, id := chunk(s)
		if err := e.DM.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
		list = append(list, index.Chunk{ID: id, Size: uint32(len(b))})
	}
	if _, err := e.DB.CommitChunks(ctx, ino, list, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// id returns the id of chunk seed.
func id(seed int) stores.ID { _, i := chunk(seed); return i }

// size returns the size of chunk seed.
func size(seed int) int64 { b, _ := chunk(seed); return int64(len(b)) }
