package engine

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/index/replica"
	"github.com/dualstore/dualstore/stores"
)

// BackupStateFile is where a clean stop records the index backup's
// position (see replica.Options.StateFile).
func (c *Config) BackupStateFile() string { return filepath.Join(c.DataDir, "index-backup.json") }

// targets returns the tiers as index backup targets, primary first. A tier
// whose stores keep no meta objects is left out, with the reason.
func targets(tiers ...*stores.Tier) ([]replica.Target, []error) {
	var out []replica.Target
	var errs []error
	for _, t := range tiers {
		if t == nil {
			continue
		}
		ms, ok := any(t).(stores.MetaStore)
		if !ok {
			errs = append(errs, fmt.Errorf("tier %s: %w", t.Name(), stores.ErrNoMeta))
			continue
		}
		out = append(out, replica.Target{Name: t.Name(), Store: ms})
	}
	return out, errs
}

// StartBackup starts replicating the index into both tiers (a mount calls
// it once its file layer is up; offline commands do not, their changes
// reach the tiers with the next mount's new generation). Close stops it.
func (e *Engine) StartBackup(ctx context.Context) error {
	ib := e.Config.IndexBackup
	if !ib.On() || e.Backup != nil {
		return nil
	}
	ts, errs := targets(e.Dual.Tier("primary"), e.Dual.Tier("safety"))
	if len(errs) > 0 {
		return fmt.Errorf("index backup: %w (set index_backup.enabled: false to run without it)", errors.Join(errs...))
	}
	r, err := replica.Start(ctx, e.Index, replica.Options{
		FSID: e.Index.Header().FSID, Targets: ts, StateFile: e.Config.BackupStateFile(),
		SnapshotInterval: ib.SnapshotInterval.D(), Retention: ib.Retention.D(),
		SpoolLimit: int64(ib.SpoolMB) << 20, CallTimeout: e.Config.Dual.StoreTimeout.D(), Log: e.log,
	})
	if err != nil {
		return err
	}
	e.Backup = r
	return nil
}

// FilesOptions applies the index backup to the file layer's options: the
// durability points run at least twice per backup interval, and with
// fsync_wait an fsync waits for the backup.
func (e *Engine) FilesOptions(o vfs.Options) vfs.Options {
	ib := e.Config.IndexBackup
	if !ib.On() {
		return o
	}
	if half := ib.Interval.D() / 2; o.SyncInterval <= 0 || o.SyncInterval > half {
		o.SyncInterval = half
	}
	if ib.FsyncWait && e.Backup != nil {
		b := e.Backup
		timeout := e.Config.Dual.StoreTimeout.D()
		o.AfterSync = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return b.Wait(ctx)
		}
	}
	return o
}

// closeBackup stops the index backup, waiting up to the store timeout for
// the tiers to take what is queued.
func (e *Engine) closeBackup() error {
	if e.Backup == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.Config.Dual.StoreTimeout.D())
	defer cancel()
	err := e.Backup.Close(ctx)
	e.Backup = nil
	return err
}

// newestPoints describes, per tier, the newest point the index backup can
// restore, for the refusal of a data dir whose index is gone.
func newestPoints(ctx context.Context, tiers [2]*stores.Tier) string {
	ts, _ := targets(tiers[0], tiers[1])
	if len(ts) == 0 {
		return "the tiers keep no index backup"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	gens, errs, err := replica.List(ctx, ts, "")
	if err != nil {
		return "the index backup could not be listed: " + err.Error()
	}
	var parts []string
	for _, t := range ts {
		var best replica.TierGeneration
		for _, g := range gens {
			if tg, ok := g.Tiers[t.Name]; ok && tg.Snapshot && tg.LastTime.After(best.LastTime) {
				best = tg
			}
		}
		if best.LastTime.IsZero() {
			parts = append(parts, fmt.Sprintf("tier %s holds no index backup", t.Name))
		} else {
			parts = append(parts, fmt.Sprintf("tier %s can restore the index as of %s", t.Name, best.LastTime.UTC().Format(time.RFC3339)))
		}
	}
	for _, e := range errs {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}

// RestoreOptions say what `dualstore restore` restores.
type RestoreOptions struct {
	// From is "primary", "safety" or "auto" (both, primary first, every
	// object from the other tier when one lacks it or holds a bad copy).
	From string
	// At picks the newest point at or before it (zero: the newest).
	At time.Time
	// FSID picks the filesystem when the tiers hold backups of several.
	FSID string
	// Progress is called after each object with bytes read and total.
	Progress func(done, total int64)
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	replica.Restored
	Usage index.Usage
	// Checked, Healed and Reverted are the recovery's counts for the
	// files the restored point had not yet settled (see fs/vfs).
	Checked, Healed, Reverted int64
}

// openTargets opens the tiers From names for reading meta objects only.
func openTargets(ctx context.Context, cfg Config, from string) ([]replica.Target, func(), error) {
	var names []string
	switch from {
	case "primary", "safety":
		names = []string{from}
	case "auto", "":
		names = []string{"primary", "safety"}
	default:
		return nil, nil, configErr(fmt.Errorf("--from %q: want primary, safety or auto", from))
	}
	var tiers []*stores.Tier
	closeAll := func() {
		for _, t := range tiers {
			t.Close()
		}
	}
	var errs []error
	for _, n := range names {
		cfgs := cfg.Primary
		if n == "safety" {
			cfgs = cfg.Safety
		}
		t, _, err := openTier(ctx, n, cfgs, nil, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("tier %s: %w", n, err))
			continue
		}
		tiers = append(tiers, t)
	}
	ts, terrs := targets(tiers...)
	errs = append(errs, terrs...)
	if len(ts) == 0 || (from != "auto" && from != "" && len(errs) > 0) {
		closeAll()
		return nil, nil, errors.Join(errs...)
	}
	return ts, closeAll, nil
}

// ListBackups lists the generations the tiers From names hold.
func ListBackups(ctx context.Context, cfg Config, from string) ([]replica.Generation, []error, error) {
	ts, closeAll, err := openTargets(ctx, cfg, from)
	if err != nil {
		return nil, nil, err
	}
	defer closeAll()
	return replica.List(ctx, ts, "")
}

// Restore builds the index of cfg's data dir from the index backup in the
// tiers: into a temporary file first, checked (every object's checksums,
// the chain, SQLite's integrity check, the filesystem id), marked as
// restored (gc then refuses to sweep until told), moved into place, and
// recovered like after a power loss (the files the point had not settled
// are checked in both tiers). It refuses a data dir that holds an index.
func Restore(ctx context.Context, cfg Config, o RestoreOptions, log zerolog.Logger) (*RestoreResult, error) {
	idx := cfg.IndexPath()
	if _, err := os.Stat(idx); err == nil {
		return nil, configErr(fmt.Errorf("data dir %s already holds an index (%s): restore builds one only where none is; move it away first", cfg.DataDir, idx))
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("index %s: %w", idx, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	res, err := restoreInto(ctx, cfg, o)
	lock.Close()
	if err != nil {
		return nil, err
	}
	// Mount-free recovery, as after a power loss: the restored point's
	// unsettled files are checked in both tiers.
	e, err := Open(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("opening the restored index: %w", err)
	}
	defer e.Close()
	e.SetHolder("a restore")
	fo := vfs.DefaultOptions()
	fo.StagingDir, fo.SyncInterval, fo.Log = cfg.StagingDir(), -1, log
	f, err := vfs.New(e.Index, e.Dual, fo)
	if err != nil {
		return nil, fmt.Errorf("recovering the restored index: %w", err)
	}
	st := f.Stats()
	if err := f.Close(ctx); err != nil {
		return nil, fmt.Errorf("recovering the restored index: %w", err)
	}
	res.Checked, res.Healed, res.Reverted = st.RecoveryChecked, st.RecoveryHealed, st.RecoveryReverted
	if res.Usage, err = e.Index.Usage(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

func restoreInto(ctx context.Context, cfg Config, o RestoreOptions) (*RestoreResult, error) {
	ts, closeAll, err := openTargets(ctx, cfg, o.From)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	idx := cfg.IndexPath()
	tmp := idx + ".restoring"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(p) // a leftover of an interrupted restore (ours: we hold the lock)
	}
	r, err := replica.Restore(ctx, replica.RestoreOptions{Targets: ts, FSID: o.FSID, At: o.At, Path: tmp, Progress: o.Progress})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	fail := func(err error) (*RestoreResult, error) {
		for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
			os.Remove(p)
		}
		return nil, err
	}
	db, err := index.Open(ctx, index.Options{Path: tmp, MustExist: true})
	if err != nil {
		return fail(fmt.Errorf("the restored index does not open: %w", err))
	}
	err = db.Check(ctx, 20)
	if err == nil && db.Header().FSID != r.FSID {
		err = fmt.Errorf("the restored index is filesystem %s, its backup's path says %s", db.Header().FSID, r.FSID)
	}
	if err == nil {
		from := strings.Join(func() []string {
			var n []string
			for _, t := range ts {
				n = append(n, t.Name)
			}
			return n
		}(), "+")
		err = db.MarkRestored(ctx, fmt.Sprintf("restored %s from %s, generation %s seq %d, point in time %s",
			time.Now().UTC().Format(time.RFC3339), from, r.Generation, r.Seq, r.Time.UTC().Format(time.RFC3339Nano)))
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(fmt.Errorf("the restored index: %w", err))
	}
	if err := os.Rename(tmp, idx); err != nil {
		return fail(err)
	}
	d, err := os.Open(cfg.DataDir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	return &RestoreResult{Restored: *r}, nil
}
