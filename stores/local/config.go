package local

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/stores"
)

// Config is a local store's entry in the config file (type: local, the
// default type).
type Config struct {
	// Path is the store's directory.
	Path     string `yaml:"path" json:"path,omitempty"`
	Compress bool   `yaml:"compress" json:"compress"`
	// Fsync syncs every chunk file as it is written. Off by default:
	// fsync() on a file syncs the stores once for all its chunks.
	Fsync bool `yaml:"fsync" json:"fsync"`
	// Sync is how fsync() on a file makes the store's chunks durable:
	// auto (the default), syncfs or fsync; see Options.SyncMode.
	Sync string `yaml:"sync" json:"sync"`
	// Layout is how the chunk files are named and encoded: dualstore
	// (the default) or casync, the layout desync and casync use (see
	// Options.Layout). A casync store needs the filesystem's hash to be
	// sha512-256 (RequiredHash).
	Layout string `yaml:"layout" json:"layout"`
}

var (
	_ stores.Config     = (*Config)(nil)
	_ stores.Overlapper = (*Config)(nil)
)

// Complete makes the path absolute and checks it is set, and fills in
// and checks the sync mode.
func (c *Config) Complete(key string) error {
	if c.Path == "" {
		return fmt.Errorf("%s.path: required for a local store", key)
	}
	if abs, err := filepath.Abs(c.Path); err == nil {
		c.Path = abs
	}
	switch c.Sync {
	case "":
		c.Sync = SyncModeAuto
	case SyncModeAuto, SyncModeSyncfs, SyncModeFsync:
	default:
		return fmt.Errorf("%s.sync %q: want %s, %s or %s", key, c.Sync, SyncModeAuto, SyncModeSyncfs, SyncModeFsync)
	}
	switch c.Layout {
	case "":
		c.Layout = LayoutDualstore
	case LayoutDualstore, LayoutCasync:
	default:
		return fmt.Errorf("%s.layout %q: want %s or %s", key, c.Layout, LayoutDualstore, LayoutCasync)
	}
	return Options{Root: c.Path, SyncMode: c.Sync, Layout: c.Layout}.Validate()
}

// RequiredHash returns the chunk hash a filesystem with this store must
// use ("sha512-256" for the casync layout, whose files desync names by
// it), or "" if any will do.
func (c *Config) RequiredHash() string {
	if c.Layout == LayoutCasync {
		return casyncHash
	}
	return ""
}

// Open opens the store, logging through the logger in ctx (zerolog.Ctx),
// if the caller put one there. Its directory is created only for a new
// filesystem: for an existing one a missing directory is a typo, an
// unmounted disk or a moved directory, and the mount would come up with an
// empty tier.
func (c *Config) Open(ctx context.Context, name string, create bool) (stores.Store, func(), error) {
	_, statErr := os.Stat(c.Path)
	missing := errors.Is(statErr, iofs.ErrNotExist)
	if missing && !create {
		return nil, nil, fmt.Errorf("directory %s does not exist, and this filesystem's index references chunks "+
			"that should be there: fix the path (or mount the disk); for a new, empty store create the directory and run `dualstore repair`",
			c.Path)
	}
	s, err := New(Options{Root: c.Path, Name: name, Compress: c.Compress, Fsync: c.Fsync, CreateRoot: create,
		SyncMode: c.Sync, Layout: c.Layout, Log: *zerolog.Ctx(ctx)})
	if err != nil {
		return nil, nil, err
	}
	var undo func()
	if missing {
		root := c.Path
		undo = func() { os.RemoveAll(root) }
	}
	return s, undo, nil
}

// Overlaps reports two local stores in one directory, or one inside the
// other, in either tier or across them: the tiers must be independent, and
// a store assumes it is alone in its root (its sweep after a crash removes
// temp files it did not write). Existing directories are compared by
// identity too, so a symlink cannot hide a duplicate.
func (c *Config) Overlaps(key string, other stores.Config, otherKey string, _ bool) error {
	o, ok := other.(*Config)
	if !ok || c.Path == "" || o.Path == "" {
		return nil
	}
	a, b := filepath.Clean(c.Path), filepath.Clean(o.Path)
	same := a == b
	if !same {
		ai, aerr := os.Stat(a)
		bi, berr := os.Stat(b)
		same = aerr == nil && berr == nil && os.SameFile(ai, bi)
	}
	if same {
		return fmt.Errorf("%s.path and %s.path are the same directory %s: every store needs its own (the two tiers must be independent)", key, otherKey, a)
	}
	type loc struct{ key, path string }
	for _, pair := range [][2]loc{{{key, a}, {otherKey, b}}, {{otherKey, b}, {key, a}}} {
		if strings.HasPrefix(pair[1].path, pair[0].path+string(filepath.Separator)) {
			return fmt.Errorf("%s.path %s is inside %s.path %s: every store needs its own directory, apart from the others", pair[1].key, pair[1].path, pair[0].key, pair[0].path)
		}
	}
	return nil
}
