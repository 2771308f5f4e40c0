package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/dual/engine"
	dsfs "github.com/dualstore/dualstore/fs"
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
	metricsAddr       string
	daemon            bool
	logFile           string
	fsName            string
	noExec            bool
	readOnly          bool
	// svc is how the mount runs as a service (daemon.go).
	svc *service
}

func mountCmd(g *globals) *cobra.Command {
	var mf mountFlags
	c := &cobra.Command{
		Use:   "mount [--config FILE] [--data-dir DIR] [--daemon] MOUNTPOINT",
		Short: "Mount in the foreground (--daemon: in the background, once ready); SIGINT/SIGTERM unmount cleanly",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := newService()
			if err != nil {
				return err
			}
			if mf.daemon && !svc.background() {
				return startDaemon(os.Args[1:], daemonOptions{notify: true})
			}
			mf.svc = svc
			cfg, err := resolveConfig(g, cmd, &mf)
			if err == nil {
				err = runMount(cfg, args[0], mf, g.cfgFile)
			}
			return svc.exit(err)
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
	f.StringVar(&mf.metricsAddr, "metrics-addr", "", `serve Prometheus metrics on host:port (127.0.0.1:9567), or "off" (the default)`)
	f.BoolVar(&mf.daemon, "daemon", false, "mount in the background: return once the mount is ready (or with its error)")
	f.StringVar(&mf.logFile, "log-file", "", "log to this file instead of stderr (appended; SIGHUP reopens it)")
	f.StringVar(&mf.fsName, "fsname", "", `the mount's source in /proc/mounts (default "dualstore")`)
	f.BoolVar(&mf.noExec, "noexec", false, "let no program on the mount be executed")
	f.BoolVar(&mf.readOnly, "read-only", false, "mount read-only: every change is refused (EROFS), no background gc; reads still heal")
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
			if err := bounds.Of(bounds.MountCacheMB).Check("--cache-mb", int64(mf.cacheMB)); err != nil {
				return cfg, usageErr(err)
			}
			cfg.Mount.CacheMB = mf.cacheMB
		}
		if mf.metricsAddr != "" {
			cfg.Mount.MetricsAddr = mf.metricsAddr
		}
		if mf.logFile != "" {
			cfg.LogFile = mf.logFile
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
	if err := cfg.Complete(engine.DefaultRegistry()); err != nil {
		where := "configuration"
		if g.cfgFile != "" {
			where = "config " + g.cfgFile
		}
		return cfg, usageErr(fmt.Errorf("%s: %w", where, err))
	}
	return cfg, nil
}

// openEngine opens the filesystem of cfg: existing (offline commands
// never create one) or, for a mount, created on first use. A setting the
// user must fix exits with the usage code.
func openEngine(ctx context.Context, cfg Config, log zerolog.Logger, existing bool) (*engine.Engine, error) {
	open := engine.OpenOrCreate
	if existing {
		open = engine.Open
	}
	e, err := open(ctx, cfg, log)
	var ce *engine.ConfigError
	if errors.As(err, &ce) {
		return nil, usageErr(err)
	}
	return e, err
}

// closeEngine closes e, logging what failed: the command's own result is
// what the exit code reports.
func closeEngine(e *engine.Engine, log zerolog.Logger) {
	if err := e.Close(); err != nil {
		log.Error().Err(err).Msg("closing the filesystem")
	}
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

func runMount(cfg Config, mnt string, mf mountFlags, cfgFile string) error {
	log, err := logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	mnt, _ = filepath.Abs(mnt)
	if err := checkMountpoint(mnt); err != nil {
		return usageErr(err)
	}
	if err := checkMetricsAddr(cfg); err != nil {
		return err
	}
	// Before anything is created: a store made inside the mount point
	// would be hidden by the mount and written through it.
	if err := cfg.CheckMountpoint(mnt); err != nil {
		return usageErr(err)
	}
	if log, err = mf.svc.logger(cfg, log); err != nil {
		return err
	}
	defer mf.svc.closeLog()
	// Every byte written passes through a fresh chunk buffer, so the heap
	// turns over about once per 50 MiB written: with Go's default GOGC=100
	// the collector runs constantly. 400 measured 12-15% more write
	// throughput (and less CPU per GiB) for a peak RSS of about 100 MiB
	// instead of 50 for one writer; GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// ...but under many concurrent writers GOGC=400 alone let the heap
	// reach 700 MiB (270 at 100), and with the nodes of 100,000 files
	// (45 MB live) it grew to 250. A soft limit makes the collector work
	// harder only near it: 96 MiB plus the chunk cache, which leaves about
	// 50 MiB under 256 for what is not Go's heap (SQLite's page caches,
	// the binary) and the collector's overshoot.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(96<<20 + int64(cfg.Mount.CacheMB)<<20)
	}
	ctx := context.Background()
	e, err := openEngine(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer closeEngine(e, log)
	// Before anything starts that writes (the index backup): a mount
	// refused for its index touches nothing.
	if err := dsfs.CheckRoot(ctx, e.Index); err != nil {
		return fmt.Errorf("index %s: %w", e.Index.File(), err)
	}
	// The kernel already applied the caller's umask to every mode it sends;
	// the daemon's own would strip bits a second time.
	syscall.Umask(0)
	e.SetHolder(fmt.Sprintf("the mount at %s", mnt))
	// The filesystem's chunker and hash were fixed when it was created:
	// the engine's config shows those, not what the config would choose
	// for a new one.
	cfg = e.Config
	if err := e.Dual.Start(ctx); err != nil {
		return err
	}
	if err := e.StartBackup(ctx); err != nil {
		return err
	}
	fo := dsfs.DefaultOptions()
	fo.Files.StagingDir = cfg.StagingDir()
	fo.Files.CacheBytes = int64(cfg.Mount.CacheMB) << 20
	fo.Files.Prefetch = cfg.Mount.Prefetch
	fo.MaxNodes = cfg.Mount.MaxNodes
	fo.Files.SyncInterval = cfg.Mount.SyncInterval.D()
	fo.Files.MaxFileSize = cfg.Mount.MaxFileBytes()
	fo.Files = e.FilesOptions(fo.Files)
	if e.Backup != nil {
		fo.Backup = e.Backup.Stats
	}
	// What is unsafe about the setup: logged (the engine logged its own
	// at open) and listed in the stats.
	fo.Warnings = e.Warnings()
	if w := configFileWarning(cfgFile, &cfg); w != "" {
		log.Warn().Msg(w)
		fo.Warnings = append(fo.Warnings, w)
	}
	fo.AttrTimeout, fo.EntryTimeout = cfg.Mount.AttrTimeout.D(), cfg.Mount.EntryTimeout.D()
	fo.Config = cfg.RedactedJSON
	fo.Tuning = cfg.Compare
	fo.Health = healthOptions(cfg)
	pct, minUnused, rate, err := cfg.GC.Limits()
	if err != nil {
		return usageErr(err) // Complete checked them: not reached
	}
	fo.AutoGC = dsfs.AutoGCOptions{Enabled: cfg.GC.On(), MaxUnusedPercent: pct, MinUnused: minUnused,
		Interval: cfg.GC.Interval.D(), CheckInterval: cfg.GC.CheckInterval.D(), Rate: rate}
	fo.ReadOnly = mf.readOnly
	fo.Log = log
	fsys, err := dsfs.New(e.Index, e.Dual, fo)
	if err != nil {
		return err
	}
	// Catch SIGINT/SIGTERM before mounting: a signal that killed the
	// daemon while the kernel waits on its first requests leaves an
	// unkillable process and a dead mount.
	sigs, stopSignals := mf.svc.signals(log)
	defer stopSignals()
	srv, err := fsys.Mount(mnt, dsfs.MountOptions{AllowOther: cfg.Mount.AllowOther, Debug: mf.debugFuse, FsName: mf.fsName, NoExec: mf.noExec})
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	stopMetrics := func() {}
	err = serveMount(srv, mnt, log, sigs, func() {
		log.Info().Str("mountpoint", mnt).Str("data_dir", cfg.DataDir).Msg("mounted")
		mf.svc.announce(mnt, cfg.DataDir)
		stopMetrics = startMetrics(cfg.Mount.MetricsAddr, fsys, e.Index.Header().FSID, mnt, log)
		mf.svc.isReady(mnt, log)
	})
	mf.svc.stopping(log)
	stopMetrics()
	fsys.Close()
	return err
}

// serveMount runs from the kernel mount to its end: it calls started,
// then waits until the mount goes away or a signal asks for an unmount.
// Whatever ends it, the mount is gone when it returns: a panic on this
// goroutine is recovered, the mount taken down, and the panic returned as
// an error (exit 1), so the mount point is never left answering ENOTCONN.
//
// What Go cannot recover from ends the process with the mount still in
// place, dead: a panic on another goroutine (go-fuse recovers those of
// request handlers and answers EIO), a fatal runtime error (out of
// memory, a concurrent map write), SIGKILL. `dualstore unmount` takes such
// a dead mount down.
func serveMount(srv *fuse.Server, mnt string, log zerolog.Logger, sigs <-chan os.Signal, started func()) (err error) {
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("internal error while mounted: unmounting")
		unmountServer(srv, mnt, log, done)
		err = fmt.Errorf("internal error while serving %s: %v (unmounted)", mnt, r)
	}()
	started()
	select {
	case <-done:
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("unmounting")
		unmountServer(srv, mnt, log, done)
	}
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
