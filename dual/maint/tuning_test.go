package maint_test

import (
	"errors"
	"testing"

	"github.com/dualstore/dualstore/dual/maint"
)

func rate(n int64) *int64 { return &n }

func tn(concurrency, batch int, rate int64, details int) maint.Tuning {
	return maint.Tuning{Concurrency: concurrency, BatchSize: batch, Rate: rate, MaxDetails: details}
}

func TestDefaultTuning(t *testing.T) {
	if d := maint.DefaultTuning(); d != (maint.Tuning{Concurrency: 4, BatchSize: 512, Rate: 0, MaxDetails: 1000}) {
		t.Errorf("DefaultTuning() = %+v; want 4, 512, 0, 1000", d)
	}
	if err := maint.DefaultTuning().Validate(); err != nil {
		t.Errorf("DefaultTuning().Validate() = %v", err)
	}
}

// TestTuningApply covers how a run's options are made from the configured
// tuning and the run's overrides: the one function ctl and the CLI share.
func TestTuningApply(t *testing.T) {
	cfg := maint.Tuning{Concurrency: 8, BatchSize: 100, Rate: 5 << 20, MaxDetails: 10}
	for _, tc := range []struct {
		name string
		base maint.Tuning
		o    maint.Overrides
		want maint.Tuning
		bad  bool
	}{
		{name: "zero is the defaults", want: maint.DefaultTuning()},
		{name: "config kept", base: cfg, want: cfg},
		{name: "concurrency", base: cfg, o: maint.Overrides{Concurrency: 16}, want: tn(16, 100, 5<<20, 10)},
		{name: "batch size", base: cfg, o: maint.Overrides{BatchSize: 7}, want: tn(8, 7, 5<<20, 10)},
		{name: "rate", base: cfg, o: maint.Overrides{Rate: rate(1 << 10)}, want: tn(8, 100, 1<<10, 10)},
		{name: "rate 0 is unlimited", base: cfg, o: maint.Overrides{Rate: rate(0)}, want: tn(8, 100, 0, 10)},
		{name: "all over the defaults", o: maint.Overrides{Concurrency: 1, BatchSize: 1, Rate: rate(1)}, want: tn(1, 1, 1, 1000)},
		{name: "partial config", base: maint.Tuning{Rate: 9}, want: tn(4, 512, 9, 1000)},
		{name: "concurrency at the limit", o: maint.Overrides{Concurrency: maint.MaxConcurrency}, want: tn(1024, 512, 0, 1000)},
		{name: "concurrency over", o: maint.Overrides{Concurrency: maint.MaxConcurrency + 1}, bad: true},
		{name: "concurrency negative", o: maint.Overrides{Concurrency: -1}, bad: true},
		{name: "batch size negative", o: maint.Overrides{BatchSize: -1}, bad: true},
		{name: "rate negative", o: maint.Overrides{Rate: rate(-1)}, bad: true},
		{name: "config concurrency over", base: maint.Tuning{Concurrency: 2000}, bad: true},
		{name: "config concurrency over, overridden", base: maint.Tuning{Concurrency: 2000}, o: maint.Overrides{Concurrency: 2}, want: tn(2, 512, 0, 1000)},
		{name: "config batch size negative", base: maint.Tuning{BatchSize: -5}, bad: true},
		{name: "config rate negative", base: maint.Tuning{Rate: -1}, bad: true},
		{name: "config max details negative", base: maint.Tuning{MaxDetails: -1}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.base.Apply(tc.o)
			so, serr := tc.base.Scrub(tc.o)
			gc, gerr := tc.base.GC(tc.o)
			if tc.bad {
				for _, err := range []error{err, serr, gerr} {
					if !errors.Is(err, maint.ErrOutOfRange) {
						t.Fatalf("error %v, want ErrOutOfRange", err)
					}
				}
				// The same text whichever kind of run asks.
				if err.Error() != serr.Error() || err.Error() != gerr.Error() {
					t.Errorf("errors differ: %q, %q, %q", err, serr, gerr)
				}
				return
			}
			if err != nil || serr != nil || gerr != nil {
				t.Fatalf("errors %v, %v, %v", err, serr, gerr)
			}
			if got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			w := tc.want
			if so.Concurrency != w.Concurrency || so.BatchSize != w.BatchSize || so.Rate != w.Rate || so.MaxDetails != w.MaxDetails ||
				so.Source != nil || so.Deep || so.Repair || so.Migrate != "" {
				t.Errorf("Scrub = %+v, want the tuning %+v", so, w)
			}
			// gc takes the same concurrency, batch size and details.
			if gc.Concurrency != w.Concurrency || gc.BatchSize != w.BatchSize || gc.MaxDetails != w.MaxDetails {
				t.Errorf("GC = %+v, want the tuning %+v", gc, w)
			}
		})
	}
}

// TestOverridesValidate checks the overrides alone (the CLI checks them
// before it sends a ctl line) fail as they do in Apply.
func TestOverridesValidate(t *testing.T) {
	for _, tc := range []struct {
		o   maint.Overrides
		bad bool
	}{
		{o: maint.Overrides{}},
		{o: maint.Overrides{Concurrency: 1, BatchSize: 1, Rate: rate(0)}},
		{o: maint.Overrides{Concurrency: 1024}},
		{o: maint.Overrides{Concurrency: 1025}, bad: true},
		{o: maint.Overrides{Concurrency: -3}, bad: true},
		{o: maint.Overrides{BatchSize: -1}, bad: true},
		{o: maint.Overrides{Rate: rate(-5)}, bad: true},
	} {
		err := tc.o.Validate()
		if (err != nil) != tc.bad || (tc.bad && !errors.Is(err, maint.ErrOutOfRange)) {
			t.Errorf("Validate(%+v) = %v, want bad %v", tc.o, err, tc.bad)
			continue
		}
		if _, aerr := maint.DefaultTuning().Apply(tc.o); tc.bad && (aerr == nil || aerr.Error() != err.Error()) {
			t.Errorf("Apply(%+v) = %v, want %v", tc.o, aerr, err)
		}
	}
}
