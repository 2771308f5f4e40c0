package engine

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/index/replica"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
)

// ConfigError marks a failure the user fixes in the configuration or the
// command line (a bad setting, a data dir that holds no filesystem), as
// opposed to a store or the index failing: the CLI exits 2 for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(err error) error { return &ConfigError{err} }

// Engine is an open dualstore filesystem without a front end: the data
// dir's lock, the index, both tiers and the dual manager over them. The
// FUSE mount and the offline maintenance commands are built on it.
type Engine struct {
	// Config is the completed configuration; its Chunker section shows
	// the filesystem's own settings (fixed when it was created, read from
	// the index header), not what the config would choose for a new one.
	Config Config
	// Index holds the tree and every file's chunk list.
	Index *index.DB
	// Dual writes chunks to both tiers and reads them back.
	Dual *dual.Manager
	// Backup replicates the index into both tiers, once StartBackup ran.
	Backup *replica.Replicator

	log  zerolog.Logger
	lock *os.File
	// warnings are setupWarnings' at open.
	warnings []string
}

// mode says whether an open may create the filesystem.
type mode int

const (
	openExisting mode = iota
	createNew
	openOrCreate
)

// Open opens the existing filesystem in cfg's data dir (offline commands:
// they never create one). cfg must be completed (Config.Complete).
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Engine, error) {
	return open(ctx, cfg, log, openExisting)
}

// Create creates a new, empty filesystem in cfg's data dir and opens it.
// It refuses a data dir that holds one already.
func Create(ctx context.Context, cfg Config, log zerolog.Logger) (*Engine, error) {
	return open(ctx, cfg, log, createNew)
}

// OpenOrCreate opens the filesystem in cfg's data dir, creating it on
// first use (the mount: `make mount` works with no setup).
func OpenOrCreate(ctx context.Context, cfg Config, log zerolog.Logger) (*Engine, error) {
	return open(ctx, cfg, log, openOrCreate)
}

// IndexPath is where the index of cfg's filesystem lives.
func (c *Config) IndexPath() string { return filepath.Join(c.DataDir, "index.db") }

// StagingDir holds the (unlinked) staging files of non-sequential writes.
func (c *Config) StagingDir() string { return filepath.Join(c.DataDir, "staging") }

// open locks the data dir, opens the stores and the index, creating the
// filesystem as m allows. A failed attempt leaves nothing behind that it
// created: every setting is checked before the first directory is made,
// and what was made is removed again.
//
// An existing filesystem never gets a store directory created for it (a
// missing one is a typo, an unmounted disk or a moved directory: the
// mount would come up with an empty tier), and a new filesystem is never
// created over stores that already hold chunks (index.db lost: a new,
// empty filesystem would hide every file, and gc would delete them all).
func open(ctx context.Context, cfg Config, log zerolog.Logger, m mode) (*Engine, error) {
	// The index lists every name and owner: private, whatever the data
	// dir's mode (a mount sets umask 0 only after this).
	defer syscall.Umask(syscall.Umask(0o077))
	idxPath := cfg.IndexPath()
	_, statErr := os.Stat(idxPath)
	isNew := errors.Is(statErr, iofs.ErrNotExist)
	switch {
	case isNew && m == openExisting:
		return nil, configErr(fmt.Errorf("data dir %s holds no dualstore filesystem (no index.db)", cfg.DataDir))
	case statErr == nil && m == createNew:
		return nil, configErr(fmt.Errorf("data dir %s already holds a dualstore filesystem (%s)", cfg.DataDir, idxPath))
	case statErr != nil && !isNew:
		return nil, fmt.Errorf("index %s: %w", idxPath, statErr)
	}
	var pol uint64
	if isNew {
		var err error
		if pol, err = chunker.NewPolynomial(); err != nil {
			return nil, err
		}
		p := chunker.Params{Polynomial: pol, MinSize: cfg.Chunker.MinSize, AvgSize: cfg.Chunker.AvgSize, MaxSize: cfg.Chunker.MaxSize}
		if err := p.Validate(); err != nil {
			return nil, configErr(fmt.Errorf("chunker: %w", err))
		}
		hash, err := chunker.Hasher(cfg.Chunker.Hash)
		if err != nil {
			return nil, configErr(fmt.Errorf("chunker: %w", err))
		}
		if _, err := cfg.DualOptions(hash); err != nil {
			return nil, configErr(err)
		}
	}

	var undo []func() // run in reverse if this attempt fails
	removeIfMade := func(p string) {
		if _, err := os.Stat(p); errors.Is(err, iofs.ErrNotExist) {
			undo = append(undo, func() { os.RemoveAll(p) })
		}
	}
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, iofs.ErrNotExist) {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		undo = append(undo, func() { os.RemoveAll(cfg.DataDir) })
	}
	removeIfMade(filepath.Join(cfg.DataDir, "lock"))
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	e := &Engine{Config: cfg, log: log, lock: lock}
	ok := false
	defer func() {
		if ok {
			return
		}
		_ = e.Close()
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()

	if !isNew {
		// The hash was fixed when the filesystem was created.
		e.Index, err = index.Open(ctx, index.Options{Path: idxPath, Log: log, MustExist: true})
		if err != nil {
			return nil, err
		}
	}
	hashName := cfg.Chunker.Hash
	if e.Index != nil {
		hashName = e.Index.Header().Hash
	}
	hash, err := chunker.Hasher(hashName)
	if err != nil {
		return nil, fmt.Errorf("index header: %w", err)
	}
	if e.Index != nil {
		// The filesystem's hash was fixed at its creation: a store whose
		// layout needs another (casync) cannot hold its chunks.
		if errs := cfg.storeHashErrors(hashName, "this filesystem was created with chunker.hash"); len(errs) > 0 {
			return nil, configErr(joinOneLine(errs))
		}
	}
	opts, err := cfg.DualOptions(hash)
	if err != nil {
		return nil, configErr(err)
	}
	idHash := func(b []byte) stores.ID { return hash(b) }
	var tiers [2]*stores.Tier
	closeTiers := func() {
		for _, t := range tiers {
			if t != nil {
				t.Close()
			}
		}
	}
	for i, t := range []struct {
		name string
		cfgs []StoreConfig
	}{{"primary", cfg.Primary}, {"safety", cfg.Safety}} {
		// Backends log through the context's logger (zerolog.Ctx).
		tier, undoTier, err := openTier(log.WithContext(ctx), t.name, t.cfgs, idHash, isNew)
		undo = append(undo, undoTier...)
		if err != nil {
			closeTiers()
			return nil, err
		}
		tiers[i] = tier
	}
	if isNew {
		if err := refuseFullStores(ctx, idxPath, tiers); err != nil {
			closeTiers()
			return nil, err
		}
	}
	staging := cfg.StagingDir()
	removeIfMade(staging)
	if err := os.MkdirAll(staging, 0o700); err != nil {
		closeTiers()
		return nil, fmt.Errorf("staging dir: %w", err)
	}
	// Staging files are unlinked as soon as they are made; a crash at the
	// wrong moment can leave one. Nothing else uses the dir (it is ours
	// under the lock), and uncommitted writes are gone after a crash.
	if ents, err := os.ReadDir(staging); err == nil {
		for _, ent := range ents {
			os.RemoveAll(filepath.Join(staging, ent.Name()))
		}
	}
	if isNew {
		for _, p := range []string{idxPath, idxPath + "-wal", idxPath + "-shm"} {
			undo = append(undo, func() { os.RemoveAll(p) })
		}
		e.Index, err = index.Open(ctx, index.Options{
			Path: idxPath,
			NewHeader: index.Header{
				Hash: cfg.Chunker.Hash, Polynomial: pol,
				MinSize: uint32(cfg.Chunker.MinSize), AvgSize: uint32(cfg.Chunker.AvgSize), MaxSize: uint32(cfg.Chunker.MaxSize),
			},
			Log: log,
		})
		if err != nil {
			closeTiers()
			return nil, err
		}
	}
	// Every chunk read is bounded by the filesystem's max chunk size
	// (which the chunker keeps within stores.MaxChunkSize).
	opts.MaxChunkSize = min(int64(e.Index.Header().MaxSize), stores.MaxChunkSize)
	e.Dual, err = dual.New(tiers[0], tiers[1], e.Index, opts, log)
	if err != nil {
		closeTiers()
		return nil, err
	}
	// The last comparison lives in the index: a remount, and the mount
	// after an offline compare, know it.
	e.Dual.RecordCompares(ctx, e.Index)
	h := e.Index.Header()
	e.Config.Chunker = ChunkerConfig{Hash: h.Hash, MinSize: uint(h.MinSize), AvgSize: uint(h.AvgSize), MaxSize: uint(h.MaxSize)}
	e.warnings = setupWarnings(cfg)
	for _, w := range e.warnings {
		log.Warn().Str("component", "engine").Msg(w)
	}
	ok = true
	return e, nil
}

// Warnings are what is unsafe about the setup without stopping it: the
// data dir or a local store's directory writable by others, or owned by
// another user than the one running dualstore. Each was logged at warn
// level at open; a mount lists them in its stats.
func (e *Engine) Warnings() []string { return slices.Clone(e.warnings) }

// setupWarnings checks the directories of cfg's data: whoever else may
// write them may replace the index or chunks, or remove them.
func setupWarnings(cfg Config) []string {
	var w []string
	check := func(what, path string) {
		if d := dirWarning(what, path); d != "" {
			w = append(w, d)
		}
	}
	check("data_dir "+cfg.DataDir, cfg.DataDir)
	for _, t := range []struct {
		tier string
		list []StoreConfig
	}{{"primary", cfg.Primary}, {"safety", cfg.Safety}} {
		for i, sc := range t.list {
			if lc, ok := sc.Options.(*local.Config); ok {
				check(fmt.Sprintf("%s[%d].path %s (store %s)", t.tier, i, lc.Path, sc.Name), lc.Path)
			}
		}
	}
	return w
}

// dirWarning says what is unsafe about directory path (what names it,
// with its config key): writable by others, or owned by another user than
// the process's; "" when nothing is (or it cannot be looked at: the open
// reports that).
func dirWarning(what, path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	var problems []string
	if perm := st.Mode().Perm(); perm&0o002 != 0 {
		problems = append(problems, fmt.Sprintf("is writable by others (mode %04o; chmod o-w %s)", perm, path))
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		problems = append(problems, fmt.Sprintf("is owned by uid %d, not by uid %d running dualstore", sys.Uid, os.Geteuid()))
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s: another user can replace or remove what it holds", what, strings.Join(problems, " and "))
}

// openTier opens a tier's stores, each through its backend's config. It
// returns what undoes what the stores created (for a new filesystem whose
// creation fails later).
func openTier(ctx context.Context, name string, cfgs []StoreConfig, hash func([]byte) stores.ID, isNew bool) (*stores.Tier, []func(), error) {
	var members []stores.Store
	var undo []func()
	for i, sc := range cfgs {
		if sc.Options == nil {
			err := fmt.Errorf("%s[%d] store %q: the config was not completed (Config.Complete)", name, i, sc.Name)
			for _, m := range members {
				m.Close()
			}
			return nil, undo, err
		}
		s, u, err := sc.Options.Open(ctx, sc.Name, isNew)
		if u != nil {
			undo = append(undo, u)
		}
		if err != nil {
			for _, m := range members {
				m.Close()
			}
			return nil, undo, fmt.Errorf("%s[%d] store %q: %w", name, i, sc.Name, err)
		}
		members = append(members, s)
	}
	return dual.NewTier(name, members, hash), undo, nil
}

// refuseFullStores stops a new filesystem from being created over stores
// that hold chunks: that is a filesystem whose index.db is missing.
func refuseFullStores(ctx context.Context, idxPath string, tiers [2]*stores.Tier) error {
	errFound := errors.New("found")
	for _, t := range tiers {
		for _, m := range t.Members() {
			if stores.IsShared(m) {
				continue // a desync store holds chunks of other tools by design
			}
			l, isLister := m.(stores.Lister)
			if !isLister {
				continue
			}
			var first stores.ID
			err := l.List(ctx, func(id stores.ID) error { first = id; return errFound })
			if errors.Is(err, errFound) {
				return fmt.Errorf("index %s is missing, but store %s of the %s tier holds chunks (%s, …): "+
					"this is an existing filesystem whose index was lost or moved (%s): "+
					"bring it back with `dualstore restore --from auto` and the same --config or --data-dir, "+
					"or point data_dir at the right directory (to start an empty filesystem, use stores that hold no chunks)",
					idxPath, m.Name(), t.Name(), first, newestPoints(ctx, tiers))
			}
			if err != nil && !errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("store %s: checking it holds no chunks before creating a filesystem: %w", m.Name(), err)
			}
		}
	}
	return nil
}

// SetHolder records who holds the data dir, for the error a second user
// gets ("the mount at /srv/data", "an offline repair").
func (e *Engine) SetHolder(what string) {
	if e.lock != nil {
		_ = e.lock.Truncate(0)
		_, _ = e.lock.WriteAt([]byte(fmt.Sprintf("%s (dualstore pid %d)\n", what, os.Getpid())), 0)
	}
}

// Close closes the dual manager (and with it the stores), the index and
// the data dir's lock, and returns what failed.
func (e *Engine) Close() error {
	var errs []error
	if err := e.closeBackup(); err != nil {
		errs = append(errs, err)
	}
	if e.Dual != nil {
		if err := e.Dual.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing stores: %w", err))
		}
		e.Dual = nil
	}
	if e.Index != nil {
		if err := e.Index.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing index: %w", err))
		}
		e.Index = nil
	}
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
	return errors.Join(errs...)
}

// lockDataDir takes an exclusive lock so two mounts (or a mount and an
// offline repair) never share a data dir.
func lockDataDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		msg := strings.TrimSpace(string(holder))
		if msg == "" {
			msg = "another process"
		}
		return nil, fmt.Errorf("data dir %s is in use by %s; unmount it, or wait for that command, first", dir, msg)
	}
	_ = f.Truncate(0)
	fmt.Fprintf(f, "dualstore pid %d\n", os.Getpid())
	return f, nil
}

// Log returns the engine's logger.
func (e *Engine) Log() zerolog.Logger { return e.log }
