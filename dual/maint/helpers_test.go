package maint_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// env is a filesystem without FUSE: an index and a dual manager over two
// in-memory tiers, each behind a Fault so tests can slow or fail them. The
// in-memory stores outlive a close, so the index can be reopened.
type env struct {
	path            string
	log             zerolog.Logger
	primary, safety *stores.Mem
	pf, sf          *stores.Fault
	db              *index.DB
	dm              *dual.Manager
	x               *maint.Maintenance
}

// keepOpen is a store that a close leaves open.
type keepOpen struct{ stores.Store }

func (keepOpen) Close() error { return nil }

func hash(b []byte) stores.ID { return blake3.Sum256(b) }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		path:    filepath.Join(t.TempDir(), "index.db"),
		log:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		primary: stores.NewMem("primary-0"),
		safety:  stores.NewMem("safety-0"),
	}
	e.open(t)
	t.Cleanup(func() { e.close(t) })
	return e
}

// open opens the index (creating it the first time) and the manager.
func (e *env) open(t *testing.T) {
	t.Helper()
	db, err := index.Open(context.Background(), index.Options{
		Path: e.path,
		NewHeader: index.Header{Hash: "blake3", Polynomial: 0x3DA3358B4DC173,
			MinSize: 4 << 10, AvgSize: 16 << 10, MaxSize: 64 << 10},
		Log: e.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.pf, e.sf = stores.NewFault(keepOpen{e.primary}), stores.NewFault(keepOpen{e.safety})
	opts := dual.DefaultOptions()
	opts.Hash = hash
	dm, err := dual.New(dual.NewTier("primary", []stores.Store{e.pf}, hash),
		dual.NewTier("safety", []stores.Store{e.sf}, hash), db, opts, e.log)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	e.db, e.dm, e.x = db, dm, maint.New(db, dm)
}

func (e *env) close(t *testing.T) {
	t.Helper()
	if e.dm != nil {
		if err := e.dm.Close(); err != nil {
			t.Error(err)
		}
	}
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			t.Error(err)
		}
	}
	e.db, e.dm, e.x = nil, nil, nil
}

// rawExec changes the closed index behind its back, then reopens it.
func (e *env) rawExec(t *testing.T, stmts ...string) {
	t.Helper()
	e.close(t)
	d, err := sql.Open("sqlite", e.path)
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
	a, err := e.db.Create(context.Background(), parent, name, index.NewNode{Mode: syscall.S_IFDIR | 0o755})
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
	a, err := e.db.Create(ctx, parent, name, index.NewNode{Mode: syscall.S_IFREG | 0o644})
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
		if err := e.dm.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
		list = append(list, index.Chunk{ID: id, Size: uint32(len(b))})
	}
	if _, err := e.db.CommitChunks(ctx, ino, list, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// id returns the id of chunk seed.
func id(seed int) stores.ID { _, i := chunk(seed); return i }

// size returns the size of chunk seed.
func size(seed int) int64 { b, _ := chunk(seed); return int64(len(b)) }
