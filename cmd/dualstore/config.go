package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dualstore/dualstore/chunker"
	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

// Config is the YAML configuration. Every key is optional; flags override
// it; the embedded default (a data dir holding the index and two local
// stores) needs no file at all.
type Config struct {
	// DataDir holds the index (index.db), the staging dir and the lock,
	// and the default local stores primary/ and safety/.
	DataDir  string `yaml:"data_dir" json:"data_dir"`
	LogLevel string `yaml:"log_level" json:"log_level"`

	Mount   MountConfig   `yaml:"mount" json:"mount"`
	Chunker ChunkerConfig `yaml:"chunker" json:"chunker"`
	Dual    DualConfig    `yaml:"dual" json:"dual"`
	Compare CompareConfig `yaml:"compare" json:"compare"`

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
	// AttrTimeout and EntryTimeout are the kernel's caching times.
	AttrTimeout  duration `yaml:"attr_timeout" json:"attr_timeout"`
	EntryTimeout duration `yaml:"entry_timeout" json:"entry_timeout"`
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
	StoreTimeout      duration `yaml:"store_timeout" json:"store_timeout"`
	BackfillInterval  duration `yaml:"backfill_interval" json:"backfill_interval"`
}

// CompareConfig are the defaults of comparisons and repairs.
type CompareConfig struct {
	Concurrency int   `yaml:"concurrency" json:"concurrency"`
	BatchSize   int   `yaml:"batch_size" json:"batch_size"`
	Rate        int64 `yaml:"rate" json:"rate"` // bytes/s, 0 = unlimited
	MaxDetails  int   `yaml:"max_details" json:"max_details"`
}

// StoreConfig is one store of a tier.
type StoreConfig struct {
	Name string `yaml:"name" json:"name"`
	// Type is "local" (a directory) or "s3" (a bucket).
	Type string `yaml:"type" json:"type"`
	// Path is a local store's directory.
	Path     string `yaml:"path" json:"path,omitempty"`
	Compress bool   `yaml:"compress" json:"compress"`
	// Fsync syncs every chunk file as it is written. Off by default:
	// fsync() on a file syncs the stores once for all its chunks.
	Fsync bool `yaml:"fsync" json:"fsync"`

	// The keys of an s3 store (see stores/s3.Options and the README).
	// access_key, secret_key and session_token are redacted in
	// `.dualstore/config`.
	Endpoint           string   `yaml:"endpoint" json:"endpoint,omitempty"`
	Bucket             string   `yaml:"bucket" json:"bucket,omitempty"`
	Prefix             string   `yaml:"prefix" json:"prefix,omitempty"`
	Region             string   `yaml:"region" json:"region,omitempty"`
	PathStyle          string   `yaml:"path_style" json:"path_style,omitempty"` // auto, true, false
	TLS                *bool    `yaml:"tls" json:"tls,omitempty"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
	AccessKey          string   `yaml:"access_key" json:"access_key,omitempty"`
	SecretKey          string   `yaml:"secret_key" json:"secret_key,omitempty"`
	SessionToken       string   `yaml:"session_token" json:"session_token,omitempty"`
	Profile            string   `yaml:"profile" json:"profile,omitempty"`
	CredentialsFile    string   `yaml:"credentials_file" json:"credentials_file,omitempty"`
	Timeout            duration `yaml:"timeout" json:"timeout,omitempty"`
	Retries            *int     `yaml:"retries" json:"retries,omitempty"`
	Concurrency        int      `yaml:"concurrency" json:"concurrency,omitempty"`
	OutageBackoff      duration `yaml:"outage_backoff" json:"outage_backoff,omitempty"`
	CreateBucket       bool     `yaml:"create_bucket" json:"create_bucket,omitempty"`
}

// duration is a time.Duration written as "5s" in YAML and JSON alike, so
// `.dualstore/config` reads like the config file.
type duration time.Duration

func (d duration) D() time.Duration { return time.Duration(d) }

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 500ms, 5s, 2m", b)
	}
	*d = duration(v)
	return nil
}

// loadConfig reads a YAML file strictly: an unknown key is an error that
// names it, so a typo never silently falls back to a default.
func loadConfig(path string) (Config, error) {
	var c Config
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := parseConfig(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func parseConfig(b []byte, c *Config) error {
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

func boolPtr(b bool) *bool { return &b }

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// complete fills defaults and checks everything, naming the bad key.
func (c *Config) complete() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required (set it in the config or with --data-dir)"))
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	if c.Mount.CacheMB == 0 {
		c.Mount.CacheMB = 64
	}
	if c.Mount.CacheMB < 0 {
		errs = append(errs, fmt.Errorf("mount.cache_mb %d: want > 0", c.Mount.CacheMB))
	}
	if c.Mount.Prefetch == 0 {
		c.Mount.Prefetch = 16
	}
	if c.Mount.Prefetch < 0 || c.Mount.Prefetch > 64 {
		errs = append(errs, fmt.Errorf("mount.prefetch %d: want 0..64", c.Mount.Prefetch))
	}
	def := chunker.DefaultParams()
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
	// nothing is created with sizes the chunker would refuse.
	switch mn, av, mx := c.Chunker.MinSize, c.Chunker.AvgSize, c.Chunker.MaxSize; {
	case mn < chunker.MinSizeLimit:
		errs = append(errs, fmt.Errorf("chunker.min_size %d: want at least %d (the rolling hash window)", mn, chunker.MinSizeLimit))
	case av&(av-1) != 0:
		errs = append(errs, fmt.Errorf("chunker.avg_size %d: want a power of two", av))
	case av <= mn:
		errs = append(errs, fmt.Errorf("chunker.avg_size %d: want more than chunker.min_size %d", av, mn))
	case mx <= av:
		errs = append(errs, fmt.Errorf("chunker.max_size %d: want more than chunker.avg_size %d", mx, av))
	case mx > chunker.MaxSizeLimit:
		errs = append(errs, fmt.Errorf("chunker.max_size %d: want at most %d", mx, chunker.MaxSizeLimit))
	}
	// Fill every default, so `.dualstore/config` shows what is in effect.
	if c.Mount.AttrTimeout == 0 {
		c.Mount.AttrTimeout = duration(time.Second)
	}
	if c.Mount.EntryTimeout == 0 {
		c.Mount.EntryTimeout = duration(time.Second)
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
		c.Dual.StoreTimeout = duration(dd.StoreTimeout)
	}
	if c.Dual.BackfillInterval == 0 {
		c.Dual.BackfillInterval = duration(dd.BackfillInterval)
	}
	if c.Compare.Concurrency == 0 {
		c.Compare.Concurrency = 4
	}
	if c.Compare.BatchSize == 0 {
		c.Compare.BatchSize = 512
	}
	if c.Compare.MaxDetails == 0 {
		c.Compare.MaxDetails = 1000
	}
	if c.Compare.Concurrency < 0 || c.Compare.BatchSize < 0 || c.Compare.MaxDetails < 0 || c.Compare.Rate < 0 {
		errs = append(errs, fmt.Errorf("compare: concurrency, batch_size, max_details and rate must be >= 0"))
	}
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
	for tier, list := range map[string]*[]StoreConfig{"primary": &c.Primary, "safety": &c.Safety} {
		if len(*list) == 0 && c.DataDir != "" {
			*list = []StoreConfig{{Type: "local", Path: filepath.Join(c.DataDir, tier)}}
		}
		for i := range *list {
			s := &(*list)[i]
			key := fmt.Sprintf("%s[%d]", tier, i)
			if s.Name == "" {
				s.Name = fmt.Sprintf("%s-%d", tier, i)
			}
			switch s.Type {
			case "", "local":
				s.Type = "local"
				if s.Path == "" {
					errs = append(errs, fmt.Errorf("%s.path: required for a local store", key))
				} else if abs, err := filepath.Abs(s.Path); err == nil {
					s.Path = abs
				}
				if err := s.checkNoS3Keys(key); err != nil {
					errs = append(errs, err)
				}
			case "s3":
				if err := s.completeS3(key); err != nil {
					errs = append(errs, err)
				}
			default:
				errs = append(errs, fmt.Errorf("%s.type %q: unknown store type (want local or s3)", key, s.Type))
			}
		}
	}
	if err := checkLocalIndependent(c.Primary, c.Safety); err != nil {
		errs = append(errs, err)
	}
	if err := checkS3Independent(c.Primary, c.Safety); err != nil {
		errs = append(errs, err)
	}
	return joinOneLine(errs)
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

// dualOptions turns the config into the manager's options.
func (c *Config) dualOptions(hash chunker.HashFunc) (dual.Options, error) {
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

// redactedJSON renders the effective config for `.dualstore/config`.
// Secrets (the credentials of s3 stores) never appear: every key whose
// name suggests one is replaced.
func (c *Config) redactedJSON() []byte {
	b, _ := json.Marshal(c)
	var m any
	_ = json.Unmarshal(b, &m)
	redact(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	return append(out, '\n')
}

func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "secret") || strings.Contains(lk, "password") || strings.Contains(lk, "token") || strings.Contains(lk, "access_key") {
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

// checkLocalIndependent rejects two local stores in one directory, or one
// inside the other, in either tier or across them: the tiers must be
// independent, and a store assumes it is alone in its root (its sweep
// after a crash removes temp files it did not write). Existing
// directories are compared by identity too, so a symlink cannot hide a
// duplicate.
func checkLocalIndependent(primary, safety []StoreConfig) error {
	type loc struct {
		key, path string
	}
	var locs []loc
	for tier, list := range [][]StoreConfig{primary, safety} {
		for i, s := range list {
			if s.Type == "local" && s.Path != "" {
				locs = append(locs, loc{fmt.Sprintf("%s[%d].path", [...]string{"primary", "safety"}[tier], i), filepath.Clean(s.Path)})
			}
		}
	}
	for i, a := range locs {
		for _, b := range locs[i+1:] {
			same := a.path == b.path
			if !same {
				ai, aerr := os.Stat(a.path)
				bi, berr := os.Stat(b.path)
				same = aerr == nil && berr == nil && os.SameFile(ai, bi)
			}
			if same {
				return fmt.Errorf("%s and %s are the same directory %s: every store needs its own (the two tiers must be independent)", a.key, b.key, a.path)
			}
			for _, pair := range [][2]loc{{a, b}, {b, a}} {
				if strings.HasPrefix(pair[1].path, pair[0].path+string(filepath.Separator)) {
					return fmt.Errorf("%s %s is inside %s %s: every store needs its own directory, apart from the others", pair[1].key, pair[1].path, pair[0].key, pair[0].path)
				}
			}
		}
	}
	return nil
}
