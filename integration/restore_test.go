package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The index backup (#14): the index is in both tiers, and a lost data dir
// comes back with `dualstore restore`.

// BackupStats is the stats' index_backup section.
type BackupStats struct {
	Generation string    `json:"generation"`
	Seq        uint64    `json:"seq"`
	Point      time.Time `json:"point"`
	Pending    string    `json:"pending_snapshot"`
	Tiers      []struct {
		Name       string  `json:"name"`
		Seq        uint64  `json:"seq"`
		LagSeconds float64 `json:"lag_seconds"`
		Behind     int64   `json:"behind_objects"`
		Errors     int64   `json:"errors"`
		LastError  string  `json:"last_error"`
	} `json:"tiers"`
}

func (m *Mount) backupStats() BackupStats {
	m.t.Helper()
	var s struct {
		B *BackupStats `json:"index_backup"`
	}
	m.statsInto(&s)
	if s.B == nil {
		m.t.Fatalf("stats without index_backup")
	}
	return *s.B
}

// waitBackup waits until both tiers hold every commit so far (lag 0,
// nothing behind) and returns the stats then.
func (m *Mount) waitBackup() BackupStats {
	m.t.Helper()
	var last BackupStats
	err := waitFor(30*time.Second, func() error {
		last = m.backupStats()
		for _, t := range last.Tiers {
			if t.Behind != 0 || t.Seq != last.Seq || t.LagSeconds != 0 {
				return fmt.Errorf("tier %s at seq %d of %d, lag %.1fs (%s)", t.Name, t.Seq, last.Seq, t.LagSeconds, t.LastError)
			}
		}
		return nil
	})
	if err != nil {
		m.t.Fatalf("index backup did not catch up: %v", err)
	}
	return last
}

// separateStores is a config whose stores live outside the data dir, so
// losing the data dir loses only the index.
func separateStores(t *testing.T, extra string) (cfg, primary, safety string) {
	dir := t.TempDir()
	primary, safety = filepath.Join(dir, "primary"), filepath.Join(dir, "safety")
	cfg = fmt.Sprintf("primary:\n  - path: %s\nsafety:\n  - path: %s\nindex_backup:\n  interval: 1s\n%s", primary, safety, extra)
	return cfg, primary, safety
}

// backupTree writes a tree with what an index must remember: nested dirs,
// big and small files, renames, deletes, a hard link, a symlink, xattrs,
// modes and times.
func backupTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a", "b", "c"), 0o755))
	must(os.WriteFile(filepath.Join(root, "big"), randBytes(11, 24<<20+12345), 0o644))
	for i := range 60 {
		must(os.WriteFile(filepath.Join(root, "a", fmt.Sprintf("small%02d", i)), randBytes(uint64(100+i), 100+i*977), 0o640))
	}
	must(os.WriteFile(filepath.Join(root, "a", "b", "c", "deep"), []byte("deep\n"), 0o600))
	must(os.Rename(filepath.Join(root, "a", "small00"), filepath.Join(root, "a", "b", "moved")))
	must(os.Remove(filepath.Join(root, "a", "small01")))
	must(os.Link(filepath.Join(root, "a", "small02"), filepath.Join(root, "hardlink")))
	must(os.Symlink("a/b/c/deep", filepath.Join(root, "symlink")))
	must(unix.Setxattr(filepath.Join(root, "a", "small03"), "user.note", []byte("kept in the index"), 0))
	must(os.Chmod(filepath.Join(root, "a", "small04"), 0o4711))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "a", "small05"), old, old))
	// Overwrite in place, truncate.
	must(os.WriteFile(filepath.Join(root, "a", "small06"), []byte("rewritten"), 0o640))
	must(os.Truncate(filepath.Join(root, "a", "small07"), 10))
}

// copyRef copies a tree with everything cp -a keeps.
func copyRef(t *testing.T, src string) string {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref")
	if out, err := exec.Command("cp", "-a", src, ref).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return ref
}

// sameTree compares two trees: contents (diff -r, links not followed),
// modes, mtimes, xattrs, hard links.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	if out, err := exec.Command("diff", "-r", "--no-dereference", want, got).CombinedOutput(); err != nil {
		t.Fatalf("diff -r %s %s: %v\n%s", want, got, err, out)
	}
	for _, p := range []string{"a/small04", "a/small05", "a/b/moved", "big"} {
		a, err1 := os.Lstat(filepath.Join(want, p))
		b, err2 := os.Lstat(filepath.Join(got, p))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", p, err1, err2)
		}
		if a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("%s: mode %v mtime %v, want %v %v", p, b.Mode(), b.ModTime(), a.Mode(), a.ModTime())
		}
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(got, "a", "small03"), "user.note", buf)
	if err != nil || string(buf[:n]) != "kept in the index" {
		t.Errorf("xattr after restore: %q, %v", buf[:max(n, 0)], err)
	}
	l1, _ := os.Stat(filepath.Join(got, "hardlink"))
	l2, _ := os.Stat(filepath.Join(got, "a", "small02"))
	if l1 == nil || l2 == nil || !os.SameFile(l1, l2) {
		t.Errorf("hardlink and a/small02 are not one file after restore")
	}
}

// disaster mounts with the stores outside the data dir, writes
// backupTree, waits until both tiers hold the index backup of it, then
// kills the daemon and deletes the data dir. It returns the mount and a
// reference copy of the tree.
func disaster(t *testing.T, cfg string) (*Mount, string) {
	t.Helper()
	m := mount(t, withConfig(cfg))
	backupTree(t, m.Path("tree"))
	ref := copyRef(t, m.Path("tree"))
	m.waitBackup()
	m.loseDataDir()
	return m, ref
}

// loseDataDir kills the daemon (kill -9) and deletes the whole data dir.
func (m *Mount) loseDataDir() {
	m.t.Helper()
	m.Kill()
	if err := os.RemoveAll(m.Data); err != nil {
		m.t.Fatal(err)
	}
}

func (m *Mount) restoreCLI(args ...string) string {
	m.t.Helper()
	all := append([]string{"restore", "--config", m.Config, "--data-dir", m.Data}, args...)
	out, errOut, code := CLI(m.t, all...)
	if code != 0 {
		m.t.Fatalf("dualstore %s: exit %d\n%s%s", strings.Join(all, " "), code, out, errOut)
	}
	return out
}

func (m *Mount) fsckClean() {
	m.t.Helper()
	m.Unmount()
	out, errOut, code := CLI(m.t, "fsck", "--config", m.Config, "--data-dir", m.Data)
	if code != 0 {
		m.t.Fatalf("fsck after restore: exit %d\n%s%s", code, out, errOut)
	}
}

// TestRestoreAfterDataDirLoss is the disaster: a tree written, the daemon
// killed, the whole data dir deleted; restore from one tier brings back
// every file, name, link and attribute, and fsck is clean.
func TestRestoreAfterDataDirLoss(t *testing.T) {
	t.Run("from-safety", func(t *testing.T) {
		cfg, _, _ := separateStores(t, "")
		m, ref := disaster(t, cfg)
		// The mount refuses an empty data dir over full stores, and says
		// what to do.
		_, errOut, code := CLI(t, "mount", "--config", m.Config, "--data-dir", m.Data, m.Dir)
		if code == 0 || !strings.Contains(errOut, "dualstore restore") || !strings.Contains(errOut, "can restore the index as of") {
			t.Fatalf("mount over a lost data dir: exit %d\n%s", code, errOut)
		}
		os.RemoveAll(m.Data)
		out := m.restoreCLI("--from", "safety")
		if !strings.Contains(out, "restored the index of filesystem") {
			t.Errorf("restore summary:\n%s", out)
		}
		m.start()
		sameTree(t, ref, m.Path("tree"))
		m.fsckClean()
		// gc refuses to sweep after a restore until told.
		_, errOut, code = CLI(t, "gc", "--config", m.Config, "--data-dir", m.Data)
		if code == 0 || !strings.Contains(errOut, "--after-restore") {
			t.Errorf("gc after restore: exit %d\n%s", code, errOut)
		}
		metaBefore := metaObjects(t, m.Config)
		if _, errOut, code = CLI(t, "gc", "--after-restore", "--config", m.Config, "--data-dir", m.Data); code != 0 {
			t.Errorf("gc --after-restore: exit %d\n%s", code, errOut)
		}
		// gc sweeps chunks the index does not know, never the backup.
		if after := metaObjects(t, m.Config); len(after) < len(metaBefore) || len(metaBefore) == 0 {
			t.Errorf("index backup objects before gc %d, after %d", len(metaBefore), len(after))
		}
		if _, errOut, code = CLI(t, "gc", "--config", m.Config, "--data-dir", m.Data); code != 0 {
			t.Errorf("gc after gc --after-restore: exit %d\n%s", code, errOut)
		}
		// A restore never overwrites an index.
		_, errOut, code = CLI(t, "restore", "--from", "auto", "--config", m.Config, "--data-dir", m.Data)
		if code != 2 || !strings.Contains(errOut, "already holds an index") {
			t.Errorf("restore over an index: exit %d\n%s", code, errOut)
		}
	})
	t.Run("from-primary-safety-wiped", func(t *testing.T) {
		cfg, _, safety := separateStores(t, "")
		m, ref := disaster(t, cfg)
		wipeStore(t, safety)
		m.restoreCLI("--from", "primary")
		m.start()
		sameTree(t, ref, m.Path("tree"))
		m.fsckClean()
	})
	t.Run("s3-safety", func(t *testing.T) {
		srv := startS3(t)
		dir := t.TempDir()
		cfg := fmt.Sprintf("primary:\n  - path: %s\nindex_backup:\n  interval: 1s\n", filepath.Join(dir, "primary")) + s3SafetyConfig(srv)
		m, ref := disaster(t, cfg)
		m.restoreCLI("--from", "safety")
		m.start()
		sameTree(t, ref, m.Path("tree"))
		m.fsckClean()
	})
}

// wipeStore deletes everything a local store holds, keeping the empty
// directory (the store is there, its contents are lost).
func wipeStore(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestoreFsyncWait: with index_backup.fsync_wait, a file fsync'd right
// before kill -9 and the loss of the data dir is restored (the interval is
// long, so only the fsync can have put it there).
func TestRestoreFsyncWait(t *testing.T) {
	cfg, _, _ := separateStores(t, "")
	cfg = strings.Replace(cfg, "interval: 1s", "interval: 120s\n  fsync_wait: true", 1)
	m := mount(t, withConfig(cfg))
	m.waitBackup()
	data := randBytes(5, 3<<20+17)
	f, err := os.Create(m.Path("fsynced"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	f.Close()
	m.loseDataDir()
	m.restoreCLI("--from", "auto")
	m.start()
	got, err := os.ReadFile(m.Path("fsynced"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fsync'd file after restore: %d bytes, %v", len(got), err)
	}
}

// TestRestorePointInTime: --at an earlier time gives the earlier tree;
// --list shows the points.
func TestRestorePointInTime(t *testing.T) {
	cfg, _, _ := separateStores(t, "")
	m := mount(t, withConfig(cfg))
	backupTree(t, m.Path("tree"))
	ref := copyRef(t, m.Path("tree"))
	st := m.waitBackup()
	at := st.Point
	time.Sleep(1100 * time.Millisecond)
	if err := os.RemoveAll(m.Path("tree", "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Path("tree", "later"), []byte("later"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.waitBackup()
	m.loseDataDir()
	list, errOut, code := CLI(t, "restore", "--list", "--config", m.Config, "--data-dir", m.Data)
	if code != 0 || !strings.Contains(list, st.Generation) || strings.Count(list, "\n") < 3 {
		t.Fatalf("restore --list: exit %d\n%s%s", code, list, errOut)
	}
	m.restoreCLI("--from", "auto", "--at", at.Format(time.RFC3339Nano))
	m.start()
	sameTree(t, ref, m.Path("tree"))
	if _, err := os.Stat(m.Path("tree", "later")); err == nil {
		t.Errorf("a file written after the --at point is in the restored tree")
	}
}

// TestRestoreCorruptSegment: the newest segment corrupt in the primary
// tier: auto reads it from safety and says so; primary alone refuses and
// names it.
func TestRestoreCorruptSegment(t *testing.T) {
	cfg, primary, _ := separateStores(t, "")
	m, ref := disaster(t, cfg)
	objs, _ := filepath.Glob(filepath.Join(primary, "_meta", "index", "*", "*", "*.ltx"))
	if len(objs) < 2 {
		t.Fatalf("primary holds %d backup objects: %v", len(objs), objs)
	}
	newest := objs[len(objs)-1]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(newest, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := CLI(t, "restore", "--from", "primary", "--config", m.Config, "--data-dir", m.Data)
	if code == 0 || !strings.Contains(errOut, filepath.Base(newest)) {
		t.Fatalf("restore from the corrupt tier: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(m.Data, "index.db")); err == nil {
		t.Fatalf("a failed restore left an index behind")
	}
	out := m.restoreCLI("--from", "auto")
	if !strings.Contains(out, "read from the other tier") || !strings.Contains(out, filepath.Base(newest)) {
		t.Errorf("auto restore did not report the fallback:\n%s", out)
	}
	m.start()
	sameTree(t, ref, m.Path("tree"))
}

// TestPowerLossRestoredIndex (#19 with #14): writers run, the power is cut
// (the data dir, stores included, on the power-loss layer), and then the
// index is lost too. The index restored from the tiers references no chunk
// the power cut took: the backup ships a point only after the stores were
// synced. Every file of the restored tree reads without an error, a deep
// comparison of the tiers and fsck --deep are clean.
func TestPowerLossRestoredIndex(t *testing.T) {
	cfg := plConfig{"backup", func(string) string { return "index_backup:\n  interval: 1s\n" }}
	m, l := plMount(t, cfg)
	seed := relSeeds(t, 1)[0]
	ws := make([]*plWriter, 2)
	for i := range ws {
		dir := fmt.Sprintf("w%d", i)
		if err := os.Mkdir(m.Path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		ws[i] = &plWriter{dir: dir, pm: newPLModel(m.Dir, dir), rng: relRand(seed, uint64(10+i)), cur: map[string]bool{}}
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(m.Dir, 0) }()
	}
	// Long enough for several backup points while the writers run.
	time.Sleep(4 * time.Second)
	st := m.backupStats()
	plCut(m, l)
	wg.Wait()
	if st.Seq < 2 {
		t.Fatalf("no backup point before the cut: %+v", st)
	}
	l.start(plBinary(t))
	for _, p := range []string{"index.db", "index.db-wal", "index.db-shm", "index-backup.json"} {
		os.Remove(filepath.Join(m.Data, p))
	}
	out, errOut, code := CLI(t, "restore", "--from", "auto", "--config", m.Config, "--data-dir", m.Data)
	if code != 0 {
		t.Fatalf("restore after the power cut: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("restore: %s", strings.TrimSpace(out))
	m.start()
	files := 0
	for _, w := range ws {
		ents, err := os.ReadDir(m.Path(w.dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if _, err := os.ReadFile(m.Path(w.dir, e.Name())); err != nil {
				t.Errorf("%s/%s after restore: %v", w.dir, e.Name(), err)
			}
			files++
		}
	}
	if files == 0 {
		t.Errorf("the restored index holds none of the writers' files")
	}
	t.Logf("%d files read back from the restored index", files)
	plCheckStores(t, m, "after the restore", true)
}

// metaObjects lists the index backup's objects in the local stores a
// separateStores config names.
func metaObjects(t *testing.T, cfgPath string) []string {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "- path: "); ok {
			m, _ := filepath.Glob(filepath.Join(p, "_meta", "index", "*", "*", "*.ltx"))
			out = append(out, m...)
		}
	}
	return out
}
