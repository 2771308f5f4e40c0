package dual

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/stores"
)

// Preference says which tier a read asks first.
type Preference int32

const (
	// PreferPrimary reads the primary tier first (the default).
	PreferPrimary Preference = iota
	// PreferSafety reads the safety tier first.
	PreferSafety
	// PreferFastest asks both tiers at once and takes the first verified
	// answer, cancelling the other request.
	PreferFastest
)

// String returns the config spelling of p.
func (p Preference) String() string {
	switch p {
	case PreferPrimary:
		return "primary"
	case PreferSafety:
		return "safety"
	case PreferFastest:
		return "fastest"
	}
	return fmt.Sprintf("preference(%d)", int32(p))
}

// ParsePreference parses "primary", "safety" or "fastest".
func ParsePreference(s string) (Preference, error) {
	switch strings.TrimSpace(s) {
	case "primary":
		return PreferPrimary, nil
	case "safety":
		return PreferSafety, nil
	case "fastest":
		return PreferFastest, nil
	}
	return 0, fmt.Errorf("read_preference %q: want primary, safety or fastest", s)
}

// MarshalText makes a Preference render as its config spelling in JSON/YAML.
func (p Preference) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the config spelling.
func (p *Preference) UnmarshalText(b []byte) error {
	v, err := ParsePreference(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Require says which tiers must accept a chunk for a write to succeed.
type Require int32

const (
	// RequirePrimary: the primary tier must succeed; a safety failure is
	// recorded as pending and backfilled (the default).
	RequirePrimary Require = iota
	// RequireBoth: both tiers must succeed.
	RequireBoth
	// RequireAny: either tier is enough; the missing side is backfilled.
	RequireAny
)

// String returns the config spelling of r.
func (r Require) String() string {
	switch r {
	case RequirePrimary:
		return "primary"
	case RequireBoth:
		return "both"
	case RequireAny:
		return "any"
	}
	return fmt.Sprintf("require(%d)", int32(r))
}

// ParseRequire parses "primary", "both" or "any".
func ParseRequire(s string) (Require, error) {
	switch strings.TrimSpace(s) {
	case "primary":
		return RequirePrimary, nil
	case "both":
		return RequireBoth, nil
	case "any":
		return RequireAny, nil
	}
	return 0, fmt.Errorf("require %q: want primary, both or any", s)
}

// MarshalText makes a Require render as its config spelling.
func (r Require) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses the config spelling.
func (r *Require) UnmarshalText(b []byte) error {
	v, err := ParseRequire(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Options configure a Manager. The names follow the original plan's
// option names so migrating users recognise them.
type Options struct {
	// WriteToBoth also writes the safety tier. When false only the primary
	// is written and the safety tier is filled later by migrate.
	WriteToBoth bool
	// VerifyBoth reads every copy back after writing it and checks its
	// hash; a copy that does not verify counts as a failed write.
	VerifyBoth bool
	// ReadPreference is the tier reads ask first; it can be switched at run
	// time with SetReadPreference.
	ReadPreference Preference
	// FallbackEnabled reads the other tier when the preferred one misses,
	// fails or returns a chunk that does not hash to its id.
	FallbackEnabled bool
	// SelfHeal rewrites a good copy into the tier that failed a read.
	SelfHeal bool
	// ComparisonLogging logs every difference a comparison finds.
	ComparisonLogging bool
	// Require names the tiers that must succeed for a write to succeed.
	Require Require
	// Hash computes a chunk's id from its bytes; it is how every read is
	// verified. Required.
	Hash func(data []byte) stores.ID
	// WriteConcurrency bounds the chunk writes in flight across all
	// batches (and so the memory they hold). Default 8.
	WriteConcurrency int
	// BackfillInterval is how often the background backfill looks for
	// pending chunks when nothing kicks it. Default 5s.
	BackfillInterval time.Duration
	// BackfillMaxBackoff caps the backoff after failed backfill rounds.
	// Default 1m.
	BackfillMaxBackoff time.Duration
	// StoreTimeout bounds one store call, so a store that hangs fails the
	// call instead of hanging the mount. Zero means no timeout.
	StoreTimeout time.Duration
	// MaxChunkSize is the filesystem's chunker max_size: every chunk read
	// is bounded by it (stores.WithMaxSize), so a stored copy larger is a
	// corrupt one, never read. Zero means stores.MaxChunkSize, the
	// chunker's ceiling.
	MaxChunkSize int64
}

// DefaultOptions returns the defaults: write both tiers, read the primary
// first with fallback and self-heal, require the primary. Hash must still
// be set.
func DefaultOptions() Options {
	return Options{
		WriteToBoth:        true,
		FallbackEnabled:    true,
		SelfHeal:           true,
		ReadPreference:     PreferPrimary,
		Require:            RequirePrimary,
		WriteConcurrency:   8,
		BackfillInterval:   5 * time.Second,
		BackfillMaxBackoff: time.Minute,
		StoreTimeout:       2 * time.Minute,
	}
}

// Validate reports the first option that is out of range.
func (o Options) Validate() error {
	var errs []error
	if o.Hash == nil {
		errs = append(errs, errors.New("dual: Options.Hash is required"))
	}
	if o.ReadPreference < PreferPrimary || o.ReadPreference > PreferFastest {
		errs = append(errs, fmt.Errorf("dual: read_preference %d out of range", o.ReadPreference))
	}
	if o.Require < RequirePrimary || o.Require > RequireAny {
		errs = append(errs, fmt.Errorf("dual: require %d out of range", o.Require))
	}
	if !o.WriteToBoth && o.Require != RequirePrimary {
		errs = append(errs, fmt.Errorf("dual: require %s needs write_to_both", o.Require))
	}
	if err := bounds.Of(bounds.DualWriteConcurrent).Check("dual: write_concurrency", int64(o.WriteConcurrency)); err != nil {
		errs = append(errs, err)
	}
	if o.BackfillInterval <= 0 {
		errs = append(errs, fmt.Errorf("dual: backfill_interval %s: want > 0", o.BackfillInterval))
	}
	if o.BackfillMaxBackoff < o.BackfillInterval {
		errs = append(errs, fmt.Errorf("dual: backfill_max_backoff %s: want >= backfill_interval", o.BackfillMaxBackoff))
	}
	if o.StoreTimeout < 0 {
		errs = append(errs, fmt.Errorf("dual: store_timeout %s: want >= 0", o.StoreTimeout))
	}
	if o.MaxChunkSize < 0 || o.MaxChunkSize > stores.MaxChunkSize {
		errs = append(errs, fmt.Errorf("dual: max chunk size %d: want 0..%d", o.MaxChunkSize, stores.MaxChunkSize))
	}
	return errors.Join(errs...)
}
