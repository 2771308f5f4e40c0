package maint

import (
	"errors"
	"strings"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/bounds"
)

// MaxConcurrency bounds the chunks a run handles at once (the bounds
// table's compare.concurrency).
const MaxConcurrency = bounds.MaxConcurrency

// ErrOutOfRange is wrapped by every error about a tuning value out of
// range: the bounds table's.
var ErrOutOfRange = bounds.ErrOutOfRange

// Tuning is how maintenance runs go by default (the config's `compare`
// section): a zero field takes DefaultTuning's value.
type Tuning struct {
	// Concurrency is how many chunks a run handles at once, 1..MaxConcurrency.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// BatchSize is how many chunk ids one index query returns, at least 1.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// Rate throttles the bytes a scrub reads per second (deep compares,
	// repairs, migrations); 0 is unlimited. gc reads no chunks.
	Rate int64 `yaml:"rate" json:"rate"`
	// MaxDetails bounds the differences (gc: the removed chunks; fsck: the
	// problems) a report lists.
	MaxDetails int `yaml:"max_details" json:"max_details"`
}

// DefaultTuning returns the defaults of every run: 4 chunks at once,
// batches of 512, no rate limit, 1000 details.
func DefaultTuning() Tuning {
	return Tuning{Concurrency: 4, BatchSize: 512, Rate: 0, MaxDetails: 1000}
}

// WithDefaults returns t with its zero fields filled from DefaultTuning.
func (t Tuning) WithDefaults() Tuning {
	d := DefaultTuning()
	if t.Concurrency == 0 {
		t.Concurrency = d.Concurrency
	}
	if t.BatchSize == 0 {
		t.BatchSize = d.BatchSize
	}
	if t.MaxDetails == 0 {
		t.MaxDetails = d.MaxDetails
	}
	return t
}

// Validate reports the values of t that are out of range once its zero
// fields take their defaults (the bounds table's compare.* entries), in
// errors wrapping ErrOutOfRange that name the config keys.
func (t Tuning) Validate() error {
	return t.validate("compare.")
}

// validate checks t against the bounds table, naming each value with
// prefix and its key's last part ("compare.concurrency", "concurrency").
func (t Tuning) validate(prefix string) error {
	t = t.WithDefaults()
	var errs []error
	for _, c := range []struct {
		key string
		v   int64
	}{
		{bounds.CompareConcurrency, int64(t.Concurrency)},
		{bounds.CompareBatchSize, int64(t.BatchSize)},
		{bounds.CompareRate, t.Rate},
		{bounds.CompareMaxDetails, int64(t.MaxDetails)},
	} {
		if err := bounds.Of(c.key).Check(prefix+strings.TrimPrefix(c.key, "compare."), c.v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Overrides are what one run asks for instead of the configured tuning
// (ctl's `rate=N concurrency=N`, the CLI's --rate, --concurrency,
// --batch-size). Zero values, and a nil Rate, keep the tuning's.
type Overrides struct {
	Concurrency int
	BatchSize   int
	// Rate is a pointer because 0 is a value one may ask for: unlimited.
	Rate *int64
}

// Validate reports the overrides that are out of range, with the same
// limits as Tuning.Validate, naming them without the config's "compare."
// (a ctl option or a flag sets them).
func (o Overrides) Validate() error {
	t := Tuning{Concurrency: o.Concurrency, BatchSize: o.BatchSize}
	if o.Rate != nil {
		t.Rate = *o.Rate
	}
	return t.validate("")
}

// Apply returns t with o applied and zero fields defaulted, or an error
// wrapping ErrOutOfRange if an override or the result is out of range.
// This is how a run's tuning is made, online and offline.
func (t Tuning) Apply(o Overrides) (Tuning, error) {
	if err := o.Validate(); err != nil {
		return t, err
	}
	if o.Concurrency != 0 {
		t.Concurrency = o.Concurrency
	}
	if o.BatchSize != 0 {
		t.BatchSize = o.BatchSize
	}
	if o.Rate != nil {
		t.Rate = *o.Rate
	}
	if err := t.Validate(); err != nil {
		return t, err
	}
	return t.WithDefaults(), nil
}

// Scrub returns the options of a compare, repair or migrate run with
// tuning t and overrides o. The caller sets what the run does (Deep,
// Repair, Migrate) and Maintenance.ScrubOptions adds its chunks.
func (t Tuning) Scrub(o Overrides) (dual.ScrubOptions, error) {
	r, err := t.Apply(o)
	if err != nil {
		return dual.ScrubOptions{}, err
	}
	return dual.ScrubOptions{Concurrency: r.Concurrency, BatchSize: r.BatchSize, Rate: r.Rate, MaxDetails: r.MaxDetails}, nil
}

// GC returns the options of a garbage collection with tuning t and
// overrides o (a rate does not apply: gc reads no chunks). The caller
// sets DryRun and Sweep and Maintenance.GCOptions adds the index's side.
func (t Tuning) GC(o Overrides) (dual.GCOptions, error) {
	r, err := t.Apply(o)
	if err != nil {
		return dual.GCOptions{}, err
	}
	return dual.GCOptions{Concurrency: r.Concurrency, BatchSize: r.BatchSize, MaxDetails: r.MaxDetails}, nil
}
