// Package dualtest builds, for the tests of the layers above the dual
// manager (the file layer, maintenance, the FUSE adapter), a filesystem
// without FUSE or store directories: an index in a temp dir and a dual
// manager over two in-memory tiers, each behind a fault-injecting store.
// Small chunk sizes make every test cross many chunk boundaries.
package dualtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Chunk sizes of Header: small, so a few hundred KiB make many chunks.
const (
	MinSize = 4 << 10
	AvgSize = 16 << 10
	MaxSize = 64 << 10
)

// Header is the index header of every test filesystem: BLAKE3, a fixed
// polynomial and the small chunk sizes above.
var Header = index.Header{Hash: "blake3", Polynomial: 0x3DA3358B4DC173, MinSize: MinSize, AvgSize: AvgSize, MaxSize: MaxSize}

// Hash is the chunk id function of Header.
func Hash(b []byte) stores.ID { return blake3.Sum256(b) }

// Env is an index and a dual manager over two in-memory tiers. The
// in-memory stores outlive Close, so Open can reopen the same filesystem.
type Env struct {
	// Path is the index file.
	Path string
	Log  zerolog.Logger
	// Primary and Safety hold the chunks; PrimaryFault and SafetyFault
	// wrap them (set rules on them to make a tier fail or hang).
	Primary, Safety           *stores.Mem
	PrimaryFault, SafetyFault *stores.Fault
	// DB and DM are set while the environment is open.
	DB *index.DB
	DM *dual.Manager
	// Options, if set, adjusts the manager's options at each Open.
	Options func(*dual.Options)
}

// New opens a new environment in a temp dir of t, closed at cleanup.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{
		Path:    filepath.Join(t.TempDir(), "index.db"),
		Log:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Primary: stores.NewMem("primary-0"),
		Safety:  stores.NewMem("safety-0"),
	}
	e.Open(t)
	t.Cleanup(func() { e.Close(t) })
	return e
}

// keepOpen is a store that a close of its tier leaves open.
type keepOpen struct{ stores.Store }

func (keepOpen) Close() error { return nil }

// Open opens the index (creating it the first time) and the manager.
func (e *Env) Open(t testing.TB) {
	t.Helper()
	db, err := index.Open(context.Background(), index.Options{Path: e.Path, NewHeader: Header, Log: e.Log})
	if err != nil {
		t.Fatal(err)
	}
	e.PrimaryFault, e.SafetyFault = stores.NewFault(keepOpen{e.Primary}), stores.NewFault(keepOpen{e.Safety})
	opts := dual.DefaultOptions()
	opts.Hash = Hash
	if e.Options != nil {
		e.Options(&opts)
	}
	dm, err := dual.New(dual.NewTier("primary", []stores.Store{e.PrimaryFault}, Hash),
		dual.NewTier("safety", []stores.Store{e.SafetyFault}, Hash), db, opts, e.Log)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	e.DB, e.DM = db, dm
}

// Close closes the manager and the index (not the in-memory stores).
func (e *Env) Close(t testing.TB) {
	t.Helper()
	if e.DM != nil {
		if err := e.DM.Close(); err != nil {
			t.Error(err)
		}
	}
	if e.DB != nil {
		if err := e.DB.Close(); err != nil {
			t.Error(err)
		}
	}
	e.DB, e.DM = nil, nil
}
