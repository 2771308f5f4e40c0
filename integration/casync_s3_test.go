package integration

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// casyncS3Prefix is the casync primary's prefix: two levels, to check that
// desync joins them as we do (its store URL's path after the bucket).
const casyncS3Prefix = "desync/store"

// casyncS3Config is a config with a casync-layout S3 primary on srv (the
// safety tier is the default, in the data dir).
func casyncS3Config(srv *s3test.Server) string {
	return fmt.Sprintf(`chunker:
  hash: sha512-256
index_backup:
  interval: 1s
primary:
  - name: casync-s3
    type: s3
    endpoint: %s
    bucket: %s
    prefix: %s
    region: %s
    path_style: true
    access_key: %s
    secret_key: %s
    layout: casync
`, srv.Endpoint(), s3Bucket, casyncS3Prefix, s3test.Region, s3test.AccessKey, s3test.SecretKey)
}

// desyncS3URL is the casync primary as a desync store location.
func desyncS3URL(srv *s3test.Server) string {
	return "s3+http://" + srv.Addr() + "/" + s3Bucket + "/" + casyncS3Prefix + "?lookup=path"
}

// desyncS3Env gives desync the server's credentials, the way its README
// says (S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION).
func desyncS3Env(t *testing.T) {
	t.Setenv("S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("S3_SECRET_KEY", s3test.SecretKey)
	t.Setenv("S3_REGION", s3test.Region)
}

var casyncS3Key = regexp.MustCompile(`^` + casyncS3Prefix + `/([0-9a-f]{4})/([0-9a-f]{64})\.cacnk$`)

// casyncS3Objects lists the casync primary's objects from the server's
// disk: chunk id → file, and the meta objects' keys. Every other key fails
// the test; every chunk must be a zstd frame named by the SHA512/256 of
// what it decodes to.
func casyncS3Objects(t *testing.T, srv *s3test.Server) (chunks map[string]string, meta []string) {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	chunks = map[string]string{}
	for _, key := range srv.Objects(s3Bucket, casyncS3Prefix) {
		if strings.HasPrefix(key, casyncS3Prefix+"/_meta/") {
			meta = append(meta, key)
			continue
		}
		m := casyncS3Key.FindStringSubmatch(key)
		if m == nil || !strings.HasPrefix(m[2], m[1]) {
			t.Errorf("unexpected object in the casync store: %s", key)
			continue
		}
		p := filepath.Join(srv.BucketDir(s3Bucket), filepath.FromSlash(key))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := dec.DecodeAll(b, nil)
		if err != nil {
			t.Errorf("%s is not a zstd frame: %v", key, err)
			continue
		}
		if sum := sha512.Sum512_256(plain); hex.EncodeToString(sum[:]) != m[2] {
			t.Errorf("%s holds bytes whose SHA512/256 is %x", key, sum)
		}
		chunks[m[2]] = p
	}
	sort.Strings(meta)
	return chunks, meta
}

// TestCasyncS3Primary: a tree copied into a mount whose primary is a
// casync-layout S3 store is a store desync v0.9.6 reads as its own: every
// file extracts bit-exact from the bucket alone with its exported .caibx
// (desync checks each chunk's SHA512/256 as it reads it), desync's chunk
// server serves the objects as they are, a blob `desync make` writes into
// the bucket survives the mount's gc (the store is shared), and `desync
// prune` with the full export removes that blob but neither a chunk of
// the mount nor the index backup's _meta objects.
//
// `desync verify` is not run: in v0.9.6 it opens local stores only
// (cmd/desync/verify.go: desync.NewLocalStore), so `desync verify -s
// s3+http://…` fails whatever the bucket holds (logged below). Instead
// every file is extracted, and `desync cache` copies every chunk (checking
// each) into a local store that `desync verify` then checks.
func TestCasyncS3Primary(t *testing.T) {
	desync := desyncBin(t)
	srv := startS3(t)
	desyncS3Env(t)
	store := desyncS3URL(srv)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string][]byte{
		"big":        randBytes(1700, 5<<20+77),
		"a/small":    randBytes(1701, 3000),
		"a/b/medium": randBytes(1702, 700<<10),
		"text":       bytes.Repeat([]byte("compressible casync text\n"), 100_000),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data)
	}
	m := mount(t, withConfig(casyncS3Config(srv)))
	runTool(t, "cp", "-a", src+"/.", m.Path())
	diffTrees(t, src, m.Path())
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare: %s", r.counts())
	}
	// The index backup lands in the primary's _meta too.
	if err := waitFor(60*time.Second, func() error {
		if _, meta := casyncS3Objects(t, srv); len(meta) == 0 {
			return fmt.Errorf("no index backup object below %s/_meta/", casyncS3Prefix)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m.Unmount()

	chunks, meta := casyncS3Objects(t, srv)
	if st := len(chunks); st < 5 {
		t.Fatalf("%d .cacnk objects for %d files", st, len(files))
	}
	t.Logf("%d .cacnk objects and %d meta objects below %s/", len(chunks), len(meta), casyncS3Prefix)

	if o, err := exec.Command(desync, "verify", "-s", store).CombinedOutput(); err == nil {
		t.Logf("desync verify -s %s now works (exit 0): use it here\n%s", store, o)
	} else {
		t.Logf("desync verify -s %s (local stores only in v0.9.6): %v: %s", store, err, bytes.TrimSpace(o))
	}

	out := filepath.Join(dir, "export")
	if o, e, code := CLI(t, "export", "--config", m.Config, "--data-dir", m.Data, "/", "-o", out); code != 0 {
		t.Fatalf("dualstore export: exit %d\n%s%s", code, o, e)
	}
	var idxs []string
	for name, data := range files {
		idx := filepath.Join(out, name+".caibx")
		idxs = append(idxs, idx)
		got := filepath.Join(dir, "extracted-"+strings.ReplaceAll(name, "/", "-"))
		if o, err := exec.Command(desync, "extract", "-s", store, idx, got).CombinedOutput(); err != nil {
			t.Errorf("desync extract -s %s %s: %v\n%s", store, name, err, o)
			continue
		}
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("desync extract of %s from the S3 primary alone: %d bytes, not the file (%v)", name, len(b), err)
		}
	}

	// What desync verify can do: copy every chunk of the export into a
	// local store (desync cache checks each as it reads it), verify that.
	cache := filepath.Join(dir, "desync-cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(desync, append([]string{"cache", "-s", store, "-c", cache}, idxs...)...).CombinedOutput(); err != nil {
		t.Errorf("desync cache -s %s: %v\n%s", store, err, o)
	}
	if clean, o := desyncVerify(t, desync, cache); !clean {
		t.Errorf("desync verify of the chunks copied from the S3 primary: %s", o)
	}
	if n := len(casyncChunks(t, cache)); n != len(chunks) {
		t.Errorf("desync cache copied %d chunks, the S3 primary holds %d", n, len(chunks))
	}

	// desync's chunk server serves an object as it is.
	var id string
	for k := range chunks {
		id = k
		break
	}
	b := chunkServerGet(t, desync, store, "/"+id[:4]+"/"+id+".cacnk")
	if want, err := os.ReadFile(chunks[id]); err != nil || !bytes.Equal(b, want) {
		t.Errorf("chunk-server GET of %s: %d bytes, not the object's %d (%v)", id, len(b), len(want), err)
	}

	// desync writes a blob of its own into the bucket: its objects are
	// the layout's too. The mount's gc leaves them alone (the store is
	// shared).
	foreign := filepath.Join(dir, "foreign")
	writeFile(t, foreign, randBytes(1703, 2<<20+5))
	if o, err := exec.Command(desync, "make", "-s", store, foreign+".caibx", foreign).CombinedOutput(); err != nil {
		t.Fatalf("desync make -s %s: %v\n%s", store, err, o)
	}
	withForeign, _ := casyncS3Objects(t, srv)
	if len(withForeign) <= len(chunks) {
		t.Fatalf("desync make added no object: %d, were %d", len(withForeign), len(chunks))
	}
	m.Remount()
	if r := m.Action("gc"); r.State != "done" {
		t.Errorf("gc: %+v", r)
	}
	m.Unmount()
	if after, _ := casyncS3Objects(t, srv); len(after) != len(withForeign) {
		t.Errorf("gc removed objects from the shared casync store: %d, were %d", len(after), len(withForeign))
	}

	// prune with the full export removes desync's blob only: no chunk a
	// file needs, no meta object.
	if o, err := exec.Command(desync, append([]string{"prune", "-s", store, "--yes"}, idxs...)...).CombinedOutput(); err != nil {
		t.Fatalf("desync prune -s %s: %v\n%s", store, err, o)
	}
	chunks2, meta2 := casyncS3Objects(t, srv)
	if len(chunks2) != len(chunks) {
		t.Errorf("desync prune with the full export: %d .cacnk objects, were %d (and %d with desync's blob)", len(chunks2), len(chunks), len(withForeign))
	}
	for id := range chunks {
		if _, ok := chunks2[id]; !ok {
			t.Errorf("desync prune removed %s, a chunk of the export", id)
		}
	}
	if strings.Join(meta2, "\n") != strings.Join(meta, "\n") {
		t.Errorf("desync prune changed the meta objects:\nbefore %v\nafter  %v", meta, meta2)
	}
	if o, e, code := CLI(t, "fsck", "--deep", "--config", m.Config, "--data-dir", m.Data); code != 0 {
		t.Errorf("fsck --deep after desync prune: exit %d\n%s%s", code, o, e)
	}
	m.Remount()
	diffTrees(t, src, m.Path())
}

// TestCasyncS3CorruptChunk: in a casync-layout S3 primary, an object that
// holds the chunk's bytes uncompressed (no zstd frame: desync would refuse
// it) and one with bit rot are both corrupt: reads through the mount
// return the right bytes from the safety tier, and the heal writes both
// back as zstd frames.
func TestCasyncS3CorruptChunk(t *testing.T) {
	srv := startS3(t)
	src := filepath.Join(t.TempDir(), "f")
	writeFile(t, src, randBytes(1710, 6<<20))
	m := mount(t, withConfig(casyncS3Config(srv)))
	runTool(t, "cp", src, m.Path("f"))
	m.Unmount()

	chunks, _ := casyncS3Objects(t, srv)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks for 6 MiB", len(chunks))
	}
	ids := make([]string, 0, len(chunks))
	for id := range chunks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	raw, rot := ids[0], ids[1]
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := os.ReadFile(chunks[raw])
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dec.DecodeAll(frame, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	key := casyncS3Prefix + "/" + raw[:4] + "/" + raw + ".cacnk"
	if _, err := srv.Client().PutObject(t.Context(), s3Bucket, key, bytes.NewReader(plain), int64(len(plain)),
		minio.PutObjectOptions{DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	corruptChunk(t, chunks[rot])

	m.Remount()
	cmpFiles(t, src, m.Path("f"))
	if err := waitFor(20*time.Second, func() error {
		if st := m.Stats(); st.Fallbacks < 2 || st.SelfHeals < 2 {
			return fmt.Errorf("fallbacks %d, self_heals %d, want 2 each", st.Fallbacks, st.SelfHeals)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if r := m.Compare(true); r.Differences() != 0 {
		t.Errorf("deep compare after the heal: %s", r.counts())
	}
	m.Unmount()
	// Every object is a good frame again (casyncS3Objects checks).
	if after, _ := casyncS3Objects(t, srv); len(after) != len(chunks) {
		t.Errorf("%d chunk objects after the heal, were %d", len(after), len(chunks))
	}
}

// TestCasyncS3RefusesBlake3: a casync-layout S3 store with chunker.hash
// blake3 is refused at mount with one line naming the store and the key.
func TestCasyncS3RefusesBlake3(t *testing.T) {
	requireFUSE(t)
	srv := startS3(t)
	dir := t.TempDir()
	mp, data := filepath.Join(dir, "mnt"), filepath.Join(dir, "data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, strings.Replace(casyncS3Config(srv), "sha512-256", "blake3", 1))
	mountMustFail(t, 2, mp, []string{`primary[0] (store "casync-s3")`, "chunker.hash: sha512-256", "blake3"},
		"mount", "--data-dir", data, "--config", cfg, mp)
	mustNotExist(t, data)
	if objs := srv.Objects(s3Bucket, casyncS3Prefix); len(objs) != 0 {
		t.Errorf("the refused mount wrote %v", objs)
	}
}

// TestCasyncS3ExportImport: a default (BLAKE3) mount exports a file online
// into a desync S3 store (--to-store s3+http://…), desync extracts it from
// there, and `dualstore import` makes it a file of the mount again from
// that S3 store, bit-exact; a corrupt object aborts the import.
func TestCasyncS3ExportImport(t *testing.T) {
	desync := desyncBin(t)
	srv := startS3(t)
	desyncS3Env(t)
	store := desyncS3URL(srv)
	dir := t.TempDir()
	m := mount(t)
	data := randBytes(1710, 4<<20+321)
	writeFile(t, m.Path("f"), data)
	idx := filepath.Join(dir, "f.caibx")
	if o, e, code := CLI(t, "export", "--to-store", store, m.Path("f"), "-o", idx); code != 0 {
		t.Fatalf("export --to-store %s: exit %d\n%s%s", store, code, o, e)
	}
	chunks, _ := casyncS3Objects(t, srv)
	if len(chunks) == 0 {
		t.Fatal("export --to-store wrote no .cacnk object")
	}
	got := filepath.Join(dir, "got")
	if o, err := exec.Command(desync, "extract", "-s", store, idx, got).CombinedOutput(); err != nil {
		t.Fatalf("desync extract -s %s: %v\n%s", store, err, o)
	}
	cmpBytes(t, "desync extract", got, data)

	if o, e, code := CLI(t, "import", idx, "--store", store, m.Path("back")); code != 0 {
		t.Fatalf("import --store %s: exit %d\n%s%s", store, code, o, e)
	}
	cmpBytes(t, "imported", m.Path("back"), data)

	var id, file string
	for id, file = range chunks {
		break
	}
	if err := os.WriteFile(file, []byte("not zstd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := CLI(t, "import", idx, "--store", store, m.Path("back2")); code == 0 || !strings.Contains(e, id) {
		t.Errorf("import with a corrupt object: exit %d, want an error naming %s\n%s", code, id, e)
	}
	if _, err := os.Lstat(m.Path("back2")); !os.IsNotExist(err) {
		t.Errorf("a failed import left back2: %v", err)
	}
}
