package integration

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// contractKeys are the stats fields DESIGN.md promises never to rename or
// drop (dotted paths; tiers.T applies to both tiers).
var contractKeys = []string{
	"uptime_seconds", "read_preference", "files", "logical_bytes", "unique_chunks", "unique_bytes", "dedup_ratio",
	"fallbacks", "self_heals", "pending_backfill", "success_rate", "error_rate", "consistency_rate", "last_compare",
	"tiers.T.writes.ok", "tiers.T.writes.errors", "tiers.T.writes.bytes",
	"tiers.T.reads.ok", "tiers.T.reads.errors", "tiers.T.reads.checksum_errors", "tiers.T.reads.bytes",
	"tiers.T.latency_ms.write_p50", "tiers.T.latency_ms.write_p99", "tiers.T.latency_ms.read_p50", "tiers.T.latency_ms.read_p99",
	"tiers.T.stores",
}

func lookupKey(v map[string]any, path string) (any, bool) {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// withoutUptime drops the fields that change by themselves.
func withoutUptime(v map[string]any) map[string]any {
	delete(v, "uptime_seconds")
	// The index backup moves with the clock too: its lag grows until the
	// next durability point, which ships the mount's own first commits.
	delete(v, "index_backup")
	// Every FUSE request counts, the test's own writes to ctl and reads of
	// stats included.
	delete(v, "fuse_ops")
	return v
}

// TestControlDir checks `.dualstore/`: its entries and their modes, that
// it cannot be changed, that the read-only files are read-only, that ctl
// rejects garbage with EINVAL and runs each documented command.
func TestControlDir(t *testing.T) {
	t.Parallel()
	// A throttled comparison runs long enough to be stopped.
	m := mount(t, withConfig("compare:\n  rate: 1048576\n"))
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, src, randBytes(70, 8<<20))
	runTool(t, "cp", src, m.Path("data"))
	m.Remount() // empty caches: the reads below reach the stores

	t.Run("contract", func(t *testing.T) {
		m := m.For(t)
		raw := m.StatsRaw()
		for _, k := range contractKeys {
			for _, tier := range tiers {
				if _, ok := lookupKey(raw, strings.Replace(k, ".T.", "."+tier+".", 1)); !ok {
					t.Errorf("stats lacks %s", strings.Replace(k, ".T.", "."+tier+".", 1))
				}
			}
		}
		st := m.Stats()
		for _, tier := range tiers {
			s := st.Tiers[tier].Stores
			if len(s) != 1 || s[0].Name != tier+"-0" || s[0].Type != "local" {
				t.Errorf("stats tiers.%s.stores = %+v, want one local store named %s-0", tier, s, tier)
			}
		}
		var cfg struct {
			DataDir string `json:"data_dir"`
			Compare struct {
				Rate int64 `json:"rate"`
			} `json:"compare"`
			Primary []struct {
				Path string `json:"path"`
			} `json:"primary"`
		}
		b, err := os.ReadFile(m.control("config"))
		if err != nil || json.Unmarshal(b, &cfg) != nil {
			t.Fatalf("config: %v\n%s", err, b)
		}
		if cfg.DataDir != m.Data || cfg.Compare.Rate != 1048576 || len(cfg.Primary) != 1 || cfg.Primary[0].Path != filepath.Join(m.Data, primary) {
			t.Errorf("config = %s; want data_dir %s, compare.rate 1048576, primary[0].path %s/primary", b, m.Data, m.Data)
		}
		// Effective, not as written: defaults filled in, no nulls.
		var eff map[string]any
		if err := json.Unmarshal(b, &eff); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"dual.write_to_both", "dual.fallback_enabled", "dual.self_heal"} {
			if v, ok := lookupKey(eff, k); !ok || v != true {
				t.Errorf("config %s = %v (present %v), want true: the effective value, which is the default", k, v, ok)
			}
		}
		var r Report
		if b, err := os.ReadFile(m.control("compare")); err != nil || json.Unmarshal(b, &r) != nil || r.State != "idle" {
			t.Errorf("compare before any comparison: %v, %s; want state idle", err, b)
		}
		if s := m.CtlStatus(); !strings.HasPrefix(s, "idle\n") {
			t.Errorf("ctl = %q, want it to start with idle", s)
		}
	})

	t.Run("entries", func(t *testing.T) {
		m := m.For(t)
		ents, err := os.ReadDir(m.control(""))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if want := []string{"chunks", "compare", "config", "ctl", "stats"}; !slices.Equal(names, want) {
			t.Errorf(".dualstore holds %q, want %q", names, want)
		}
		if st, err := os.Stat(m.control("")); err != nil || !st.IsDir() {
			t.Errorf(".dualstore: %v, want a directory", err)
		}
		for name, mode := range map[string]os.FileMode{"stats": 0o444, "ctl": 0o600, "compare": 0o444, "config": 0o444} {
			st, err := os.Stat(m.control(name))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if st.Mode() != mode {
				t.Errorf("%s: mode %v, want %v", name, st.Mode(), mode)
			}
			if ino := st.Sys().(*syscall.Stat_t).Ino; ino < 0x7FFFFFFF00000000 {
				t.Errorf("%s: inode %#x, want one far above real inodes (>= 0x7FFFFFFF00000000)", name, ino)
			}
		}
	})

	t.Run("immutable", func(t *testing.T) {
		m := m.For(t)
		d := m.control("")
		if err := os.Mkdir(m.Path("plaindir"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, m.Path("plainfile"), []byte("x"))
		toolFails(t, "mkdir", d)
		toolFails(t, "mkdir", filepath.Join(d, "sub"))
		toolFails(t, "touch", filepath.Join(d, "new"))
		toolFails(t, "rm", "-rf", d)
		toolFails(t, "rmdir", d)
		toolFails(t, "rm", "-f", filepath.Join(d, "stats"))
		toolFails(t, "mv", d, m.Path("moved"))
		toolFails(t, "mv", "-T", m.Path("plaindir"), d)
		toolFails(t, "mv", "-T", m.Path("plainfile"), d)
		toolFails(t, "mv", m.Path("plainfile"), d+"/")
		toolFails(t, "mv", filepath.Join(d, "stats"), m.Path("stolen"))
		toolFails(t, "ln", "-s", "x", filepath.Join(d, "link"))
		toolFails(t, "ln", m.Path("plainfile"), filepath.Join(d, "hard"))
		toolFails(t, "chmod", "777", filepath.Join(d, "stats"))
		toolFails(t, "touch", filepath.Join(d, "chunks", "new"))
		toolFails(t, "mkdir", filepath.Join(d, "chunks", "sub"))
		toolFails(t, "rmdir", filepath.Join(d, "chunks"))
		for _, name := range []string{"stats", "ctl", "compare", "config"} {
			if _, err := os.Stat(filepath.Join(d, name)); err != nil {
				t.Errorf("after the attempts, %s: %v", name, err)
			}
		}
		for _, p := range []string{"plaindir", "plainfile"} {
			if _, err := os.Stat(m.Path(p)); err != nil {
				t.Errorf("%s was lost trying to rename it onto .dualstore: %v", p, err)
			}
		}
		for _, p := range []string{"moved", "stolen", ".dualstore/new", ".dualstore/plainfile"} {
			if _, err := os.Lstat(m.Path(p)); !os.IsNotExist(err) {
				t.Errorf("%s exists (%v), want it not created", p, err)
			}
		}
		// The name is reserved at the root only.
		runTool(t, "touch", m.Path("plaindir", ".dualstore"))
		m.StatsRaw()
	})

	t.Run("read-only", func(t *testing.T) {
		m := m.For(t)
		for _, name := range []string{"stats", "compare", "config"} {
			f, err := os.OpenFile(m.control(name), os.O_WRONLY, 0)
			if err == nil {
				_, err = f.Write([]byte("x\n"))
				f.Close()
			}
			if !errors.Is(err, syscall.EACCES) {
				t.Errorf("writing %s: %v, want EACCES", name, err)
			}
			toolFails(t, "sh", "-c", "echo x > "+m.control(name))
			toolFails(t, "truncate", "-s", "0", m.control(name))
		}
	})

	t.Run("fresh", func(t *testing.T) {
		m := m.For(t)
		a, b := m.Stats(), m.Stats()
		if !(b.UptimeSeconds > a.UptimeSeconds) {
			t.Errorf("two reads of stats: uptime_seconds %v then %v, want it to grow", a.UptimeSeconds, b.UptimeSeconds)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		m := m.For(t)
		before := withoutUptime(m.StatsRaw())
		for _, cmd := range []string{"garbage", "", "compare deep / extra", "compare shallow deep", "read-preference",
			"read-preference bogus", "read-preference primary safety", "repair a b", "reset-stats please", "stop stop",
			"migrate", "migrate sideways", "gc now", "compare rate=fast", "compare speed=3",
			"gcc", "compare\ncompare", "READ-PREFERENCE safety", strings.Repeat("x", 5000)} {
			err := m.Ctl(cmd)
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("writing %q to ctl: %v, want EINVAL", cmd, err)
			}
		}
		if after := withoutUptime(m.StatsRaw()); !reflect.DeepEqual(before, after) {
			b1, _ := json.Marshal(before)
			b2, _ := json.Marshal(after)
			t.Errorf("garbage commands changed stats:\nbefore %s\nafter  %s", b1, b2)
		}
		if s := m.CtlStatus(); !strings.Contains(s, "last: error:") {
			t.Errorf("ctl after garbage = %q, want the last result to be an error", s)
		}
		if r := m.Report(); r.State != "idle" {
			t.Errorf("compare after garbage: state %s, want idle (nothing started)", r.State)
		}
		if out, errOut, code := CLI(t, "ctl", m.Dir, "bogus"); code != 2 || !strings.Contains(errOut, "bogus") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("dualstore ctl MOUNT bogus: exit %d, stderr %q; want 2 and one line naming the command\n%s", code, errOut, out)
		}
	})

	t.Run("read-preference", func(t *testing.T) {
		m := m.For(t)
		if err := m.Ctl("read-preference safety"); err != nil {
			t.Fatal(err)
		}
		if st := m.Stats(); st.ReadPreference != "safety" {
			t.Errorf("read_preference %q, want safety", st.ReadPreference)
		}
		cmpFiles(t, src, m.Path("data"))
		st := m.Stats()
		if st.Tiers[safety].Reads.OK == 0 || st.Tiers[primary].Reads.OK != 0 || st.Fallbacks != 0 {
			t.Errorf("reading with read-preference safety: safety reads %d, primary reads %d, fallbacks %d; want safety only",
				st.Tiers[safety].Reads.OK, st.Tiers[primary].Reads.OK, st.Fallbacks)
		}
		if out, errOut, code := CLI(t, "ctl", m.Dir, "read-preference", "fastest"); code != 0 {
			t.Errorf("dualstore ctl MOUNT read-preference fastest: exit %d\n%s%s", code, out, errOut)
		}
		if st := m.Stats(); st.ReadPreference != "fastest" {
			t.Errorf("read_preference %q, want fastest", st.ReadPreference)
		}
		if err := m.Ctl("read-preference primary"); err != nil {
			t.Fatal(err)
		}
		if st := m.Stats(); st.ReadPreference != "primary" {
			t.Errorf("read_preference %q, want primary", st.ReadPreference)
		}
	})

	t.Run("reset-stats", func(t *testing.T) {
		m := m.For(t)
		st := m.Stats()
		if st.Tiers[safety].Reads.OK == 0 {
			t.Fatalf("no reads counted before the reset: %+v", st.Tiers)
		}
		if err := m.Ctl("reset-stats"); err != nil {
			t.Fatal(err)
		}
		after := m.Stats()
		for _, tier := range tiers {
			ts := after.Tiers[tier]
			if ts.Reads != (OpStats{}) || ts.Writes != (OpStats{}) {
				t.Errorf("after reset-stats, %s reads %+v writes %+v, want zero", tier, ts.Reads, ts.Writes)
			}
			for _, s := range ts.Stores {
				if s.Reads != (OpStats{}) || s.Writes != (OpStats{}) {
					t.Errorf("after reset-stats, store %s reads %+v writes %+v, want zero", s.Name, s.Reads, s.Writes)
				}
			}
		}
		if after.Fallbacks != 0 || after.SelfHeals != 0 {
			t.Errorf("after reset-stats: fallbacks %d self_heals %d", after.Fallbacks, after.SelfHeals)
		}
		if after.Files != st.Files || after.UniqueChunks != st.UniqueChunks || after.LogicalBytes != st.LogicalBytes {
			t.Errorf("reset-stats changed what the index knows: files %d→%d chunks %d→%d", st.Files, after.Files, st.UniqueChunks, after.UniqueChunks)
		}
	})

	t.Run("stop", func(t *testing.T) {
		m := m.For(t)
		if err := m.Ctl("compare deep"); err != nil {
			t.Fatal(err)
		}
		r := m.Report()
		if r.State != "running" {
			t.Fatalf("a throttled deep compare of 8 MiB at 1 MiB/s: state %q, want running", r.State)
		}
		if s := m.CtlStatus(); !strings.HasPrefix(s, "compare deep") {
			t.Errorf("ctl while comparing = %q, want it to start with \"compare deep\"", s)
		}
		if a, _ := m.StatsRaw()["action"].(string); !strings.HasPrefix(a, "compare") {
			t.Errorf("stats action while comparing = %q, want compare…", a)
		}
		for _, cmd := range []string{"compare", "repair"} {
			if err := m.Ctl(cmd); !errors.Is(err, syscall.EBUSY) {
				t.Errorf("%s while a compare runs: %v, want EBUSY", cmd, err)
			}
		}
		if err := m.Ctl("stop"); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if r := m.Report(); r.State != "stopped" {
			t.Errorf("after stop: state %q, want stopped", r.State)
		}
		if s := m.CtlStatus(); !strings.HasPrefix(s, "idle\n") {
			t.Errorf("ctl after stop = %q, want idle", s)
		}
		if err := m.Ctl("stop"); err != nil {
			t.Errorf("stop with nothing running: %v, want success", err)
		}
	})
}
