package integration

import (
	"database/sql"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// Security: chunk ids from the index never become paths outside a store
// root, whatever the index holds; the stores' files are private to the
// user running the mount. (Other users and the control files: see
// TestPermAllowOther and TestPermNoAllowOther. Credentials: see
// TestSecurityCredentials.)

// secExec runs one statement with arguments on an index.db while no
// daemon has it open.
func secExec(t *testing.T, path, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s %v: %v", query, args, err)
	}
}

// secSetChunkID replaces, in the index, the id of the chunks of the file
// at the root called name (in chunks and file_chunks alike) with bad.
func secSetChunkID(t *testing.T, index, name string, bad any) {
	t.Helper()
	const ino = "(SELECT ino FROM dentries WHERE parent = 1 AND name = CAST(? AS BLOB))"
	secExec(t, index, "UPDATE chunks SET id = ? WHERE id IN (SELECT chunk_id FROM file_chunks WHERE ino = "+ino+")", bad, name)
	secExec(t, index, "UPDATE file_chunks SET chunk_id = ? WHERE ino = "+ino, bad, name)
}

// TestSecurityChunkIDs plants hostile chunk ids in index.db (text that is
// a relative path, ids too short and too long, a 32-byte text that is a
// path, bad ids in the pending list) and a directory entry whose name
// holds slashes, then reads, compares, repairs and removes through the
// mount. Every read of such a file is EIO, the daemon survives, and no
// file anywhere outside the chunk stores (nor inside them) is read into a
// file, created, changed or removed: ids are validated before they become
// paths, and a path is only ever the id's hex form inside the root.
func TestSecurityChunkIDs(t *testing.T) {
	t.Parallel()
	m := mount(t)
	victims := map[string]any{
		"victim-text":  "../../../../../escape",
		"victim-short": []byte("../"),
		"victim-long":  []byte(strings.Repeat("../", 16) + "etc/passwd"),
		"victim-32":    "../../../../../../../../etc/pass", // 32 bytes: a valid id, hex inside the root
	}
	for name := range victims {
		writeFile(t, m.Path(name), randBytes(540, 100<<10))
	}
	keep := randBytes(541, 2<<20)
	keepSrc := filepath.Join(t.TempDir(), "keep")
	writeFile(t, keepSrc, keep)
	runTool(t, "cp", keepSrc, m.Path("keep"))
	writeFile(t, m.Path("sub", "renamed"), []byte("x"))
	m.Unmount()

	index := filepath.Join(m.Data, "index.db")
	for name, bad := range victims {
		secSetChunkID(t, index, name, bad)
	}
	secExec(t, index, "INSERT INTO pending (tier, id) VALUES ('safety', ?), ('primary', ?), ('elsewhere', ?)",
		"../../pending-escape", []byte{0}, []byte(strings.Repeat("x", 32)))
	secExec(t, index, "UPDATE dentries SET name = CAST(? AS BLOB) WHERE name = CAST('renamed' AS BLOB)", "a/../../b")

	// Sentinels where a naive join of root and id would land, and a
	// snapshot of everything around the data dir but the index.
	base := filepath.Dir(m.Data)
	for _, p := range []string{filepath.Join(base, "escape.chunk"), filepath.Join(m.Data, "escape.chunk"),
		filepath.Join(m.Data, primary, "escape.chunk"), filepath.Join(base, "pending-escape.chunk")} {
		writeFile(t, p, []byte("sentinel: must never be read as a chunk, changed or removed\n"))
	}
	skip := func(rel string) bool {
		// The index, its lock, and the index backup (its state file and
		// its objects in the stores' _meta) change with every mount.
		return strings.HasPrefix(filepath.Base(rel), "index.db") || filepath.Base(rel) == "lock" ||
			filepath.Base(rel) == "index-backup.json" || filepath.Base(rel) == "_meta"
	}
	before := badSnapshot(t, base, skip)

	m.start()
	for name := range victims {
		_, err := os.ReadFile(m.Path(name))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading %s, whose chunk id in the index is hostile: %v, want EIO", name, err)
		}
	}
	cmpFiles(t, keepSrc, m.Path("keep"))
	if _, err := os.ReadDir(m.Path("sub")); !errors.Is(err, syscall.EIO) {
		t.Errorf("listing a directory whose entry name holds slashes: %v, want EIO", err)
	}
	if r := m.Action("compare deep"); r.State != "done" && r.State != "failed" {
		t.Errorf("compare deep over hostile ids: state %s", r.State)
	}
	if r := m.Action("repair"); r.State != "done" && r.State != "failed" {
		t.Errorf("repair over hostile ids: state %s", r.State)
	}
	for name := range victims {
		// Removing may work or fail with EIO; it must not touch files.
		if err := os.Remove(m.Path(name)); err != nil && !errors.Is(err, syscall.EIO) {
			t.Errorf("removing %s: %v, want success or EIO", name, err)
		}
	}
	// Time for the backfill to have a go at the hostile pending ids (kicked
	// at the start, it leaves no trace to wait for when it finds nothing it
	// can copy): the checks below look for harm done meanwhile, so this
	// sleep is part of the test, not synchronisation.
	time.Sleep(500 * time.Millisecond)
	sfWithin(t, "stats after the hostile ids", 5*time.Second, func() error { return sfStats(m) })
	cmpFiles(t, keepSrc, m.Path("keep"))
	m.Unmount() // must exit 0: checked by Unmount

	badSameFiles(t, "files around the data dir after using hostile chunk ids", before, badSnapshot(t, base, skip))
	if err := os.Remove(filepath.Join(m.Data, primary, "escape.chunk")); err != nil {
		t.Fatal(err)
	}
	m.ChunkFiles(primary) // fails the test on any file not named <4 hex>/<64 hex>.chunk
	m.ChunkFiles(safety)
}

// secNoSecrets fails the test for every secret found in text.
func secNoSecrets(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			i := strings.Index(text, s)
			t.Errorf("%s shows a credential (%q…): …%s…", where, s[:min(4, len(s))], truncate(text[max(0, i-80):], 200))
		}
	}
}

// TestSecurityCredentials mounts with an S3 safety tier whose credentials
// are in the config, logs at debug level, and works the mount (writes,
// reads, a deep compare, a repair, the CLI): the credentials appear in no
// log line, in neither `.dualstore/stats` nor `.dualstore/config`, and in
// no CLI output. A second mount with a wrong secret and a session token
// fails its S3 calls; its errors name the store, not the secret. (Which
// config keys are secret is checked key by key, reflectively, by
// cmd/dualstore TestConfigSecretsClassified: a new key must be classified
// there; run this test again after adding one.)
func TestSecurityCredentials(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	srv.MakeBucket("sec")
	cfg := func(secret, token string) string {
		tok := ""
		if token != "" {
			tok = "    session_token: " + token + "\n"
		}
		return fmt.Sprintf(`dual:
  store_timeout: 5s
  backfill_interval: 200ms
safety:
  - type: s3
    name: s3-safety
    endpoint: %s
    bucket: sec
    prefix: p
    region: %s
    path_style: true
    access_key: %s
    secret_key: %s
%s    timeout: 3s
    retries: 0
`, srv.Endpoint(), s3test.Region, s3test.AccessKey, secret, tok)
	}
	secrets := []string{s3test.SecretKey, s3test.AccessKey}

	m := mount(t, withConfig(cfg(s3test.SecretKey, "")), withArgs("--log-level", "debug"))
	src := filepath.Join(t.TempDir(), "f")
	writeFile(t, src, randBytes(550, 3<<20))
	runTool(t, "cp", src, m.Path("f"))
	m.Remount()
	cmpFiles(t, src, m.Path("f"))
	if err := m.Ctl("read-preference safety"); err != nil {
		t.Fatal(err)
	}
	cmpFiles(t, src, m.Path("f"))
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare with the S3 safety tier: %s", r.counts())
	}
	m.Action("repair")
	for _, name := range []string{"stats", "config", "compare", "ctl"} {
		b, err := os.ReadFile(m.control(name))
		if err != nil {
			t.Fatal(err)
		}
		secNoSecrets(t, ".dualstore/"+name, string(b), secrets...)
		if name == "config" && !strings.Contains(string(b), "REDACTED") {
			t.Errorf(".dualstore/config does not show the credentials as redacted:\n%s", b)
		}
	}
	for _, args := range [][]string{{"stats", m.Dir}, {"stats", "--json", m.Dir}, {"ctl", m.Dir, "read-preference", "primary"}} {
		out, errOut, _ := CLI(t, args...)
		secNoSecrets(t, "dualstore "+strings.Join(args, " "), out+errOut, secrets...)
	}
	m.Unmount()
	secNoSecrets(t, "the daemon's log (debug level)", m.Logs(), secrets...)

	// A wrong secret and a session token: the S3 calls fail.
	const wrong, token = "WRONG-secret-4f1c0e9a7b", "session-token-9d2e7c1a55"
	mp := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := writeConfig(t, cfg(wrong, token))
	data := filepath.Join(t.TempDir(), "data")
	refused, code, stderr := bugpMountOutcomeWith(t, mp, func() {
		// Mounted: make it talk to S3.
		writeFile(t, filepath.Join(mp, "g"), randBytes(551, 1<<20))
		_, _ = os.ReadFile(filepath.Join(mp, ".dualstore", "stats"))
		_, _ = os.ReadFile(filepath.Join(mp, ".dualstore", "config"))
	}, "mount", "--config", bad, "--data-dir", data, "--log-level", "debug")
	t.Logf("mount with a wrong S3 secret: refused %v, exit %d", refused, code)
	secNoSecrets(t, "the output of a mount with a wrong S3 secret", stderr, wrong, token, s3test.AccessKey)
	if refused && !strings.Contains(stderr, "s3-safety") {
		t.Errorf("a mount refused for bad S3 credentials does not name the store: %s", truncate(stderr, 300))
	}
}

// TestSecurityStoreFilesPrivate mounts with a data dir an administrator
// created 0755 and checks that the index (the names, owners and xattrs of
// every file, also in private directories), every chunk file (their
// content), the store directories, staging and the lock are private
// (0600 files, 0700 directories), so that other users can read none of it
// even though they can enter the data dir.
func TestSecurityStoreFilesPrivate(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	m := mount(t, withData(data))
	permTraversable(t, filepath.Join(data, "x"))
	if err := os.Mkdir(m.Path("private"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, m.Path("private", "secret"), randBytes(542, 3<<20))
	writeFile(t, m.Path("private", "salary-review-2026.xlsx"), []byte("secret\n"))
	// A non-sequential write, so that the staging dir is used.
	f, err := os.OpenFile(m.Path("private", "secret"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("patched"), 1000); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(data, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		if rel == "." {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is mode %o, want %o: other users could read it", rel, perm, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tier := range tiers {
		for _, p := range m.ChunkFiles(tier) {
			if out, err := permAs(t, permNobody, permNobody, "/", "cat "+p+" > /dev/null"); err == nil {
				t.Errorf("user nobody can read chunk file %s: %s", p, out)
			}
			break
		}
		permDenied(t, permNobody, permNobody, "/", "ls "+filepath.Join(data, tier), syscall.EACCES)
	}
	index := filepath.Join(data, "index.db")
	if out, err := permAs(t, permNobody, permNobody, "/", "cat "+index+" "+index+"-wal 2>/dev/null | grep -c salary-review"); err == nil {
		t.Errorf("user nobody finds the name of a file in root's 0700 directory in the index (%s matches)", out)
	}
}
