package main

import (
	"bytes"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/dual/engine"
	"github.com/dualstore/dualstore/stores/local"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 2, 9}, 2},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("median changed its input: %v, was %v", tc.in, in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

// read returns a dataset's first n bytes, read in pieces of size step.
func read(t *testing.T, ds dataset, n int64, step int) []byte {
	t.Helper()
	r, err := ds.reader(n)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, step)
	for {
		k, err := r.Read(buf)
		out.Write(buf[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// TestDatasetsDeterministic: the same bytes whatever the read sizes, on
// every call, and different seeds give different bytes.
func TestDatasetsDeterministic(t *testing.T) {
	const n = 3<<20 + 12345
	for _, ds := range []dataset{randomData, compressibleData} {
		t.Run(ds.name, func(t *testing.T) {
			a := read(t, ds, n, 1<<20)
			b := read(t, ds, n, 777)
			if len(a) != n || !bytes.Equal(a, b) {
				t.Fatalf("%d and %d bytes, equal %v: the stream depends on how it is read", len(a), len(b), bytes.Equal(a, b))
			}
			other := ds
			other.seed += 1000
			if bytes.Equal(a[:4096], read(t, other, 4096, 4096)) {
				t.Error("another seed gave the same bytes")
			}
		})
	}
}

// TestDatasetsCompressibility: random data does not compress, the text
// compresses between 2× and 3.5× with zstd's default level.
func TestDatasetsCompressibility(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, tc := range []struct {
		ds       dataset
		min, max float64
	}{
		{randomData, 0.95, 1.01},
		{compressibleData, 2, 3.5},
	} {
		data := read(t, tc.ds, 8<<20, 1<<20)
		ratio := float64(len(data)) / float64(len(enc.EncodeAll(data, nil)))
		if ratio < tc.min || ratio > tc.max {
			t.Errorf("%s: zstd ratio %.2f, want %.2f..%.2f", tc.ds.name, ratio, tc.min, tc.max)
		}
		t.Logf("%s: zstd ratio %.2f", tc.ds.name, ratio)
	}
}

// TestLoopbackHidesPassthrough: the loopback's files must not offer their
// fd to the kernel, or (b) would not be a FUSE floor at all.
func TestLoopbackHidesPassthrough(t *testing.T) {
	var f any = &noPassthroughFile{}
	if _, ok := f.(gofs.FilePassthroughFder); ok {
		t.Error("noPassthroughFile offers PassthroughFd")
	}
	if _, ok := any(&gofs.LoopbackFile{}).(gofs.FilePassthroughFder); !ok {
		t.Error("go-fuse's LoopbackFile no longer offers PassthroughFd: the wrapper may be unneeded")
	}
}

func samplesForTable() []sample {
	var ss []sample
	add := func(c, d, v string, run int, val float64, unit string, detail map[string]float64) {
		ss = append(ss, sample{Case: c, Data: d, Variant: v, Run: run, Value: val, Unit: unit, Detail: detail})
	}
	for run, k := range []float64{1, 2, 0.5} {
		add("write", "random", "loopback", run, 400*k, "MiB/s", nil)
		add("write", "random", "dualstore-both", run, 200*k, "MiB/s", map[string]float64{"bytes": 1 << 30, "daemon_cpu_seconds": 4 * k})
		add("write", "random", "disk", run, 800*k, "MiB/s", nil)
		add("copy2", "random", "dualstore-both", run, 400*k, "MiB/s", map[string]float64{"new_chunk_bytes": 0})
		add("copy2", "random", "loopback", run, 400*k, "MiB/s", nil)
		add("read-cold", "random", "loopback", run, 1000*k, "MiB/s", nil)
		add("read-cold", "random", "dualstore-both", run, 700*k, "MiB/s", nil)
		add("small-create", "", "loopback", run, 6000*k, "files/s", nil)
		add("small-create", "", "dualstore-both", run, 300*k, "files/s", map[string]float64{"files": 10000, "daemon_cpu_seconds": 15 * k})
	}
	add("rss-peak", "random", "dualstore-both", 0, 300, "MiB", nil)
	add("rss-walk-settled", "", "dualstore-both", 0, 300, "MiB", nil)
	add("rss-files", "", "dualstore-both", 0, 700, "files/s", map[string]float64{"files": 100000, "daemon_cpu_seconds": 110})
	add("rss-files-peak", "", "dualstore-both", 0, 230, "MiB", nil)
	return ss
}

func TestSummarize(t *testing.T) {
	rows := summarize(samplesForTable())
	got := map[string]row{}
	var order []string
	for _, r := range rows {
		k := r.Case + "/" + r.Data + "/" + r.Variant
		got[k] = r
		order = append(order, k)
	}
	want := []string{
		"write/random/disk", "write/random/loopback", "write/random/dualstore-both",
		"copy2/random/loopback", "copy2/random/dualstore-both",
		"read-cold/random/loopback", "read-cold/random/dualstore-both",
		"small-create//loopback", "small-create//dualstore-both",
		"rss-peak/random/dualstore-both",
		"rss-files//dualstore-both", "rss-files-peak//dualstore-both", "rss-walk-settled//dualstore-both",
	}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("row order\n got %v\nwant %v", order, want)
	}
	for _, tc := range []struct {
		key    string
		median float64
		ratio  float64 // NaN: none
		result string
	}{
		{"write/random/dualstore-both", 200, 0.5, "pass"},
		{"write/random/disk", 800, 2, ""},
		{"copy2/random/dualstore-both", 400, 1, "pass"},
		{"read-cold/random/dualstore-both", 700, 0.7, "pass"},
		{"small-create//dualstore-both", 300, 0.05, "miss"},
		{"rss-peak/random/dualstore-both", 300, math.NaN(), "miss"},
		{"rss-files//dualstore-both", 700, math.NaN(), ""},
		{"rss-files-peak//dualstore-both", 230, math.NaN(), "pass"},
		{"rss-walk-settled//dualstore-both", 300, math.NaN(), "miss"},
	} {
		r := got[tc.key]
		if r.Median != tc.median || r.Result != tc.result {
			t.Errorf("%s: median %v result %q, want %v %q", tc.key, r.Median, r.Result, tc.median, tc.result)
		}
		switch {
		case math.IsNaN(tc.ratio) && r.Ratio != nil:
			t.Errorf("%s: ratio %v, want none", tc.key, *r.Ratio)
		case !math.IsNaN(tc.ratio) && (r.Ratio == nil || math.Abs(*r.Ratio-tc.ratio) > 1e-9):
			t.Errorf("%s: ratio %v, want %v", tc.key, r.Ratio, tc.ratio)
		}
	}
	if m := got["copy2/random/dualstore-both"].Measured; m != "2.00× first, 0 B new" {
		t.Errorf("second copy measured %q", m)
	}
}

func TestMarkdown(t *testing.T) {
	m := meta{Date: "2030-01-02 03:04 UTC", Host: "h", CPU: "cpu", Cores: 2, MemGiB: 8, Kernel: "6.1", Go: "go1.26",
		WorkFS: "ext4 (/dev/x)", DropCaches: true, Size: 1 << 30, BigSize: 4 << 30, Small: 10000, Runs: 3,
		Files: 100000, WalkFiles: 1000000}
	out := markdown(m, summarize(samplesForTable()))
	for _, want := range []string{
		"Median of 3 run(s)",
		"Sequential: one 1 GiB file",
		"| case | data | variant | value | daemon CPU | ratio to (b) | target | result |",
		"| seq write + fsync | random | (d) dualstore, both tiers | 200 MiB/s | 4.00 s/GiB | 0.50 | ≥ 0.45× (b) | pass |",
		"| seq write + fsync | random | (a) plain disk | 800 MiB/s | – | 2.00 |  |  |",
		"| second copy (dedup) | random | (d) dualstore, both tiers | 400 MiB/s | – | 1.00 | ≥ 1.5× first copy, 0 new chunk bytes | pass (2.00× first, 0 B new) |",
		"| create+write | – | (d) dualstore, both tiers | 300 files/s | 1.50 s/1k files | 0.05 | ≥ 0.50× (b) | **miss** |",
		"| daemon peak RSS, big write | random | (d) dualstore, both tiers | 300 MiB | – | – | < 256 MiB | **miss** |",
		"- create+write, (d) dualstore, both tiers: 0.05× (b), target ≥ 0.50× (b)",
		"- daemon peak RSS, big write, random, (d) dualstore, both tiers: 300 MiB, target < 256 MiB",
		"Daemon resources with many files (one run): 100000 files of 4 KiB created through the mount; 1000000 files put into the index",
		"| create 4 KiB files | – | (d) dualstore, both tiers | 700 files/s | 1.10 s/1k files | – |  |  |",
		"| daemon peak RSS, create | – | (d) dualstore, both tiers | 230 MiB | – | – | < 256 MiB | pass |",
		"- daemon RSS after the walk, idle, (d) dualstore, both tiers: 300 MiB, target < 256 MiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q\n%s", want, out)
		}
	}
	if t.Failed() {
		return
	}
	// Every table row has as many cells as the header.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "|") && strings.Count(line, "|") != 9 {
			t.Errorf("row with %d cells: %s", strings.Count(line, "|")-1, line)
		}
	}
}

// TestSyncVariant: (f) runs only the random first copy, its config forces
// the local stores' sync mode, and its rows give the ratio to (d).
func TestSyncVariant(t *testing.T) {
	v := variantByKey("dualstore-fsync")
	if !slices.Contains(caseNames(), "seq/random/dualstore-fsync") || slices.Contains(caseNames(), "seq/compressible/dualstore-fsync") {
		t.Errorf("cases of (f): %v", caseNames())
	}
	var c engine.Config
	if err := engine.ParseYAML([]byte(dualstoreConfig(v, t.TempDir(), true)), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(engine.DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	for _, sc := range append(c.Primary, c.Safety...) {
		if lc, ok := sc.Options.(*local.Config); !ok || lc.Sync != "fsync" || !lc.Compress {
			t.Errorf("store %s of (f): %#v, want sync: fsync and compress", sc.Name, sc.Options)
		}
	}

	var ss []sample
	for run, k := range []float64{1, 2, 0.5} {
		ss = append(ss,
			sample{Case: "write", Data: "random", Variant: "loopback", Run: run, Value: 400 * k, Unit: "MiB/s"},
			sample{Case: "write", Data: "random", Variant: "dualstore-both", Run: run, Value: 200 * k, Unit: "MiB/s"},
			sample{Case: "write", Data: "random", Variant: "dualstore-fsync", Run: run, Value: 150 * k, Unit: "MiB/s"})
	}
	rows := summarize(ss)
	r := rows[len(rows)-1]
	if r.Variant != "dualstore-fsync" || r.BaselineRatio == nil || *r.BaselineRatio != 0.75 || r.Measured != "0.75× (d)" || r.Result != "" {
		t.Errorf("row of (f): %+v", r)
	}
	want := "| seq write + fsync | random | (f) both tiers, sync: fsync | 150 MiB/s | – | 0.38 |  | (0.75× (d)) |"
	if out := markdown(meta{Runs: 3, Size: 1 << 30}, rows); !strings.Contains(out, want) {
		t.Errorf("table lacks %q\n%s", want, out)
	}
}

// TestCasyncVariant: (h) runs the random first copy and cold read with a
// casync primary and the default safety tier, and is judged against (i),
// desync, in the same run.
func TestCasyncVariant(t *testing.T) {
	names := caseNames()
	for _, k := range []string{"dualstore-casync", "desync"} {
		if !slices.Contains(names, "seq/random/"+k) || slices.Contains(names, "seq/compressible/"+k) {
			t.Errorf("cases of %s: %v", k, names)
		}
	}
	v := variantByKey("dualstore-casync")
	if !v.writeCold || v.writeOnly || v.baseline != "desync" {
		t.Errorf("(h): %+v", v)
	}
	for _, compress := range []bool{false, true} {
		var c engine.Config
		if err := engine.ParseYAML([]byte(dualstoreConfig(v, t.TempDir(), compress)), &c); err != nil {
			t.Fatal(err)
		}
		if err := c.Complete(engine.DefaultRegistry()); err != nil {
			t.Fatal(err)
		}
		if c.Chunker.Hash != "sha512-256" || !*c.Dual.WriteToBoth || len(c.Primary) != 1 || len(c.Safety) != 1 {
			t.Fatalf("config of (h): %+v", c)
		}
		if lc, ok := c.Primary[0].Options.(*local.Config); !ok || lc.Layout != local.LayoutCasync {
			t.Errorf("primary of (h): %#v, want layout casync", c.Primary[0].Options)
		}
		if lc, ok := c.Safety[0].Options.(*local.Config); !ok || lc.Layout != local.LayoutDualstore || lc.Compress != compress {
			t.Errorf("safety of (h), compress %v: %#v, want the default layout", compress, c.Safety[0].Options)
		}
	}

	var ss []sample
	for run, k := range []float64{1, 2, 0.5} {
		// desync make takes 2 s of its 4 s before the sync.
		mk := map[string]float64{"bytes": 1 << 30, "seconds": 4 / k, "make_seconds": 2 / k, "daemon_cpu_seconds": 3}
		ss = append(ss,
			sample{Case: "write", Data: "random", Variant: "loopback", Run: run, Value: 400 * k, Unit: "MiB/s"},
			sample{Case: "write", Data: "random", Variant: "dualstore-casync", Run: run, Value: 340 * k, Unit: "MiB/s"},
			sample{Case: "write", Data: "random", Variant: "desync", Run: run, Value: 256 * k, Unit: "MiB/s", Detail: mk},
			sample{Case: "read-cold", Data: "random", Variant: "loopback", Run: run, Value: 1000 * k, Unit: "MiB/s"},
			sample{Case: "read-cold", Data: "random", Variant: "dualstore-casync", Run: run, Value: 600 * k, Unit: "MiB/s"},
			sample{Case: "read-cold", Data: "random", Variant: "desync", Run: run, Value: 400 * k, Unit: "MiB/s"})
	}
	out := markdown(meta{Runs: 3, Size: 1 << 30}, summarize(ss))
	for _, want := range []string{
		"| seq write + fsync | random | (h) casync primary + safety | 340 MiB/s | – | 0.85 | ≥ 1.3× (i) desync make + sync | pass (1.33× desync make + sync; 0.66× make alone) |",
		"| seq write + fsync | random | (i) desync make / extract | 256 MiB/s | 3.00 s/GiB | 0.64 |  | (make alone, before the sync: 512 MiB/s) |",
		"| seq read, cold | random | (h) casync primary + safety | 600 MiB/s | – | 0.60 | ≥ 2.0× (i) desync extract | **miss** (1.50× desync extract) |",
		"- seq read, cold, random, (h) casync primary + safety: 1.50× desync extract, target ≥ 2.0× (i) desync extract",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q\n%s", want, out)
		}
	}

	// Without (i) in the run, (h) is not judged, and the table says why.
	rows := summarize(ss[:2])
	if r := rows[len(rows)-1]; r.Variant != "dualstore-casync" || r.Result != "no (i)" {
		t.Errorf("(h) without (i): %+v", r)
	}
	out = markdown(meta{Runs: 3, Size: 1 << 30, NoDesync: "-desync bin/desync not found"}, rows)
	for _, want := range []string{"**desync baselines skipped**: -desync bin/desync not found", "1 target(s) not judged"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q\n%s", want, out)
		}
	}
}

func TestFindDesync(t *testing.T) {
	if p, why := findDesync(t.TempDir() + "/nope"); p != "" || !strings.Contains(why, "not found") {
		t.Errorf("missing binary: %q, %q", p, why)
	}
	if p, why := findDesync(t.TempDir()); p != "" || !strings.Contains(why, "not an executable") {
		t.Errorf("a directory: %q, %q", p, why)
	}
	if p, why := findDesync("/bin/true"); p != "/bin/true" || why != "" {
		t.Errorf("/bin/true: %q, %q", p, why)
	}
}
