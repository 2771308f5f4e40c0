package fs

import (
	"errors"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/dual/maint"

	"github.com/dualstore/dualstore/dual"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want command
		bad  bool
	}{
		{in: "compare\n", want: command{Verb: "compare", Path: "/"}},
		{in: "compare deep", want: command{Verb: "compare", Deep: true, Path: "/"}},
		{in: "compare deep photos/2024/", want: command{Verb: "compare", Deep: true, Path: "/photos/2024"}},
		{in: "compare /a/../b", want: command{Verb: "compare", Path: "/b"}},
		{in: "repair", want: command{Verb: "repair", Path: "/"}},
		{in: "repair photos rate=10M", want: command{Verb: "repair", Path: "/photos", Tuning: maint.Overrides{Rate: ptr(int64(10 << 20))}}},
		{in: "compare deep rate=1.5K concurrency=8 /x", want: command{Verb: "compare", Deep: true, Path: "/x", Tuning: maint.Overrides{Rate: ptr(int64(1536)), Concurrency: 8}}},
		{in: "compare deep rate=0", want: command{Verb: "compare", Deep: true, Path: "/", Tuning: maint.Overrides{Rate: ptr(int64(0))}}},
		{in: "migrate to_safety", want: command{Verb: "migrate", Direction: dual.MigrateToSafety}},
		{in: "migrate compare_all concurrency=2", want: command{Verb: "migrate", Direction: dual.MigrateCompareAll, Tuning: maint.Overrides{Concurrency: 2}}},
		{in: "gc dry-run", want: command{Verb: "gc", DryRun: true}},
		{in: "stop\r\n", want: command{Verb: "stop"}},
		{in: "gc", want: command{Verb: "gc"}},
		{in: "reset-stats", want: command{Verb: "reset-stats"}},
		{in: "read-preference safety", want: command{Verb: "read-preference", Pref: dual.PreferSafety}},
		{in: "read-preference fastest\n", want: command{Verb: "read-preference", Pref: dual.PreferFastest}},
		{in: "compare rate=10M deep /x", want: command{Verb: "compare", Deep: true, Path: "/x", Tuning: maint.Overrides{Rate: ptr(int64(10 << 20))}}},
		// A quoted path (how the CLI sends one) is a path, whatever it holds.
		{in: `compare "deep"`, want: command{Verb: "compare", Path: "/deep"}},
		{in: `compare deep "/deep"`, want: command{Verb: "compare", Deep: true, Path: "/deep"}},
		{in: `repair "/photos 2024/a=b" rate=1M`, want: command{Verb: "repair", Path: "/photos 2024/a=b", Tuning: maint.Overrides{Rate: ptr(int64(1 << 20))}}},
		{in: `compare "/caf\u00e9\t"`, bad: true}, // a control character, escaped or not
		{in: `compare "/quote\"d"`, want: command{Verb: "compare", Path: `/quote"d`}},
		{in: `compare "/a" "/b"`, bad: true},
		{in: `compare ""`, bad: true}, // an empty variable, quoted: not the whole tree
		{in: `compare "/open`, bad: true},
		{in: `compare "/a"b`, bad: true},
		{in: `compare "\q"`, bad: true},
		{in: `"compare"`, bad: true},
		{in: `migrate "to_safety"`, bad: true},
		{in: `gc "dry-run"`, bad: true},
		{in: "", bad: true},
		{in: "\n", bad: true},
		{in: "explode", bad: true},
		{in: "compare a b", bad: true},
		{in: "repair a b", bad: true},
		{in: "compare /no\x1b[2Jsuch", bad: true},
		{in: "repair /bad\xffutf8", bad: true},
		{in: "migrate", bad: true},
		{in: "migrate sideways", bad: true},
		{in: "migrate to_safety to_primary", bad: true},
		{in: "gc now", bad: true},
		{in: "gc rate=5", bad: true},
		{in: "compare rate=fast", bad: true},
		{in: "compare rate=-1", bad: true},
		{in: "compare concurrency=0", bad: true},
		// The bounds table's compare.concurrency and compare.rate.
		{in: "compare concurrency=1025", bad: true},
		{in: "compare concurrency=100000000000000000000", bad: true},
		{in: "repair rate=2T", bad: true},
		{in: "compare speed=3", bad: true},
		{in: "read-preference", bad: true},
		{in: "read-preference slowest", bad: true},
		{in: "compare\nrepair", bad: true},
		{in: "stop\x00", bad: true},
		{in: strings.Repeat("x", maxCommandLen+1), bad: true},
	} {
		got, err := parseCommand([]byte(tc.in))
		if tc.bad {
			if !errors.Is(err, errBadCommand) {
				t.Errorf("parseCommand(%q) = %+v, %v; want errBadCommand", tc.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCommand(%q) = %+v (rate %v), %v; want %+v (rate %v)", tc.in, got, deref(got.Tuning.Rate), err, tc.want, deref(tc.want.Tuning.Rate))
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"compare", "compare deep /x", "repair", "read-preference fastest", "gc", "\x00", "compare deep a b",
		"migrate to_safety", `compare deep "/a b"`, `repair "/x\"y" rate=1M`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCommand(b)
		if err != nil {
			if !errors.Is(err, errBadCommand) {
				t.Fatalf("error %v does not wrap errBadCommand", err)
			}
			return
		}
		switch c.Verb {
		case "compare", "repair", "migrate", "stop", "gc", "read-preference", "reset-stats":
		default:
			t.Fatalf("accepted unknown verb %q", c.Verb)
		}
		if (c.Verb == "compare" || c.Verb == "repair") && (!strings.HasPrefix(c.Path, "/") || path.Clean(c.Path) != c.Path) {
			t.Fatalf("%s path %q not absolute and clean", c.Verb, c.Path)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// deref shows a rate pointer's value ("unset" for nil) in a message.
func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}
