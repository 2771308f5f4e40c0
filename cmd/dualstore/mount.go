package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/s3"
)

type mountFlags struct {
	allowOther        bool
	debugFuse         bool
	writeToBoth       string
	verifyBoth        string
	readPreference    string
	fallbackEnabled   string
	comparisonLogging string
	require           string
	cacheMB           int
}

func mountCmd(g *globals) *cobra.Command {
	var mf mountFlags
	c := &cobra.Command{
		Use:   "mount [--config FILE] [--data-dir DIR] MOUNTPOINT",
		Short: "Mount in the foreground; SIGINT/SIGTERM unmount cleanly",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := resolveConfig(g, cmd, &mf)
			if err != nil {
				return err
			}
			return runMount(cfg, args[0], mf)
		},
	}
	f := c.Flags()
	f.BoolVar(&mf.allowOther, "allow-other", false, "let other users access the mount")
	f.BoolVar(&mf.debugFuse, "debug-fuse", false, "log every FUSE request")
	f.StringVar(&mf.writeToBoth, "write-to-both", "", "true|false: also write the safety tier")
	f.StringVar(&mf.verifyBoth, "verify-both", "", "true|false: read every copy back after writing")
	f.StringVar(&mf.readPreference, "read-preference", "", "primary|safety|fastest")
	f.StringVar(&mf.fallbackEnabled, "fallback-enabled", "", "true|false: read the other tier on failure")
	f.StringVar(&mf.comparisonLogging, "comparison-logging", "", "true|false: log every difference a comparison finds")
	f.StringVar(&mf.require, "require", "", "primary|both|any: tiers that must accept a write")
	f.IntVar(&mf.cacheMB, "cache-mb", 0, "chunk cache size in MiB")
	return c
}

// resolveConfig merges file, flags and defaults, in that order of
// increasing precedence.
func resolveConfig(g *globals, cmd *cobra.Command, mf *mountFlags) (Config, error) {
	cfg, err := loadConfig(g.cfgFile)
	if err != nil {
		return cfg, usageErr(err)
	}
	if g.dataDir != "" {
		cfg.DataDir = g.dataDir
	}
	if g.logLevel != "" {
		cfg.LogLevel = g.logLevel
	}
	if mf != nil {
		if mf.allowOther {
			cfg.Mount.AllowOther = true
		}
		if mf.cacheMB != 0 {
			cfg.Mount.CacheMB = mf.cacheMB
		}
		for _, b := range []struct {
			flag, val string
			dst       **bool
		}{
			{"write-to-both", mf.writeToBoth, &cfg.Dual.WriteToBoth},
			{"fallback-enabled", mf.fallbackEnabled, &cfg.Dual.FallbackEnabled},
		} {
			if b.val != "" {
				v, err := strconv.ParseBool(b.val)
				if err != nil {
					return cfg, usageErr(fmt.Errorf("--%s %q: want true or false", b.flag, b.val))
				}
				*b.dst = &v
			}
		}
		for _, b := range []struct {
			flag, val string
			dst       *bool
		}{
			{"verify-both", mf.verifyBoth, &cfg.Dual.VerifyBoth},
			{"comparison-logging", mf.comparisonLogging, &cfg.Dual.ComparisonLogging},
		} {
			if b.val != "" {
				v, err := strconv.ParseBool(b.val)
				if err != nil {
					return cfg, usageErr(fmt.Errorf("--%s %q: want true or false", b.flag, b.val))
				}
				*b.dst = v
			}
		}
		if mf.readPreference != "" {
			cfg.Dual.ReadPreference = mf.readPreference
		}
		if mf.require != "" {
			cfg.Dual.Require = mf.require
		}
	}
	if err := cfg.complete(); err != nil {
		where := "configuration"
		if g.cfgFile != "" {
			where = "config " + g.cfgFile
		}
		return cfg, usageErr(fmt.Errorf("%s: %w", where, err))
	}
	return cfg, nil
}

// engine is everything a mount (or an offline command) opens.
type engine struct {
	cfg  Config
	log  zerolog.Logger
	lock *os.File
	db   *index.DB
	dm   *dual.Manager
}

// openEngine locks the data dir, opens the stores and the index, creating
// the filesystem on first use (unless existing is set: offline commands
// never create one). A failed attempt leaves nothing behind that it
// created: every setting is checked before the first directory is made,
// and what was made is removed again.
//
// An existing filesystem never gets a store directory created for it (a
// missing one is a typo, an unmounted disk or a moved directory: the
// mount would come up with an empty tier), and a new filesystem is never
// created over stores that already hold chunks (index.db lost: a new,
// empty filesystem would hide every file, and gc would delete them all).
func openEngine(ctx context.Context, cfg Config, log zerolog.Logger, existing bool) (*engine, error) {
	// The index lists every name and owner: private, whatever the data
	// dir's mode (the mount sets umask 0 only after this).
	defer syscall.Umask(syscall.Umask(0o077))
	idxPath := filepath.Join(cfg.DataDir, "index.db")
	_, statErr := os.Stat(idxPath)
	isNew := errors.Is(statErr, iofs.ErrNotExist)
	switch {
	case isNew && existing:
		return nil, usageErr(fmt.Errorf("data dir %s holds no dualstore filesystem (no index.db)", cfg.DataDir))
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
			return nil, usageErr(fmt.Errorf("chunker: %w", err))
		}
		hash, err := chunker.Hasher(cfg.Chunker.Hash)
		if err != nil {
			return nil, usageErr(fmt.Errorf("chunker: %w", err))
		}
		if _, err := cfg.dualOptions(hash); err != nil {
			return nil, usageErr(err)
		}
	}

	var created []string // removed again if this attempt fails
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, iofs.ErrNotExist) {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		created = append(created, cfg.DataDir)
	}
	lockPath := filepath.Join(cfg.DataDir, "lock")
	if _, err := os.Stat(lockPath); errors.Is(err, iofs.ErrNotExist) {
		created = append(created, lockPath)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	e := &engine{cfg: cfg, log: log, lock: lock}
	ok := false
	defer func() {
		if ok {
			return
		}
		e.close()
		for i := len(created) - 1; i >= 0; i-- {
			os.RemoveAll(created[i])
		}
	}()

	if !isNew {
		// The hash was fixed when the filesystem was created.
		e.db, err = index.Open(ctx, index.Options{Path: idxPath, Log: log, MustExist: true})
		if err != nil {
			return nil, err
		}
	}
	hashName := cfg.Chunker.Hash
	if e.db != nil {
		hashName = e.db.Header().Hash
	}
	hash, err := chunker.Hasher(hashName)
	if err != nil {
		return nil, fmt.Errorf("index header: %w", err)
	}
	opts, err := cfg.dualOptions(hash)
	if err != nil {
		return nil, usageErr(err)
	}
	idHash := func(b []byte) stores.ID { return hash(b) }
	var tiers [2]*stores.Tier
	for i, t := range []struct {
		name string
		cfgs []StoreConfig
	}{{"primary", cfg.Primary}, {"safety", cfg.Safety}} {
		tier, made, err := openTier(t.name, t.cfgs, idHash, isNew)
		created = append(created, made...)
		if err != nil {
			if i == 1 {
				tiers[0].Close()
			}
			return nil, err
		}
		tiers[i] = tier
	}
	closeTiers := func() { tiers[0].Close(); tiers[1].Close() }
	if isNew {
		if err := refuseFullStores(ctx, idxPath, tiers); err != nil {
			closeTiers()
			return nil, err
		}
	}
	staging := filepath.Join(cfg.DataDir, "staging")
	if _, err := os.Stat(staging); errors.Is(err, iofs.ErrNotExist) {
		created = append(created, staging)
	}
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
		created = append(created, idxPath, idxPath+"-wal", idxPath+"-shm")
		e.db, err = index.Open(ctx, index.Options{
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
	e.dm, err = dual.New(tiers[0], tiers[1], e.db, opts, log)
	if err != nil {
		closeTiers()
		return nil, err
	}
	ok = true
	return e, nil
}

// refuseFullStores stops a new filesystem from being created over stores
// that hold chunks: that is a filesystem whose index.db is missing.
func refuseFullStores(ctx context.Context, idxPath string, tiers [2]*stores.Tier) error {
	errFound := errors.New("found")
	for _, t := range tiers {
		for _, m := range t.Members() {
			l, isLister := m.(stores.Lister)
			if !isLister {
				continue
			}
			var first stores.ID
			err := l.List(ctx, func(id stores.ID) error { first = id; return errFound })
			if errors.Is(err, errFound) {
				return fmt.Errorf("index %s is missing, but store %s of the %s tier holds chunks (%s, …): "+
					"this is an existing filesystem whose index was lost or moved; restore index.db, "+
					"or point data_dir at the right directory (to start an empty filesystem, use stores that hold no chunks)",
					idxPath, m.Name(), t.Name(), first)
			}
			if err != nil && !errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("store %s: checking it holds no chunks before creating a filesystem: %w", m.Name(), err)
			}
		}
	}
	return nil
}

// holder records who holds the data dir, for the error a second user gets.
func (e *engine) holder(what string) {
	if e.lock != nil {
		e.lock.Truncate(0)
		e.lock.WriteAt([]byte(fmt.Sprintf("%s (dualstore pid %d)\n", what, os.Getpid())), 0)
	}
}

func (e *engine) close() {
	if e.dm != nil {
		if err := e.dm.Close(); err != nil {
			e.log.Error().Err(err).Msg("closing stores")
		}
	}
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			e.log.Error().Err(err).Msg("closing index")
		}
	}
	if e.lock != nil {
		e.lock.Close()
	}
}

// openTier opens a tier's stores. Local store directories are created
// only for a new filesystem (and returned, to be removed if the rest of
// the setup fails).
func openTier(name string, cfgs []StoreConfig, hash func([]byte) stores.ID, isNew bool) (_ *stores.Tier, created []string, _ error) {
	var members []stores.Store
	for i, sc := range cfgs {
		switch sc.Type {
		case "local":
			_, statErr := os.Stat(sc.Path)
			missing := errors.Is(statErr, iofs.ErrNotExist)
			if missing && !isNew {
				for _, m := range members {
					m.Close()
				}
				return nil, created, fmt.Errorf("%s[%d] store %q: directory %s does not exist, and this filesystem's index references chunks "+
					"that should be there: fix the path (or mount the disk); for a new, empty store create the directory and run `dualstore repair`",
					name, i, sc.Name, sc.Path)
			}
			s, err := local.New(local.Options{Root: sc.Path, Name: sc.Name, Compress: sc.Compress, Fsync: sc.Fsync, CreateRoot: isNew})
			if err == nil && missing {
				created = append(created, sc.Path)
			}
			if err != nil {
				for _, m := range members {
					m.Close()
				}
				return nil, created, fmt.Errorf("%s[%d] store %q: %w", name, i, sc.Name, err)
			}
			members = append(members, s)
		case "s3":
			// New checks the bucket and the credentials, within the
			// store's own timeout.
			o, err := sc.s3Options()
			var s *s3.Store
			if err == nil {
				s, err = s3.New(context.Background(), o)
			}
			if err != nil {
				for _, m := range members {
					m.Close()
				}
				return nil, created, fmt.Errorf("%s[%d] store %q: %w", name, i, sc.Name, err)
			}
			members = append(members, s)
		default:
			for _, m := range members {
				m.Close()
			}
			return nil, created, fmt.Errorf("%s[%d] store %q: unknown type %q", name, i, sc.Name, sc.Type)
		}
	}
	return dual.NewTier(name, members, hash), created, nil
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
	f.Truncate(0)
	fmt.Fprintf(f, "dualstore pid %d\n", os.Getpid())
	return f, nil
}

// checkMountpoint refuses what would surprise a user: a missing or
// non-empty directory, no FUSE device, no right to mount.
func checkMountpoint(mnt string) error {
	st, err := os.Stat(mnt)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mnt, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s: not a directory", mnt)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mnt, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("mountpoint %s is not empty (%d entries): mounting would hide them", mnt, len(ents))
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE is available")
	}
	if os.Geteuid() != 0 {
		if _, err := lookPath("fusermount3", "fusermount"); err != nil {
			return fmt.Errorf("not root and no fusermount3 found: install fuse3 or run as root")
		}
	}
	return nil
}

func lookPath(names ...string) (string, error) {
	for _, n := range names {
		for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", errors.New("not found")
}

func runMount(cfg Config, mnt string, mf mountFlags) error {
	log, err := logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	mnt, _ = filepath.Abs(mnt)
	if err := checkMountpoint(mnt); err != nil {
		return usageErr(err)
	}
	// Every byte written passes through a fresh chunk buffer, so the heap
	// turns over about once per 50 MiB written: with Go's default GOGC=100
	// the collector runs constantly. 400 measured 12-15% more write
	// throughput (and less CPU per GiB) for a peak RSS of about 100 MiB
	// instead of 50 for one writer; GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// ...but under many concurrent writers GOGC=400 alone let the heap
	// reach 700 MiB (270 at 100). A soft limit makes the collector work
	// harder only near it: 192 MiB plus the chunk cache.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(192<<20 + int64(cfg.Mount.CacheMB)<<20)
	}
	ctx := context.Background()
	e, err := openEngine(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer e.close()
	// The kernel already applied the caller's umask to every mode it sends;
	// the daemon's own would strip bits a second time.
	syscall.Umask(0)
	e.holder(fmt.Sprintf("the mount at %s", mnt))
	// The filesystem's chunker and hash were fixed when it was created;
	// show those, not what the config would choose for a new one.
	h := e.db.Header()
	cfg.Chunker = ChunkerConfig{Hash: h.Hash, MinSize: uint(h.MinSize), AvgSize: uint(h.AvgSize), MaxSize: uint(h.MaxSize)}
	if err := e.dm.Start(ctx); err != nil {
		return err
	}
	fsys, err := dsfs.New(e.db, e.dm, dsfs.Options{
		StagingDir:  filepath.Join(cfg.DataDir, "staging"),
		CacheBytes:  int64(cfg.Mount.CacheMB) << 20,
		Prefetch:    cfg.Mount.Prefetch,
		AttrTimeout: cfg.Mount.AttrTimeout.D(), EntryTimeout: cfg.Mount.EntryTimeout.D(),
		Config: cfg.redactedJSON,
		Scrub: dual.ScrubOptions{
			Concurrency: cfg.Compare.Concurrency, BatchSize: cfg.Compare.BatchSize,
			Rate: cfg.Compare.Rate, MaxDetails: cfg.Compare.MaxDetails,
		},
		Log: log,
	})
	if err != nil {
		return err
	}
	// Catch SIGINT/SIGTERM before mounting: a signal that killed the
	// daemon while the kernel waits on its first requests leaves an
	// unkillable process and a dead mount.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := fsys.Mount(mnt, dsfs.MountOptions{AllowOther: cfg.Mount.AllowOther, Debug: mf.debugFuse})
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	log.Info().Str("mountpoint", mnt).Str("data_dir", cfg.DataDir).Msg("mounted")
	fmt.Fprintf(os.Stderr, "dualstore: mounted %s (data dir %s); Ctrl-C or `dualstore unmount %s` to unmount\n", mnt, cfg.DataDir, mnt)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("unmounting")
		unmountServer(srv, mnt, log, done)
	}
	fsys.Close()
	return nil
}

// unmountServer unmounts, retrying while the mount is busy, and falls back
// to a lazy unmount so the daemon can always exit cleanly.
func unmountServer(srv *fuse.Server, mnt string, log zerolog.Logger, done chan struct{}) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := srv.Unmount()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Warn().Err(err).Msg("mount busy; detaching it lazily")
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Warn().Msg("FUSE server did not stop in time")
	}
}
