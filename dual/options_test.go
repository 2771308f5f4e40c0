package dual_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/stores"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*dual.Options)
		wantErr string // substring; "" means valid
	}{
		{"defaults", func(*dual.Options) {}, ""},
		{"no hash", func(o *dual.Options) { o.Hash = nil }, "Hash is required"},
		{"preference below range", func(o *dual.Options) { o.ReadPreference = -1 }, "read_preference"},
		{"preference above range", func(o *dual.Options) { o.ReadPreference = dual.PreferFastest + 1 }, "read_preference"},
		{"preference fastest", func(o *dual.Options) { o.ReadPreference = dual.PreferFastest }, ""},
		{"require below range", func(o *dual.Options) { o.Require = -1 }, "require -1 out of range"},
		{"require above range", func(o *dual.Options) { o.Require = dual.RequireAny + 1 }, "out of range"},
		{"require both", func(o *dual.Options) { o.Require = dual.RequireBoth }, ""},
		{"require any", func(o *dual.Options) { o.Require = dual.RequireAny }, ""},
		{"primary only, require primary", func(o *dual.Options) { o.WriteToBoth = false }, ""},
		{"primary only, require both", func(o *dual.Options) { o.WriteToBoth = false; o.Require = dual.RequireBoth }, "needs write_to_both"},
		{"primary only, require any", func(o *dual.Options) { o.WriteToBoth = false; o.Require = dual.RequireAny }, "needs write_to_both"},
		{"write concurrency 0", func(o *dual.Options) { o.WriteConcurrency = 0 }, "write_concurrency 0"},
		{"write concurrency 1", func(o *dual.Options) { o.WriteConcurrency = 1 }, ""},
		{"write concurrency 1024", func(o *dual.Options) { o.WriteConcurrency = 1024 }, ""},
		{"write concurrency 1025", func(o *dual.Options) { o.WriteConcurrency = 1025 }, "write_concurrency 1025"},
		{"backfill interval 0", func(o *dual.Options) { o.BackfillInterval = 0 }, "backfill_interval"},
		{"backfill interval negative", func(o *dual.Options) { o.BackfillInterval = -time.Second }, "backfill_interval"},
		{"max backoff below interval", func(o *dual.Options) { o.BackfillMaxBackoff = o.BackfillInterval - 1 }, "backfill_max_backoff"},
		{"max backoff equal to interval", func(o *dual.Options) { o.BackfillMaxBackoff = o.BackfillInterval }, ""},
		{"store timeout 0 (none)", func(o *dual.Options) { o.StoreTimeout = 0 }, ""},
		{"store timeout negative", func(o *dual.Options) { o.StoreTimeout = -1 }, "store_timeout"},
		{"max chunk size 0 (the ceiling)", func(o *dual.Options) { o.MaxChunkSize = 0 }, ""},
		{"max chunk size 4 MiB", func(o *dual.Options) { o.MaxChunkSize = 4 << 20 }, ""},
		{"max chunk size negative", func(o *dual.Options) { o.MaxChunkSize = -1 }, "max chunk size"},
		{"max chunk size past the ceiling", func(o *dual.Options) { o.MaxChunkSize = stores.MaxChunkSize + 1 }, "max chunk size"},
		{"several at once", func(o *dual.Options) { o.Hash = nil; o.WriteConcurrency = 0 }, "write_concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := dual.DefaultOptions()
			o.Hash = hashID
			tt.edit(&o)
			err := o.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultOptions(t *testing.T) {
	o := dual.DefaultOptions()
	if err := o.Validate(); err == nil {
		t.Error("DefaultOptions without a Hash validate; want the missing hash reported")
	}
	if !o.WriteToBoth || !o.FallbackEnabled || !o.SelfHeal || o.VerifyBoth {
		t.Errorf("DefaultOptions = %+v: want write_to_both, fallback and self-heal on, verify_both off", o)
	}
	if o.ReadPreference != dual.PreferPrimary || o.Require != dual.RequirePrimary {
		t.Errorf("DefaultOptions: read_preference %s, require %s; want primary, primary", o.ReadPreference, o.Require)
	}
	if o.WriteConcurrency != 8 || o.BackfillInterval != 5*time.Second || o.BackfillMaxBackoff != time.Minute || o.StoreTimeout <= 0 {
		t.Errorf("DefaultOptions sizes = %+v", o)
	}
}

func TestParsePreference(t *testing.T) {
	tests := []struct {
		in      string
		want    dual.Preference
		wantErr bool
	}{
		{"primary", dual.PreferPrimary, false},
		{"safety", dual.PreferSafety, false},
		{"fastest", dual.PreferFastest, false},
		{" fastest\n", dual.PreferFastest, false},
		{"", 0, true},
		{"Primary", 0, true},
		{"both", 0, true},
		{"prim", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := dual.ParsePreference(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePreference(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "read_preference") {
					t.Errorf("error %q does not name the option", err)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("ParsePreference(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if strings.TrimSpace(tt.in) != got.String() {
				t.Errorf("String() = %q, want %q", got.String(), strings.TrimSpace(tt.in))
			}
		})
	}
	if s := dual.Preference(7).String(); s != "preference(7)" {
		t.Errorf("Preference(7).String() = %q", s)
	}
}

func TestParseRequire(t *testing.T) {
	tests := []struct {
		in      string
		want    dual.Require
		wantErr bool
	}{
		{"primary", dual.RequirePrimary, false},
		{"both", dual.RequireBoth, false},
		{"any", dual.RequireAny, false},
		{"\tany ", dual.RequireAny, false},
		{"", 0, true},
		{"safety", 0, true},
		{"ANY", 0, true},
		{"all", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := dual.ParseRequire(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRequire(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "require") {
					t.Errorf("error %q does not name the option", err)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("ParseRequire(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if strings.TrimSpace(tt.in) != got.String() {
				t.Errorf("String() = %q, want %q", got.String(), strings.TrimSpace(tt.in))
			}
		})
	}
	if s := dual.Require(9).String(); s != "require(9)" {
		t.Errorf("Require(9).String() = %q", s)
	}
}

// The options render in config spelling in JSON and parse back.
func TestPreferenceRequireText(t *testing.T) {
	type cfg struct {
		ReadPreference dual.Preference `json:"read_preference"`
		Require        dual.Require    `json:"require"`
	}
	b, err := json.Marshal(cfg{dual.PreferFastest, dual.RequireAny})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"read_preference":"fastest","require":"any"}` {
		t.Fatalf("marshal = %s", b)
	}
	var back cfg
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ReadPreference != dual.PreferFastest || back.Require != dual.RequireAny {
		t.Fatalf("round trip = %+v", back)
	}
	if err := json.Unmarshal([]byte(`{"read_preference":"slowest"}`), &back); err == nil {
		t.Error("unmarshal of read_preference slowest succeeded")
	}
	if err := json.Unmarshal([]byte(`{"require":"none"}`), &back); err == nil {
		t.Error("unmarshal of require none succeeded")
	}
}

func TestNewRejects(t *testing.T) {
	tier := func(name string) *stores.Tier {
		return dual.NewTier(name, []stores.Store{stores.NewMem(name)}, hashID)
	}
	log := testLog(t)
	good := baseOptions()
	bad := good
	bad.WriteConcurrency = 0
	if _, err := dual.New(tier("p"), tier("s"), newMemPending(), bad, log); err == nil {
		t.Error("New with invalid options succeeded")
	}
	if _, err := dual.New(nil, tier("s"), newMemPending(), good, log); err == nil {
		t.Error("New without a primary tier succeeded")
	}
	if _, err := dual.New(tier("p"), nil, newMemPending(), good, log); err == nil {
		t.Error("New without a safety tier succeeded")
	}
	// One-sided writes can be accepted: the pending list is required.
	for _, req := range []dual.Require{dual.RequirePrimary, dual.RequireAny} {
		o := good
		o.Require = req
		if _, err := dual.New(tier("p"), tier("s"), nil, o, log); err == nil {
			t.Errorf("New with require %s and no pending list succeeded", req)
		}
	}
	// They cannot: no pending list needed.
	o := good
	o.Require = dual.RequireBoth
	m, err := dual.New(tier("p"), tier("s"), nil, o, log)
	if err != nil {
		t.Errorf("New with require both and no pending list: %v", err)
	} else {
		_ = m.Close()
	}
	o = good
	o.WriteToBoth = false
	m, err = dual.New(tier("p"), tier("s"), nil, o, log)
	if err != nil {
		t.Errorf("New with write_to_both off and no pending list: %v", err)
	} else {
		if got := m.Options(); got.WriteToBoth || got.Hash == nil {
			t.Errorf("Options() = %+v", got)
		}
		_ = m.Close()
	}
}

func TestManagerNames(t *testing.T) {
	r := newRig(t, rigConfig{})
	if r.m.Name() != "dual" || r.m.Type() != "dual" {
		t.Errorf("Name, Type = %q, %q", r.m.Name(), r.m.Type())
	}
	if r.m.Tier(dual.TierPrimary).Name() != "primary" || r.m.Tier(dual.TierSafety).Name() != "safety" {
		t.Error("Tier() does not return the tiers by name")
	}
	if r.m.Tier("other") != nil {
		t.Error(`Tier("other") != nil`)
	}
}
