package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// s3Bucket and s3Prefix are where the S3 tier of these tests keeps its
// chunks.
const (
	s3Bucket = "dualstore"
	s3Prefix = "host-a"
)

// s3SafetyConfig is a config with the local primary in the data dir and an
// S3 safety tier on srv, tuned to notice an outage and its end quickly.
func s3SafetyConfig(srv *s3test.Server) string {
	return fmt.Sprintf(`dual:
  store_timeout: 10s
  backfill_interval: 200ms
safety:
  - type: s3
    endpoint: %s
    bucket: %s
    prefix: %s
    region: %s
    path_style: true
    access_key: %s
    secret_key: %s
    timeout: 5s
    retries: 1
    outage_backoff: 200ms
`, srv.Endpoint(), s3Bucket, s3Prefix, s3test.Region, s3test.AccessKey, s3test.SecretKey)
}

// startS3 starts a versitygw server with the tests' bucket.
func startS3(t *testing.T) *s3test.Server {
	t.Helper()
	srv := s3test.Start(t)
	srv.MakeBucket(s3Bucket)
	return srv
}

// s3Chunks lists the chunk objects of the S3 tier from the server's disk:
// id → path. It fails the test on any object that is not
// <prefix>/<4 hex>/<64 hex>.chunk (or the index backup's, in <prefix>/_meta/).
func s3Chunks(t *testing.T, srv *s3test.Server) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, key := range srv.Objects(s3Bucket, s3Prefix) {
		if strings.HasPrefix(key, s3Prefix+"/_meta/") {
			continue // the index backup's objects, never chunks
		}
		parts := strings.Split(key, "/")
		if len(parts) != 3 || parts[0] != s3Prefix || !chunkName.MatchString(parts[2]) || !strings.HasPrefix(parts[2], parts[1]) || len(parts[1]) != 4 {
			t.Errorf("unexpected object in the bucket: %s", key)
			continue
		}
		out[strings.TrimSuffix(parts[2], ".chunk")] = filepath.Join(srv.BucketDir(s3Bucket), filepath.FromSlash(key))
	}
	return out
}

// checkS3MatchesPrimary checks that the bucket holds exactly the primary
// tier's chunks, each hashing to its name.
func checkS3MatchesPrimary(t *testing.T, m *Mount, srv *s3test.Server) {
	t.Helper()
	objs, prim := s3Chunks(t, srv), m.ChunkFiles(primary)
	if len(objs) != len(prim) || len(objs) == 0 {
		t.Errorf("the bucket holds %d chunk objects, the primary tier %d chunk files", len(objs), len(prim))
	}
	for id, p := range objs {
		if _, ok := prim[id]; !ok {
			t.Errorf("object %s is not a primary chunk", id)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if sum := blake3.Sum256(b); hex.EncodeToString(sum[:]) != id {
			t.Errorf("object %s holds other bytes", p)
		}
	}
	for id := range prim {
		if _, ok := objs[id]; !ok {
			t.Errorf("primary chunk %s is not in the bucket", id)
		}
	}
}

// s3Tree writes n files of varied sizes (1–3 MiB) below dir.
func s3Tree(t *testing.T, dir string, seed uint64, n int) {
	t.Helper()
	for i := range n {
		size := 1<<20 + int(seed*7919+uint64(i)*104729)%(2<<20)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d", i)), randBytes(seed*1000+uint64(i), size))
	}
}

// waitStats polls stats until ok says yes, failing after within.
func (m *Mount) waitStats(within time.Duration, what string, ok func(Stats) bool) Stats {
	m.t.Helper()
	var st Stats
	if err := waitFor(within, func() error {
		if st = m.Stats(); !ok(st) {
			return fmt.Errorf("pending_backfill %d, safety writes %+v", st.PendingBackfill, st.Tiers[safety].Writes)
		}
		return nil
	}); err != nil {
		m.t.Fatalf("%s: %v", what, err)
	}
	return st
}

// TestS3SafetyOutage: a mount with a local primary and an S3 safety tier
// puts every chunk in the bucket; when the S3 server stops in the middle of
// a copy, writes keep succeeding (require: primary), stats show the safety
// errors and the pending backfill; when it is back the backfill drains and
// a deep comparison finds both tiers equal.
func TestS3SafetyOutage(t *testing.T) {
	t.Parallel()
	srv := startS3(t)
	m := mount(t, withConfig(s3SafetyConfig(srv)))
	src := t.TempDir()

	// Before the outage: a first tree lands in both tiers.
	s3Tree(t, filepath.Join(src, "before"), 1, 6)
	runTool(t, "cp", "-r", filepath.Join(src, "before"), m.Path("before"))
	st := m.Stats()
	if st.PendingBackfill != 0 || st.Tiers[safety].Writes.Errors != 0 {
		t.Fatalf("server up: pending_backfill %d, safety write errors %d", st.PendingBackfill, st.Tiers[safety].Writes.Errors)
	}
	if ss := st.Tiers[safety].Stores; len(ss) != 1 || ss[0].Type != "s3" || ss[0].Name != "safety-0" || ss[0].Writes.OK == 0 {
		t.Errorf("safety stores in stats = %+v, want one s3 store safety-0 with writes", ss)
	}
	checkS3MatchesPrimary(t, m, srv)

	// The outage, in the middle of a copy.
	s3Tree(t, filepath.Join(src, "during"), 2, 18)
	before := len(s3Chunks(t, srv))
	cp := exec.Command("cp", "-r", filepath.Join(src, "during"), m.Path("during"))
	out := &syncBuffer{}
	cp.Stdout, cp.Stderr = out, out
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for len(s3Chunks(t, srv)) < before+2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // a poll closer than waitFor's, to stop the server early in the copy; checked below
	}
	select {
	case err := <-cpDone:
		cpDone <- err
		t.Errorf("cp -r finished before the S3 server stopped: the outage did not hit a copy in progress")
	default:
	}
	srv.Stop()
	stoppedAt := time.Now()
	select {
	case err := <-cpDone:
		if err != nil {
			t.Fatalf("cp -r with the S3 tier going down: %v\n%s", err, out.String())
		}
	case <-time.After(actionDeadline):
		_ = cp.Process.Kill()
		t.Fatalf("cp -r did not finish within %s of the S3 server stopping", actionDeadline)
	}
	// And a copy that starts with the server down.
	s3Tree(t, filepath.Join(src, "after"), 3, 6)
	runTool(t, "cp", "-r", filepath.Join(src, "after"), m.Path("after"))
	t.Logf("copies finished %s after the S3 server stopped", time.Since(stoppedAt).Round(time.Millisecond))
	diffTrees(t, src, m.Path())

	st = m.Stats()
	if st.Tiers[safety].Writes.Errors == 0 || st.Tiers[safety].Stores[0].Writes.Errors == 0 {
		t.Errorf("S3 down: safety write errors %d (store %d), want > 0", st.Tiers[safety].Writes.Errors, st.Tiers[safety].Stores[0].Writes.Errors)
	}
	if st.PendingBackfill == 0 {
		t.Errorf("S3 down: pending_backfill 0, want the chunks the safety tier missed")
	}
	if st.Tiers[primary].Writes.Errors != 0 {
		t.Errorf("S3 down: primary write errors %d", st.Tiers[primary].Writes.Errors)
	}
	pending := st.PendingBackfill
	t.Logf("S3 down: %d safety write errors, %d chunks pending", st.Tiers[safety].Writes.Errors, pending)
	// The index backup shows the outage as lag (a point is shipped only
	// once both tiers synced its chunks) and catches up after it.
	if b := m.backupStats(); b.Tiers[1].LagSeconds == 0 {
		t.Errorf("S3 down: index backup lag 0 on %s after writes, want the commits it lacks", b.Tiers[1].Name)
	}

	// Back up: the backfill drains in the running daemon and both tiers
	// agree. During the outage the backfill backed off (up to a minute);
	// the first write both tiers accept again ends the backoff, so a mount
	// in use refills the safety tier at once. (The S3 store itself fails
	// fast for a few seconds after an outage, so the first writes may
	// still miss it.)
	srv.Start()
	restarted := time.Now()
	for i := 0; m.Stats().PendingBackfill > 0; i++ {
		if time.Since(restarted) > 30*time.Second {
			t.Fatalf("pending_backfill %d 30s after the S3 server came back (was %d)", m.Stats().PendingBackfill, pending)
		}
		writeFile(t, m.Path("after", fmt.Sprintf("f%d", i)), randBytes(uint64(5000+i), 64<<10))
		time.Sleep(200 * time.Millisecond) // paces the writes that end the backoff, as a mount in use would: not synchronisation
	}
	t.Logf("backfill of %d chunks drained %s after the S3 server came back, without a remount", pending, time.Since(restarted).Round(time.Millisecond))
	bs := m.waitBackup()
	t.Logf("index backup caught up after the outage: generation %s seq %d", bs.Generation, bs.Seq)
	r := m.Compare(true)
	if r.Differences() != 0 || r.Matches != r.Total || r.Total == 0 {
		t.Errorf("deep compare after the backfill: %s", r.counts())
	}
	if st := m.Stats(); st.UniqueChunks != r.Total {
		t.Errorf("stats unique_chunks %d, compare total %d", st.UniqueChunks, r.Total)
	}
	checkS3MatchesPrimary(t, m, srv)
	if cr := m.Stats().ConsistencyRate; cr == nil || *cr != 1 {
		t.Errorf("consistency_rate after the compare = %v, want 1", cr)
	}

	// The config file shown by the mount names the store, not its secret.
	b, err := os.ReadFile(m.control("config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), s3test.SecretKey) || strings.Contains(string(b), s3test.AccessKey) || !strings.Contains(string(b), srv.Endpoint()) {
		t.Errorf(".dualstore/config shows a credential or lacks the endpoint:\n%s", b)
	}
	if logs := m.Logs(); strings.Contains(logs, s3test.SecretKey) {
		t.Errorf("the daemon logged the S3 secret key")
	}
}

// TestS3Reads: reads with read_preference safety and fastest come through
// S3; with the local primary's chunks deleted every file is still read
// (through the S3 tier), and the primary is healed from it.
func TestS3Reads(t *testing.T) {
	t.Parallel()
	srv := startS3(t)
	m := mount(t, withConfig(s3SafetyConfig(srv)))
	src := filepath.Join(t.TempDir(), "tree")
	s3Tree(t, src, 4, 10)
	writeFile(t, filepath.Join(src, "small"), []byte("a small file: one short chunk\n"))
	writeFile(t, filepath.Join(src, "empty"), nil)
	runTool(t, "cp", "-r", src, m.Path("tree"))
	n := int64(len(m.ChunkFiles(primary)))
	checkS3MatchesPrimary(t, m, srv)

	// Safety preferred: every chunk comes from S3, none from the primary.
	m.Remount() // empty chunk and page caches
	if err := m.Ctl("read-preference safety"); err != nil {
		t.Fatal(err)
	}
	diffTrees(t, src, m.Path("tree"))
	st := m.Stats()
	if st.ReadPreference != "safety" || st.Tiers[safety].Reads.OK < n || st.Tiers[primary].Reads.OK != 0 || st.Fallbacks != 0 {
		t.Errorf("read_preference safety: %q, safety reads %d (want >= %d), primary reads %d, fallbacks %d (want 0)",
			st.ReadPreference, st.Tiers[safety].Reads.OK, n, st.Tiers[primary].Reads.OK, st.Fallbacks)
	}
	if ss := st.Tiers[safety].Stores; len(ss) != 1 || ss[0].Reads.OK < n || ss[0].Reads.Errors != 0 {
		t.Errorf("s3 store reads = %+v, want >= %d ok and no errors", ss, n)
	}

	// Fastest: both tiers are asked, the first verified answer wins; with
	// every other primary chunk gone, those answers can only be S3's.
	m.Unmount()
	removed := int64(0)
	for i, id := range sortedKeys(m.ChunkFiles(primary)) {
		if i%2 == 0 {
			removeChunk(t, m.ChunkPath(primary, id))
			removed++
		}
	}
	m.start()
	if err := m.Ctl("read-preference fastest"); err != nil {
		t.Fatal(err)
	}
	diffTrees(t, src, m.Path("tree"))
	st = m.Stats()
	if st.ReadPreference != "fastest" || st.Tiers[safety].Reads.OK < removed || st.Tiers[safety].Reads.OK+st.Tiers[primary].Reads.OK < n {
		t.Errorf("read_preference fastest, %d of %d primary chunks deleted: %q, reads primary %d + safety %d",
			removed, n, st.ReadPreference, st.Tiers[primary].Reads.OK, st.Tiers[safety].Reads.OK)
	}

	// The local primary loses every chunk: everything is read through S3.
	m.Unmount()
	for _, p := range m.ChunkFiles(primary) {
		removeChunk(t, p)
	}
	m.start()
	diffTrees(t, src, m.Path("tree"))
	st = m.Stats()
	if st.Fallbacks < n || st.Tiers[safety].Reads.OK < n {
		t.Errorf("primary chunks deleted: fallbacks %d, safety reads %d; want >= %d each", st.Fallbacks, st.Tiers[safety].Reads.OK, n)
	}
	// Self-heal put them back into the primary, from S3's verified copies.
	if err := waitFor(20*time.Second, func() error {
		if k := int64(len(m.ChunkFiles(primary))); k < n {
			return fmt.Errorf("%d of %d chunks back in the primary", k, n)
		}
		return nil
	}); err != nil {
		t.Errorf("self-heal from S3: %v", err)
	}
	m.checkChunkIDs(primary)
	if r := m.Compare(true); r.Differences() != 0 || r.Matches != n {
		t.Errorf("deep compare after the self-heal: %s; want %d matches", r.counts(), n)
	}
}

// TestS3Throughput measures the mount with an S3 safety tier against a
// local-only mount: dd of 256 MiB in and out (write includes fsync; reads
// after a remount, so nothing is cached). Only with DUALSTORE_S3_BENCH=1:
// it takes a while and the numbers depend on the machine.
//
//	DUALSTORE_S3_BENCH=1 DUALSTORE_BIN=$PWD/bin/dualstore go test -count=1 -run S3Throughput -v ./integration/
func TestS3Throughput(t *testing.T) {
	if os.Getenv("DUALSTORE_S3_BENCH") == "" {
		t.Skip("set DUALSTORE_S3_BENCH=1 to measure (not part of the normal run)")
	}
	mib := 256
	data := filepath.Join(t.TempDir(), "data")
	writeFile(t, data, randBytes(900, mib<<20))
	runTool(t, "cat", data) // into the page cache, so the source is not what is measured

	dd := func(args ...string) time.Duration {
		start := time.Now()
		runTool(t, "dd", append(args, "bs=1M", "status=none")...)
		return time.Since(start)
	}
	rate := func(d time.Duration) float64 { return float64(mib) * (1 << 20) / d.Seconds() / 1e6 }
	type result struct {
		name        string
		write, read map[string]float64
	}
	var results []result
	for _, variant := range []string{"local-only", "s3-safety"} {
		var m *Mount
		switch variant {
		case "local-only":
			m = mount(t)
		case "s3-safety":
			srv := startS3(t)
			m = mount(t, withConfig(s3SafetyConfig(srv)))
		}
		r := result{name: variant, write: map[string]float64{}, read: map[string]float64{}}
		r.write["dd conv=fsync"] = rate(dd("if="+data, "of="+m.Path("big"), "conv=fsync"))
		for _, pref := range []string{"primary", "safety", "fastest"} {
			m.Remount()
			if err := m.Ctl("read-preference " + pref); err != nil {
				t.Fatal(err)
			}
			r.read[pref] = rate(dd("if="+m.Path("big"), "of=/dev/null"))
		}
		cmpFiles(t, data, m.Path("big"))
		results = append(results, r)
		m.Unmount()
	}
	for _, r := range results {
		keys := make([]string, 0, len(r.read))
		for k := range r.read {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, " read(%s) %.0f MB/s", k, r.read[k])
		}
		t.Logf("%-10s %d MiB: write %.0f MB/s;%s", r.name, mib, r.write["dd conv=fsync"], b.String())
	}
}
