package engine

import (
	"bytes"
	"io"

	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/dual/maint"
	"github.com/dualstore/dualstore/fs/vfs"
	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/s3"
)

// Duration is a time.Duration written as "5s" in YAML and JSON alike, so
// `.dualstore/config` reads like the config file.
type Duration = stores.Duration

// Config is the YAML configuration. Every key is optional; flags override
// it; the embedded default (a data dir holding the index and two local
// stores) needs no file at all.
type Config struct {
	// DataDir holds the index (index.db), the staging dir and the lock,
	// and the default local stores primary/ and safety/.
	DataDir  string `yaml:"data_dir" json:"data_dir"`
	LogLevel string `yaml:"log_level" json:"log_level"`
	// LogFile is where a mount writes its log (JSON lines, appended),
	// reopened on SIGHUP after logrotate moved it; empty: stderr. Its
	// directory must exist; Complete makes it absolute and resolves its
	// symlinks, and CheckMountpoint refuses it inside the mount.
	LogFile string `yaml:"log_file" json:"log_file"`

	Mount   MountConfig   `yaml:"mount" json:"mount"`
	Chunker ChunkerConfig `yaml:"chunker" json:"chunker"`
	Dual    DualConfig    `yaml:"dual" json:"dual"`
	Compare maint.Tuning  `yaml:"compare" json:"compare"`
	// IndexBackup keeps the index in both tiers (index/replica).
	IndexBackup IndexBackupConfig `yaml:"index_backup" json:"index_backup"`
	// GC is the mount's background gc.
	GC GCConfig `yaml:"gc" json:"gc"`
	// Health bounds the health checks.
	Health HealthConfig `yaml:"health" json:"health"`

	// Primary and Safety are the tiers: ordered lists of stores (writes go
	// to the first that succeeds, reads try each in turn). Empty means a
	// local store in DataDir/primary (DataDir/safety).
	Primary []StoreConfig `yaml:"primary" json:"primary"`
	Safety  []StoreConfig `yaml:"safety" json:"safety"`
}

// MountConfig are the FUSE mount settings.
type MountConfig struct {
	AllowOther bool `yaml:"allow_other" json:"allow_other"`
	// CacheMB bounds the chunk cache (MiB).
	CacheMB int `yaml:"cache_mb" json:"cache_mb"`
	// Prefetch is how many chunks ahead sequential reads fetch.
	Prefetch int `yaml:"prefetch" json:"prefetch"`
	// MaxNodes bounds the inodes the kernel holds through the mount
	// (about 450 bytes of daemon memory each): past it the kernel is asked
	// to forget the oldest. Default 100000.
	MaxNodes int `yaml:"max_nodes" json:"max_nodes"`
	// AttrTimeout and EntryTimeout are the kernel's caching times.
	AttrTimeout  Duration `yaml:"attr_timeout" json:"attr_timeout"`
	EntryTimeout Duration `yaml:"entry_timeout" json:"entry_timeout"`
	// SyncInterval is how often a durability point makes closed files
	// durable without an fsync (like ext4's commit=): a power loss takes
	// back at most about this much closed, not fsync'd work. Default 10s;
	// negative: only fsync and unmount do.
	SyncInterval Duration `yaml:"sync_interval" json:"sync_interval"`
	// MaxFileSize is the largest file a write, truncate or fallocate may
	// make (EFBIG past it, like ext4): "8TiB" by default, below ext4's
	// 16 TiB, so the staging file (sparse, on local disk) is never the
	// limit. Binary units (KiB … TiB) or bytes.
	MaxFileSize string `yaml:"max_file_size" json:"max_file_size"`
	// MetricsAddr is where the Prometheus metrics are served: host:port
	// (port 0: one the kernel picks, logged) or "off", the default.
	MetricsAddr string `yaml:"metrics_addr" json:"metrics_addr"`
	// maxFileSize is MaxFileSize parsed by Complete.
	maxFileSize uint64
}

// HealthConfig bounds what the stats' health, `dualstore status` and the
// health metrics call degraded.
type HealthConfig struct {
	// BackfillAge: chunks pending backfill for longer than this (the
	// pending list non-empty without a break). Default 10m.
	BackfillAge Duration `yaml:"backfill_age" json:"backfill_age"`
	// BackupLag: a tier's copy of the index lagging more than this.
	// Default 5m.
	BackupLag Duration `yaml:"backup_lag" json:"backup_lag"`
}

// MaxFileBytes is mount.max_file_size in bytes (after Complete).
func (m MountConfig) MaxFileBytes() uint64 { return m.maxFileSize }

// IndexBackupConfig are the index backup's settings: the index is
// replicated into every tier, so that losing the data dir loses nothing
// `dualstore restore` cannot bring back.
type IndexBackupConfig struct {
	// Enabled is on by default; off, a lost data dir means a lost
	// filesystem (its chunks stay, nameless).
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// Interval bounds the loss: every committed change is in both tiers
	// within about this long (the mount runs durability points at least
	// twice per interval). Default 10s.
	Interval Duration `yaml:"interval" json:"interval"`
	// FsyncWait makes fsync(2) return only once the index change that makes
	// the file durable is in both tiers, so an fsync'd file survives the
	// loss of the data dir. It adds a store round trip to every fsync.
	FsyncWait bool `yaml:"fsync_wait" json:"fsync_wait"`
	// SnapshotInterval starts a new generation (a full snapshot) this long
	// after the last one, bounding restore time. Default 24h.
	SnapshotInterval Duration `yaml:"snapshot_interval" json:"snapshot_interval"`
	// Retention keeps every point in time this far back. Default 168h.
	Retention Duration `yaml:"retention" json:"retention"`
	// SpoolMB caps what waits in memory for a lagging tier (MiB); past it
	// the queue is dropped and a new generation brings the tier back.
	// Default 256.
	SpoolMB int `yaml:"spool_mb" json:"spool_mb"`
}

// On reports whether the index backup runs.
func (c IndexBackupConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// GCConfig are the settings of the mount's background gc: when the chunks
// no file references anymore pass a share of the live data, gc runs by
// itself (like restic prune's max-unused), at most once per interval.
// Sizes and rates take ParseBytes' forms ("64MiB", "50M", 1048576).
type GCConfig struct {
	// Auto is on by default; off, only `gc` (ctl or offline) collects.
	Auto *bool `yaml:"auto" json:"auto"`
	// MaxUnused is how much unreferenced data may pile up, as a percentage
	// of the live unique bytes: "5%" or 5. Default 5%.
	MaxUnused string `yaml:"max_unused" json:"max_unused"`
	// MinUnused is a floor in bytes under which gc never starts by itself,
	// so a small filesystem does not collect a few KiB. Default 64MiB.
	MinUnused string `yaml:"min_unused" json:"min_unused"`
	// Interval is the least time between the starts of two automatic
	// runs. Default 10m.
	Interval Duration `yaml:"interval" json:"interval"`
	// CheckInterval is how often the unreferenced bytes are measured (a
	// cheap index query). Default 1m, or Interval if that is shorter.
	CheckInterval Duration `yaml:"check_interval" json:"check_interval"`
	// Rate bounds the bytes of unreferenced chunks an automatic run
	// removes per second. Unset or 0: compare.rate (0 there is unlimited).
	Rate string `yaml:"rate" json:"rate"`
}

// On reports whether gc runs by itself.
func (g GCConfig) On() bool { return g.Auto == nil || *g.Auto }

// Limits returns max_unused as a percentage, and min_unused and rate in
// bytes (Complete has filled and checked them; the error names the key).
func (g GCConfig) Limits() (maxUnusedPct float64, minUnused, rate int64, err error) {
	maxUnusedPct, minUnused, rate, errs := g.limits()
	return maxUnusedPct, minUnused, rate, joinOneLine(errs)
}

func (g GCConfig) limits() (maxUnusedPct float64, minUnused, rate int64, errs []error) {
	var err error
	if maxUnusedPct, err = parsePercent(g.MaxUnused); err != nil {
		errs = append(errs, fmt.Errorf("gc.max_unused %w", err))
	}
	if minUnused, err = ParseBytes(g.MinUnused); err != nil {
		errs = append(errs, fmt.Errorf("gc.min_unused %w", err))
	}
	if g.Rate != "" {
		if rate, err = ParseBytes(g.Rate); err != nil {
			errs = append(errs, fmt.Errorf("gc.rate %w", err))
		}
	}
	return maxUnusedPct, minUnused, rate, errs
}

// parsePercent reads "5%", "2.5%" or a plain 5 (meaning percent).
func parsePercent(s string) (float64, error) {
	t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q: want a percentage like 5%% or 2.5", s)
	}
	return v, nil
}

// ChunkerConfig is used only when a filesystem is created; afterwards the
// values in the index header win, so dedup keeps working.
type ChunkerConfig struct {
	Hash    string `yaml:"hash" json:"hash"`
	MinSize uint   `yaml:"min_size" json:"min_size"`
	AvgSize uint   `yaml:"avg_size" json:"avg_size"`
	MaxSize uint   `yaml:"max_size" json:"max_size"`
}

// DualConfig are the dual manager's options, with the original plan's
// names.
type DualConfig struct {
	WriteToBoth       *bool    `yaml:"write_to_both" json:"write_to_both"`
	VerifyBoth        bool     `yaml:"verify_both" json:"verify_both"`
	ReadPreference    string   `yaml:"read_preference" json:"read_preference"`
	FallbackEnabled   *bool    `yaml:"fallback_enabled" json:"fallback_enabled"`
	SelfHeal          *bool    `yaml:"self_heal" json:"self_heal"`
	ComparisonLogging bool     `yaml:"comparison_logging" json:"comparison_logging"`
	Require           string   `yaml:"require" json:"require"`
	WriteConcurrency  int      `yaml:"write_concurrency" json:"write_concurrency"`
	StoreTimeout      Duration `yaml:"store_timeout" json:"store_timeout"`
	BackfillInterval  Duration `yaml:"backfill_interval" json:"backfill_interval"`
}

func boolPtr(b bool) *bool { return &b }

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// Complete fills every default, so `.dualstore/config` shows what is in
// effect, decodes each store entry with the backend reg names for its
// type, and checks everything, naming the bad key. Several problems make
// one error on one line ("a; b"); errors.Is still sees each.
func (c *Config) Complete(reg *Registry) error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required (set it in the config or with --data-dir)"))
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	if err := c.completeLogFile(); err != nil {
		errs = append(errs, err)
	}
	files := vfs.DefaultOptions() // the file layer's defaults, in one place
	if c.Mount.CacheMB == 0 {
		c.Mount.CacheMB = int(files.CacheBytes >> 20)
	}
	if c.Mount.MaxNodes == 0 {
		c.Mount.MaxNodes = 100_000
	}
	if c.Mount.Prefetch == 0 {
		c.Mount.Prefetch = files.Prefetch
	}
	if c.Mount.SyncInterval == 0 {
		c.Mount.SyncInterval = Duration(files.SyncInterval)
	}
	if c.Mount.MaxFileSize == "" {
		c.Mount.MaxFileSize = "8TiB"
	}
	if c.Mount.MetricsAddr == "" {
		c.Mount.MetricsAddr = "off"
	}
	if c.Health.BackfillAge == 0 {
		c.Health.BackfillAge = Duration(10 * time.Minute)
	}
	if c.Health.BackupLag == 0 {
		c.Health.BackupLag = Duration(5 * time.Minute)
	}
	if n, err := ParseBytes(c.Mount.MaxFileSize); err != nil {
		errs = append(errs, fmt.Errorf("mount.max_file_size %w", err))
	} else if err := bounds.Check(bounds.MountMaxFileSize, n); err != nil {
		errs = append(errs, err)
	} else {
		c.Mount.maxFileSize = uint64(n)
	}
	def := chunker.DefaultParams()
	hashSet := c.Chunker.Hash != ""
	if c.Chunker.Hash == "" {
		c.Chunker.Hash = chunker.HashBLAKE3
	}
	if _, err := chunker.Hasher(c.Chunker.Hash); err != nil {
		errs = append(errs, fmt.Errorf("chunker.hash: %w", err))
	}
	if c.Chunker.MinSize == 0 {
		c.Chunker.MinSize = def.MinSize
	}
	if c.Chunker.AvgSize == 0 {
		c.Chunker.AvgSize = def.AvgSize
	}
	if c.Chunker.MaxSize == 0 {
		c.Chunker.MaxSize = def.MaxSize
	}
	// The chunker's own rules, checked here so the key is named and
	// nothing is created with sizes the chunker would refuse: each size's
	// bounds, then how they relate.
	sizeErrs := checkAll(
		check{bounds.ChunkerMinSize, sizeValue(c.Chunker.MinSize)},
		check{bounds.ChunkerAvgSize, sizeValue(c.Chunker.AvgSize)},
		check{bounds.ChunkerMaxSize, sizeValue(c.Chunker.MaxSize)})
	errs = append(errs, sizeErrs...)
	switch mn, av, mx := c.Chunker.MinSize, c.Chunker.AvgSize, c.Chunker.MaxSize; {
	case len(sizeErrs) > 0:
	case av&(av-1) != 0:
		errs = append(errs, fmt.Errorf("chunker.avg_size %d: want a power of two", av))
	case av <= mn:
		errs = append(errs, fmt.Errorf("chunker.avg_size %d: want more than chunker.min_size %d", av, mn))
	case mx <= av:
		errs = append(errs, fmt.Errorf("chunker.max_size %d: want more than chunker.avg_size %d", mx, av))
	}
	// Fill every default, so `.dualstore/config` shows what is in effect.
	if c.Mount.AttrTimeout == 0 {
		c.Mount.AttrTimeout = Duration(time.Second)
	}
	if c.Mount.EntryTimeout == 0 {
		c.Mount.EntryTimeout = Duration(time.Second)
	}
	ib := &c.IndexBackup
	if ib.Enabled == nil {
		ib.Enabled = boolPtr(true)
	}
	if ib.Interval == 0 {
		ib.Interval = Duration(10 * time.Second)
	}
	if ib.SnapshotInterval == 0 {
		ib.SnapshotInterval = Duration(24 * time.Hour)
	}
	if ib.Retention == 0 {
		ib.Retention = Duration(7 * 24 * time.Hour)
	}
	if ib.SpoolMB == 0 {
		ib.SpoolMB = 256
	}
	dd := dual.DefaultOptions()
	if c.Dual.WriteToBoth == nil {
		c.Dual.WriteToBoth = boolPtr(dd.WriteToBoth)
	}
	if c.Dual.FallbackEnabled == nil {
		c.Dual.FallbackEnabled = boolPtr(dd.FallbackEnabled)
	}
	if c.Dual.SelfHeal == nil {
		c.Dual.SelfHeal = boolPtr(dd.SelfHeal)
	}
	if c.Dual.WriteConcurrency == 0 {
		c.Dual.WriteConcurrency = dd.WriteConcurrency
	}
	if c.Dual.StoreTimeout == 0 {
		c.Dual.StoreTimeout = Duration(dd.StoreTimeout)
	}
	if c.Dual.BackfillInterval == 0 {
		c.Dual.BackfillInterval = Duration(dd.BackfillInterval)
	}
	// The defaults of every compare, repair, migrate, gc and fsck, online
	// and offline: maint's, so they live in one place.
	c.Compare = c.Compare.WithDefaults()
	if err := c.Compare.Validate(); err != nil {
		errs = append(errs, err)
	}
	// Every other number against the bounds table (the ones above are
	// checked where they are parsed).
	errs = append(errs, checkAll(
		check{bounds.MountCacheMB, int64(c.Mount.CacheMB)},
		check{bounds.MountPrefetch, int64(c.Mount.Prefetch)},
		check{bounds.MountMaxNodes, int64(c.Mount.MaxNodes)},
		check{bounds.MountAttrTimeout, int64(c.Mount.AttrTimeout)},
		check{bounds.MountEntryTimeout, int64(c.Mount.EntryTimeout)},
		check{bounds.MountSyncInterval, int64(c.Mount.SyncInterval)},
		check{bounds.DualWriteConcurrent, int64(c.Dual.WriteConcurrency)},
		check{bounds.DualStoreTimeout, int64(c.Dual.StoreTimeout)},
		check{bounds.DualBackfill, int64(c.Dual.BackfillInterval)},
		check{bounds.BackupInterval, int64(ib.Interval)},
		check{bounds.BackupSnapshot, int64(ib.SnapshotInterval)},
		check{bounds.BackupRetention, int64(ib.Retention)},
		check{bounds.BackupSpoolMB, int64(ib.SpoolMB)},
		check{bounds.HealthBackfillAge, int64(c.Health.BackfillAge)},
		check{bounds.HealthBackupLag, int64(c.Health.BackupLag)},
	)...)
	errs = append(errs, c.GC.complete(c.Compare.Rate)...)
	if c.Dual.ReadPreference == "" {
		c.Dual.ReadPreference = "primary"
	}
	if _, err := dual.ParsePreference(c.Dual.ReadPreference); err != nil {
		errs = append(errs, fmt.Errorf("dual.%w", err))
	}
	if c.Dual.Require == "" {
		c.Dual.Require = "primary"
	}
	if _, err := dual.ParseRequire(c.Dual.Require); err != nil {
		errs = append(errs, fmt.Errorf("dual.%w", err))
	}
	for _, t := range []struct {
		tier string
		list *[]StoreConfig
	}{{"primary", &c.Primary}, {"safety", &c.Safety}} {
		if len(*t.list) == 0 && c.DataDir != "" {
			*t.list = []StoreConfig{{Type: DefaultType, Options: &local.Config{Path: filepath.Join(c.DataDir, t.tier)}}}
		}
		for i := range *t.list {
			s := &(*t.list)[i]
			key := fmt.Sprintf("%s[%d]", t.tier, i)
			if s.Name == "" {
				s.Name = fmt.Sprintf("%s-%d", t.tier, i)
			}
			if err := s.complete(reg, key); err != nil {
				errs = append(errs, err)
			} else {
				errs = append(errs, storeBounds(key, s.Options)...)
			}
		}
	}
	// Symlinks resolved once, here: the stores use the resolved paths,
	// so a link to /etc is refused, not followed later.
	_, placeErrs := c.resolvePlaces()
	errs = append(errs, placeErrs...)
	errs = append(errs, c.checkNames()...)
	if err := checkIndependent(c.Primary, c.Safety); err != nil {
		errs = append(errs, err)
	}
	if !hashSet {
		// A casync store picks the hash a new filesystem is created with;
		// an existing one keeps its own, which open checks.
		if h := c.requiredHash(); h != "" {
			c.Chunker.Hash = h
		}
	}
	errs = append(errs, c.storeHashErrors(c.Chunker.Hash, "chunker.hash is")...)
	return joinOneLine(errs)
}

// hashRequirer is a store config whose layout fixes the chunk hash: a
// local store with `layout: casync` needs sha512-256, the hash desync
// names its chunk files by.
type hashRequirer interface {
	// RequiredHash returns the hash the filesystem must use, or "".
	RequiredHash() string
}

// requiredHash returns the hash the first store that needs one needs, or
// "".
func (c *Config) requiredHash() string {
	for _, list := range [][]StoreConfig{c.Primary, c.Safety} {
		for _, s := range list {
			if r, ok := s.Options.(hashRequirer); ok && r.RequiredHash() != "" {
				return r.RequiredHash()
			}
		}
	}
	return ""
}

// storeHashErrors names every store whose layout needs another chunk hash
// than hash; what says where hash comes from ("chunker.hash is", "the
// filesystem's index says").
func (c *Config) storeHashErrors(hash, what string) []error {
	var errs []error
	for _, t := range []struct {
		tier string
		list []StoreConfig
	}{{"primary", c.Primary}, {"safety", c.Safety}} {
		for i, s := range t.list {
			r, ok := s.Options.(hashRequirer)
			if !ok || r.RequiredHash() == "" || r.RequiredHash() == hash {
				continue
			}
			errs = append(errs, fmt.Errorf("%s[%d] (store %q): its layout needs chunker.hash: %s (the hash its chunk files are named by), but %s %s: "+
				"use chunker.hash: %s for a new filesystem, or another layout for this store",
				t.tier, i, s.Name, r.RequiredHash(), what, hash, r.RequiredHash()))
		}
	}
	return errs
}

// complete fills the gc section's defaults (rate: the compare rate's) and
// checks it, naming the key.
func (g *GCConfig) complete(compareRate int64) []error {
	if g.Auto == nil {
		g.Auto = boolPtr(true)
	}
	if strings.TrimSpace(g.MaxUnused) == "" {
		g.MaxUnused = "5%"
	}
	if strings.TrimSpace(g.MinUnused) == "" {
		g.MinUnused = "64MiB"
	}
	if g.Interval == 0 {
		g.Interval = Duration(10 * time.Minute)
	}
	if g.CheckInterval == 0 {
		g.CheckInterval = Duration(min(time.Minute, g.Interval.D()))
	}
	if r, err := ParseBytes(g.Rate); strings.TrimSpace(g.Rate) == "" || (err == nil && r == 0) {
		g.Rate = strconv.FormatInt(compareRate, 10)
	}
	pct, minUnused, rate, errs := g.limits()
	if len(errs) == 0 {
		if err := bounds.Of(bounds.GCMaxUnused).CheckFloat(bounds.GCMaxUnused, pct); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, checkAll(check{bounds.GCMinUnused, minUnused}, check{bounds.GCRate, rate})...)
	}
	return append(errs, checkAll(
		check{bounds.GCInterval, int64(g.Interval)},
		check{bounds.GCCheckInterval, int64(g.CheckInterval)})...)
}

// check is one value to check against the bounds table.
type check struct {
	key string
	v   int64
}

// checkAll checks values against the bounds table, each error naming
// its key.
func checkAll(cs ...check) []error {
	var errs []error
	for _, c := range cs {
		if err := bounds.Check(c.key, c.v); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// sizeValue is a chunk size as the table's int64; one too large for it
// stays out of range.
func sizeValue(n uint) int64 {
	if uint64(n) > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// storeBounds checks the numbers of a store entry (key "safety[0]")
// against the bounds table's entries of its type.
func storeBounds(key string, o stores.Config) []error {
	c, ok := o.(*s3.Config)
	if !ok || c.Retries == nil {
		return nil
	}
	var errs []error
	for _, v := range []struct {
		bound, name string
		v           int64
	}{
		{bounds.S3Timeout, "timeout", int64(c.Timeout)},
		{bounds.S3Retries, "retries", int64(*c.Retries)},
		{bounds.S3Concurrency, "concurrency", int64(c.Concurrency)},
		{bounds.S3OutageBackoff, "outage_backoff", int64(c.OutageBackoff)},
	} {
		if err := bounds.Of(v.bound).Check(key+"."+v.name, v.v); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ParseYAML reads a config file's bytes into c strictly: an unknown key is
// an error that names it, so a typo never silently falls back to a
// default. (Store entries are checked by Complete, which knows the
// backends' keys.)
func ParseYAML(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		// yaml.v3 reports several problems on several lines; a one-line
		// error names every bad key and stays readable in logs.
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s", strings.Join(te.Errors, "; "))
		}
		return errors.New(strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// joinOneLine joins errors into one error on one line ("a; b"), so a
// config with several problems still fails with the promised one-line
// message. errors.Is still sees each.
func joinOneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &oneLine{msg: strings.Join(msgs, "; "), errs: errs}
}

type oneLine struct {
	msg  string
	errs []error
}

func (e *oneLine) Error() string   { return e.msg }
func (e *oneLine) Unwrap() []error { return e.errs }

// DualOptions turns the config into the manager's options.
func (c *Config) DualOptions(hash chunker.HashFunc) (dual.Options, error) {
	o := dual.DefaultOptions()
	o.WriteToBoth = boolOr(c.Dual.WriteToBoth, true)
	o.VerifyBoth = c.Dual.VerifyBoth
	o.FallbackEnabled = boolOr(c.Dual.FallbackEnabled, true)
	o.SelfHeal = boolOr(c.Dual.SelfHeal, true)
	o.ComparisonLogging = c.Dual.ComparisonLogging
	var err error
	if o.ReadPreference, err = dual.ParsePreference(c.Dual.ReadPreference); err != nil {
		return o, err
	}
	if o.Require, err = dual.ParseRequire(c.Dual.Require); err != nil {
		return o, err
	}
	if c.Dual.WriteConcurrency != 0 {
		o.WriteConcurrency = c.Dual.WriteConcurrency
	}
	if c.Dual.StoreTimeout != 0 {
		o.StoreTimeout = c.Dual.StoreTimeout.D()
	}
	if c.Dual.BackfillInterval != 0 {
		o.BackfillInterval = c.Dual.BackfillInterval.D()
		o.BackfillMaxBackoff = max(o.BackfillMaxBackoff, o.BackfillInterval)
	}
	o.Hash = func(b []byte) stores.ID { return hash(b) }
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// RedactedJSON renders the effective config for `.dualstore/config`.
// Secrets (the credentials of s3 stores) never appear: every key whose
// name suggests one is replaced.
func (c *Config) RedactedJSON() []byte {
	b, _ := json.Marshal(c)
	var m any
	_ = json.Unmarshal(b, &m)
	redact(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	return append(out, '\n')
}

// isSecretKey is the rule of what RedactedJSON hides: every key whose
// name suggests a credential.
func isSecretKey(k string) bool {
	lk := strings.ToLower(k)
	return strings.Contains(lk, "secret") || strings.Contains(lk, "password") || strings.Contains(lk, "token") || strings.Contains(lk, "access_key")
}

func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if isSecretKey(k) {
				if s, ok := x.(string); ok && s != "" {
					t[k] = "REDACTED"
				}
				continue
			}
			redact(x)
		}
	case []any:
		for _, x := range t {
			redact(x)
		}
	}
}

// SecretKeys lists the keys of c that hold a secret (the ones
// RedactedJSON hides), as "safety[0].secret_key", sorted: a config file
// that has any should be readable by its owner only.
func (c *Config) SecretKeys() []string {
	b, _ := json.Marshal(c)
	var m any
	_ = json.Unmarshal(b, &m)
	var keys []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if s, ok := x.(string); ok && s != "" && isSecretKey(k) {
					keys = append(keys, p)
					continue
				}
				walk(x, p)
			}
		case []any:
			for i, x := range t {
				walk(x, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(m, "")
	sort.Strings(keys)
	return keys
}

// checkIndependent asks every pair of stores, in either tier or across
// them, whether they share storage (stores.Overlapper): the tiers must be
// independent.
func checkIndependent(primary, safety []StoreConfig) error {
	type member struct {
		key  string
		tier int
		cfg  stores.Config
	}
	var all []member
	for tier, list := range [][]StoreConfig{primary, safety} {
		for i, s := range list {
			if s.Options != nil {
				all = append(all, member{fmt.Sprintf("%s[%d]", [...]string{"primary", "safety"}[tier], i), tier, s.Options})
			}
		}
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			if o, ok := a.cfg.(stores.Overlapper); ok {
				if err := o.Overlaps(a.key, b.cfg, b.key, a.tier == b.tier); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
