package integration

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unicode/utf8"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", to tamper with index.db
)

// Bad input: a damaged index.db, damaged chunk files in both tiers,
// garbage written to `.dualstore/ctl`, config entries naming directories
// that are missing or are not directories. Each gets a clear error that
// names the thing, and nothing stored is lost or overwritten. (Fuzz tests
// of the index decoder, the control-command parser and the config parser
// live with those packages.)

// badSnapshot returns path → sha256 of every file below dir (relative
// names), skipping the ones skip says to.
func badSnapshot(t *testing.T, dir string, skip func(rel string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out[rel] = hex.EncodeToString(sum[:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// badStores snapshots the chunk stores of a data dir.
func badStores(t *testing.T, data string) map[string]string {
	t.Helper()
	return badSnapshot(t, data, func(rel string) bool {
		// The chunks; not the index backup (_meta), which a mount adds to.
		return rel != "." && !strings.HasPrefix(rel, primary) && !strings.HasPrefix(rel, safety) ||
			filepath.Base(rel) == "_meta"
	})
}

// badSameFiles reports differences between two snapshots.
func badSameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, h := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s: %s was removed", what, p)
		} else if a != h {
			t.Errorf("%s: %s was changed", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// badCopyDir copies a directory tree (regular files and dirs only).
func badCopyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// badSQL runs statements on an index.db while no daemon has it open.
func badSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestBadInputIndex damages index.db in the ways disks and people do.
// A mount refuses an index it cannot trust with one line naming the file
// (exit 1), and leaves the file and the chunk stores exactly as they were:
// a damaged page too, which SQLite's quick check at open finds (before it,
// the mount came up and answered EIO for what the page held).
func TestBadInputIndex(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	// A filesystem to damage copies of.
	m := mount(t)
	src := t.TempDir()
	data := randBytes(500, 3<<20)
	writeFile(t, filepath.Join(src, "big"), data)
	runTool(t, "cp", filepath.Join(src, "big"), m.Path("big"))
	for i := range 40 {
		writeFile(t, m.Path("dir", fmt.Sprintf("f%02d", i)), []byte(fmt.Sprintf("file %d\n", i)))
	}
	m.Unmount()
	golden := m.Data
	// Everything in the main file (no WAL to mask a damaged page).
	badSQL(t, filepath.Join(golden, "index.db"), "PRAGMA wal_checkpoint(TRUNCATE)")
	for _, s := range []string{"-wal", "-shm"} {
		if err := os.Remove(filepath.Join(golden, "index.db"+s)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	// Refused at mount.
	refusedMounts(t, golden, []indexDamage{
		{"garbage", func(t *testing.T, index string) {
			if err := os.WriteFile(index, randBytes(501, 100000), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"not an SQLite database"}},
		{"truncated", func(t *testing.T, index string) {
			if err := os.Truncate(index, 20000); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"empty", func(t *testing.T, index string) {
			if err := os.Truncate(index, 0); err != nil {
				t.Fatal(err)
			}
		}, []string{"empty"}},
		{"another application's database", func(t *testing.T, index string) {
			if err := os.Remove(index); err != nil {
				t.Fatal(err)
			}
			badSQL(t, index, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO photos (name) VALUES ('a.jpg')")
		}, nil},
		{"header value", func(t *testing.T, index string) {
			badSQL(t, index, "UPDATE header SET value = 'lots' WHERE key = (SELECT key FROM header WHERE key LIKE '%avg%')")
		}, nil},
		{"header row gone", func(t *testing.T, index string) {
			badSQL(t, index, "DELETE FROM header WHERE key = (SELECT key FROM header WHERE key LIKE '%hash%')")
		}, nil},
		{"damaged page", func(t *testing.T, index string) {
			var root int64
			db, err := sql.Open("sqlite", index)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 'dentries'").Scan(&root); err != nil {
				t.Fatal(err)
			}
			db.Close()
			f, err := os.OpenFile(index, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// The whole page of the root's directory (the default page
			// size is 4096).
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), (root-1)*4096); err != nil {
				t.Fatal(err)
			}
		}, []string{"quick check"}},
	})

	// A garbage write-ahead log: SQLite checks each frame's checksum, so
	// garbage is ignored and the committed data is all there.
	t.Run("garbage wal", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		badCopyDir(t, golden, dir)
		if err := os.WriteFile(filepath.Join(dir, "index.db-wal"), randBytes(502, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "index.db-shm"))
		dm := mount(t, withData(dir))
		cmpFiles(t, filepath.Join(src, "big"), dm.Path("big"))
		if ents, err := os.ReadDir(dm.Path("dir")); err != nil || len(ents) != 40 {
			t.Errorf("with a garbage WAL: dir holds %d entries, %v; want 40", len(ents), err)
		}
	})
}

// TestBadInputChunkFiles damages both copies of a chunk (a truncated one
// and one with a valid name and another chunk's bytes): reading it is EIO
// naming the chunk and both stores, a deep compare names the file, a
// repair reports it unrecoverable and copies no bad bytes anywhere, and
// every other file reads back.
func TestBadInputChunkFiles(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	victim, other := randBytes(510, 200<<10), randBytes(511, 5<<20)
	writeFile(t, filepath.Join(src, "victim"), victim)
	writeFile(t, filepath.Join(src, "other"), other)
	runTool(t, "cp", filepath.Join(src, "victim"), filepath.Join(src, "other"), m.Dir)
	vref := m.FileChunks(primary, victim)
	if len(vref) != 1 {
		t.Fatalf("a 200 KiB file (below the 256 KiB minimum chunk size) was stored as %d chunks", len(vref))
	}
	id := vref[0].ID
	oref := m.FileChunks(primary, other)
	m.Unmount()
	pPath, sPath := m.ChunkPath(primary, id), m.ChunkPath(safety, id)
	if err := os.Truncate(pPath, int64(len(victim)/3)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sPath, other[oref[0].Off:oref[0].Off+oref[0].Size], 0o600); err != nil {
		t.Fatal(err)
	}
	badP, _ := os.ReadFile(pPath)
	badS, _ := os.ReadFile(sPath)
	m.start()

	if _, err := os.ReadFile(m.Path("victim")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a file whose only chunk is bad in both tiers: %v, want EIO", err)
	}
	cmpFiles(t, filepath.Join(src, "other"), m.Path("other"))
	if miss := m.sfLogHas(id, "primary-0", "safety-0"); len(miss) > 0 {
		t.Errorf("the log of the failed read does not name %q:\n%s", miss, tailLog(m.Logs(), 10, 300))
	}
	r := m.Compare(true)
	found := false
	for _, d := range r.Details {
		if d.Chunk == id {
			found = true
			if len(d.Files) != 1 || d.Files[0] != "/victim" || d.Class == "match" {
				t.Errorf("deep compare detail for the bad chunk: %+v, want a difference naming /victim", d)
			}
		}
	}
	if !found {
		t.Errorf("deep compare does not report the chunk bad in both tiers: %s", r.counts())
	}
	rr := m.Action("repair")
	if rr.State != "done" || rr.Unrecoverable < 1 {
		t.Errorf("repair: state %s, %s; want done with the bad chunk unrecoverable", rr.State, rr.counts())
	}
	// No bad bytes were copied over: each copy is as it was, or gone.
	for p, was := range map[string][]byte{pPath: badP, sPath: badS} {
		if b, err := os.ReadFile(p); err == nil && !bytes.Equal(b, was) {
			t.Errorf("%s changed after the repair of an unrecoverable chunk (%d bytes, was %d)", p, len(b), len(was))
		}
	}
	for _, r := range oref {
		for _, tier := range tiers {
			if !chunkOK(m.ChunkPath(tier, r.ID), r.ID, other[r.Off:r.Off+r.Size]) {
				t.Errorf("%s chunk %s of an intact file is not intact after the repair", tier, r.ID)
			}
		}
	}
	// Writing the bytes again brings the chunk back: see
	// TestBadInputRestoreLostChunk.
}

// TestBadInputCtl writes garbage to `.dualstore/ctl`: random bytes, huge
// writes, a command split over two writes, and all of it from several
// writers at once while others read stats. Every write is EINVAL, nothing
// starts, stats do not change, the status stays printable, and the mount
// keeps answering.
func TestBadInputCtl(t *testing.T) {
	t.Parallel()
	m := mount(t)
	writeFile(t, m.Path("f"), []byte("data\n"))
	before := withoutUptime(m.StatsRaw())
	ctl := m.control("ctl")
	write := func(chunks ...[]byte) []error {
		f, err := os.OpenFile(ctl, os.O_WRONLY, 0)
		if err != nil {
			return []error{err}
		}
		defer f.Close()
		var errs []error
		for _, c := range chunks {
			_, err := f.Write(c)
			errs = append(errs, err)
		}
		return errs
	}
	rng := rand.New(rand.NewPCG(512, 513))
	var garbage [][]byte
	for range 60 {
		b := make([]byte, 1+rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		garbage = append(garbage, b)
	}
	garbage = append(garbage,
		[]byte("compare\x00deep"), []byte("\xff\xfe\xfd"), []byte("read-preference \xffsafety"),
		bytes.Repeat([]byte("compare "), 1<<17), // 1 MiB
		[]byte("\n\n\n"), []byte("repair\x00"), []byte(strings.Repeat("/", 5000)))
	for _, g := range garbage {
		if errs := write(g); !errors.Is(errs[0], syscall.EINVAL) {
			t.Errorf("writing %d bytes of garbage (%q…) to ctl: %v, want EINVAL", len(g), truncate(string(g), 20), errs[0])
		}
	}
	// One command in two writes is two bad commands.
	for i, err := range write([]byte("comp"), []byte("are\n")) {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("half %d of a command split over two writes: %v, want EINVAL", i, err)
		}
	}
	// Many writers and readers at once.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 50 {
				g := garbage[(w*50+i)%len(garbage)]
				if errs := write(g); !errors.Is(errs[0], syscall.EINVAL) {
					t.Errorf("concurrent garbage write: %v, want EINVAL", errs[0])
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := os.ReadFile(m.control("stats")); err != nil {
					t.Errorf("reading stats during the garbage: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()

	if after := withoutUptime(m.StatsRaw()); fmt.Sprint(after) != fmt.Sprint(before) {
		for k, v := range after {
			if fmt.Sprint(before[k]) != fmt.Sprint(v) {
				t.Errorf("garbage changed stats %s: %v → %v", k, before[k], v)
			}
		}
	}
	if r := m.Report(); r.State != "idle" {
		t.Errorf("garbage started something: compare state %s", r.State)
	}
	status := m.CtlStatus()
	lines := strings.Split(strings.TrimSuffix(status, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "idle") || !strings.HasPrefix(lines[1], "last: error:") {
		t.Errorf("ctl after garbage = %q, want idle and the last error on two lines", status)
	}
	if !utf8.ValidString(status) || strings.ContainsFunc(strings.TrimSuffix(status, "\n"), func(r rune) bool { return r < 0x20 && r != '\n' || r == 0x7f }) {
		t.Errorf("ctl status echoes raw control bytes or invalid UTF-8 from the garbage: %q", status)
	}
	// A path with control characters is refused; a path that does not
	// exist is ENOENT, and named in the status.
	if errs := write([]byte("compare deep /no\x1b[2Jsuch\n")); !errors.Is(errs[0], syscall.EINVAL) {
		t.Errorf("compare of a path holding an escape sequence: %v, want EINVAL", errs[0])
	}
	if errs := write([]byte("compare deep /no-such-dir\n")); !errors.Is(errs[0], syscall.ENOENT) {
		t.Errorf("compare of a missing path: %v, want ENOENT", errs[0])
	}
	if s := m.CtlStatus(); !strings.Contains(s, "no-such-dir") {
		t.Errorf("ctl after a compare of a missing path = %q, want it named", s)
	}
	if b, err := os.ReadFile(m.Path("f")); err != nil || string(b) != "data\n" {
		t.Errorf("a file after the garbage: %q, %v", b, err)
	}
	// Still takes real commands.
	if err := m.Ctl("read-preference safety"); err != nil {
		t.Errorf("a good command after the garbage: %v", err)
	}
	if r := m.Compare(false); r.Differences() != 0 {
		t.Errorf("compare after the garbage: %s", r.counts())
	}
	if logs := m.Logs(); strings.Contains(logs, "\x1b[2J") {
		t.Errorf("the log holds a raw escape sequence from a ctl write")
	}
}

// TestBadInputConfigDirs gives the mount directories that are missing or
// are not directories. A missing store directory of a new filesystem is
// created; one that cannot be (a file in the way), a store path that is a
// file, and a data dir that is a file each fail with one line naming the
// path and exit 1, and leave no new data dir behind.
func TestBadInputConfigDirs(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	writeFile(t, file, []byte("not a directory\n"))

	t.Run("missing store dirs of a new filesystem", func(t *testing.T) {
		p, s := filepath.Join(base, "new", "deep", "p"), filepath.Join(base, "new", "deep", "s")
		m := mount(t, withConfig(fmt.Sprintf("primary:\n  - path: %s\nsafety:\n  - path: %s\n", p, s)))
		writeFile(t, m.Path("x"), randBytes(520, 100000))
		for _, d := range []string{p, s} {
			if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
				t.Errorf("store dir %s: %v, %v; want a 0700 directory", d, st.Mode(), err)
			}
		}
		if len(sfChunkIDs(t, p)) != 1 || len(sfChunkIDs(t, s)) != 1 {
			t.Errorf("the created store dirs do not hold the chunk")
		}
	})
	for _, tc := range []struct {
		name, yaml, dataDir string
		mentions            []string
	}{
		{"store dir below a file", fmt.Sprintf("primary:\n  - path: %s/sub\n", file), "", []string{file + "/sub", "primary-0"}},
		{"store dir is a file", fmt.Sprintf("safety:\n  - path: %s\n", file), "", []string{file, "safety-0", "not a directory"}},
		{"data dir is a file", "", file, []string{file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp, data := filepath.Join(t.TempDir(), "mnt"), filepath.Join(t.TempDir(), "data")
			if tc.dataDir != "" {
				data = tc.dataDir
			}
			if err := os.Mkdir(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			args := []string{"mount", "--data-dir", data}
			if tc.yaml != "" {
				args = append(args, "--config", writeConfig(t, tc.yaml))
			}
			mountMustFail(t, 1, mp, tc.mentions, append(args, mp)...)
			if b, err := os.ReadFile(file); err != nil || string(b) != "not a directory\n" {
				t.Errorf("the file in the way was changed: %q, %v", b, err)
			}
			if tc.dataDir == "" {
				// A refused mount leaves no half-made filesystem behind.
				mustNotExist(t, data)
			}
		})
	}
}

// TestBadInputRestoreLostChunk loses a chunk from both tiers, then
// restores the file from a backup, next to the damaged file (so that the
// index still references the chunk: dedup must not trust that) and over
// it: both read back, and both tiers hold the chunk again.
func TestBadInputRestoreLostChunk(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := filepath.Join(t.TempDir(), "backup")
	data := randBytes(530, 200<<10) // one chunk
	writeFile(t, src, data)
	runTool(t, "cp", src, m.Path("file"))
	refs := m.FileChunks(primary, data)
	m.Unmount()
	for _, tier := range tiers {
		removeChunk(t, m.ChunkPath(tier, refs[0].ID))
	}
	m.start()
	if _, err := os.ReadFile(m.Path("file")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a file whose chunk is in neither tier: %v, want EIO", err)
	}
	// Restore from the backup as a new file, keeping the damaged one (as
	// people do), then read it with cold caches (the kernel keeps the
	// pages cp wrote).
	runTool(t, "cp", src, m.Path("restored"))
	m.Remount()
	runTool(t, "cp", src, m.Path("file"))
	m.Remount()
	for _, name := range []string{"restored", "file"} {
		if b, err := os.ReadFile(m.Path(name)); err != nil {
			t.Errorf("%s, written again from the backup (cp succeeded): %v", name, err)
		} else if string(b) != string(data) {
			t.Errorf("%s, written again from the backup: wrong bytes", name)
		}
	}
	for _, tier := range tiers {
		if !chunkOK(m.ChunkPath(tier, refs[0].ID), refs[0].ID, data) {
			t.Errorf("after writing the lost chunk's bytes again, the %s tier still lacks it", tier)
		}
	}
}

// TestBadInputSetupMistakes makes the mistakes that lose filesystems:
// index.db gone while the stores hold chunks (a new, empty filesystem over
// them would let gc delete every chunk), and a store directory missing for
// an existing filesystem (a typo, a disk not mounted: creating it empty
// would leave that tier holding nothing, silently). Each mount refuses,
// exit 1, naming what is missing, and creates and changes nothing.
func TestBadInputSetupMistakes(t *testing.T) {
	t.Parallel()
	t.Run("index.db missing", func(t *testing.T) {
		m := mount(t)
		writeFile(t, m.Path("precious"), randBytes(531, 1<<20))
		m.Unmount()
		for _, s := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(filepath.Join(m.Data, "index.db"+s)); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		stores := badStores(t, m.Data)
		refused, code, stderr := bugpMountOutcome(t, m.Dir, "mount", "--data-dir", m.Data)
		if !refused {
			t.Errorf("index.db is gone and the stores hold %d chunk files, yet the mount came up with a new, empty filesystem", len(stores))
		} else if code != 1 || !strings.Contains(stderr, "index.db") {
			t.Errorf("refused with exit %d and %q; want exit 1 naming index.db", code, stderr)
		}
		badSameFiles(t, "the chunk stores", stores, badStores(t, m.Data))
		mustNotExist(t, filepath.Join(m.Data, "index.db"))
	})
	t.Run("store dir missing", func(t *testing.T) {
		m := mount(t)
		writeFile(t, m.Path("f"), randBytes(532, 1<<20))
		m.Unmount()
		safe := filepath.Join(m.Data, safety)
		if err := os.Rename(safe, safe+".moved"); err != nil {
			t.Fatal(err)
		}
		refused, code, stderr := bugpMountOutcome(t, m.Dir, "mount", "--data-dir", m.Data)
		if _, err := os.Stat(safe); !os.IsNotExist(err) {
			t.Errorf("the refused mount created the missing store directory %s: %v", safe, err)
		}
		if !refused {
			t.Errorf("the safety store directory %s is missing for a filesystem that references chunks, yet the mount came up (and created it empty)", safe)
		} else if code != 1 || !strings.Contains(stderr, safe) {
			t.Errorf("refused with exit %d and %q; want exit 1 naming %s", code, stderr, safe)
		}
	})
}

// indexDamage is one way to damage the index of a data dir, and what the
// refused mount's message must name besides the index file.
type indexDamage struct {
	name     string
	damage   func(t *testing.T, index string)
	mentions []string
}

// refusedMounts damages a copy of golden's index each way: the mount must
// exit 1 naming the index, leave no mount behind and change no file.
func refusedMounts(t *testing.T, golden string, cases []indexDamage) {
	t.Helper()
	skip := func(rel string) bool { return rel == "lock" || rel == "staging" }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			badCopyDir(t, golden, dir)
			index := filepath.Join(dir, "index.db")
			tc.damage(t, index)
			before := badSnapshot(t, dir, skip)
			mp := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			mountMustFail(t, 1, mp, append([]string{index}, tc.mentions...), "mount", "--data-dir", dir, mp)
			noMountLeft(t, mp, "the refused mount")
			badSameFiles(t, "after the refused mount", before, badSnapshot(t, dir, skip))
		})
	}
}
