package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyMount: `mount --read-only` (fstab's ro) serves the tree as
// it is and refuses every change with EROFS, the kernel's "Read-only
// file system", writes to ctl included (the CLI's commands go through
// an ioctl instead, gc refused); /proc/mounts says ro; the
// stats say read_only and the background gc is off. Reads still heal a
// corrupt copy from the other tier. A read-write mount afterwards finds
// the tree unchanged.
func TestReadOnlyMount(t *testing.T) {
	t.Parallel()
	needTool(t, "setfattr", "attr")
	ref := t.TempDir()
	big := randBytes(2401, 3<<20)
	writeFile(t, filepath.Join(ref, "big"), big)
	writeFile(t, filepath.Join(ref, "dir", "small"), []byte("small file\n"))
	if err := os.Symlink("big", filepath.Join(ref, "link")); err != nil {
		t.Fatal(err)
	}
	m := mount(t)
	runTool(t, "cp", "-a", ref+"/.", m.Dir)
	refs := m.FileChunks(primary, big)
	m.Unmount()
	corruptChunk(t, m.ChunkPath(primary, refs[0].ID))

	m.args = append(m.args, "--metrics-addr", "127.0.0.1:0", "--read-only")
	m.start()
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	ro := false
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == m.Dir {
			ro = strings.HasPrefix(f[3], "ro,")
		}
	}
	if !ro {
		t.Errorf("%s is not ro in /proc/self/mounts:\n%s", m.Dir, mounts)
	}
	diffTrees(t, ref, m.Dir)
	m.waitHealed(primary, big, refs[:1])

	for _, c := range [][]string{
		{"sh", "-c", "echo x > " + m.Path("new")},
		{"sh", "-c", "echo x >> " + m.Path("big")},
		{"truncate", "-s", "0", m.Path("dir", "small")},
		{"rm", m.Path("dir", "small")},
		{"rmdir", m.Path("dir")},
		{"mkdir", m.Path("dir2")},
		{"mv", m.Path("big"), m.Path("big2")},
		{"ln", m.Path("big"), m.Path("hard")},
		{"ln", "-s", "big", m.Path("link2")},
		{"chmod", "600", m.Path("big")},
		{"touch", m.Path("big")},
		{"setfattr", "-n", "user.k", "-v", "v", m.Path("big")},
		{"sh", "-c", "echo compare > " + m.control("ctl")},
	} {
		if out := toolFails(t, c[0], c[1:]...); !strings.Contains(out, "Read-only file system") {
			t.Errorf("%q: %q, want EROFS (Read-only file system)", c, out)
		}
	}
	// Control commands reach a read-only mount through the ioctl the CLI
	// falls back to: a compare runs (and finds the healed tiers equal),
	// the read preference switches; gc, which removes chunks, is refused.
	var r map[string]any
	if code, errOut := maintJSON(t, &r, "compare", "--deep", "--wait", m.Dir); code != 0 || r["state"] != "done" || r["matches"] != r["total"] {
		t.Errorf("compare --deep --wait on the read-only mount: exit %d, %v\n%s", code, r, errOut)
	}
	if out, errOut, code := CLI(t, "ctl", m.Dir, "read-preference", "safety"); code != 0 || !strings.Contains(out, "last: read-preference: safety") {
		t.Errorf("ctl read-preference safety on the read-only mount: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := CLI(t, "gc", m.Dir); code == 0 || !strings.Contains(errOut, "read-only file system") {
		t.Errorf("gc on the read-only mount: exit %d, want a failure naming EROFS\n%s%s", code, out, errOut)
	}
	st := m.StatsRaw()
	if st["read_preference"] != "safety" {
		t.Errorf("read_preference %v after the ctl command, want safety", st["read_preference"])
	}
	if st["read_only"] != true {
		t.Errorf("stats read_only = %v, want true", st["read_only"])
	}
	if agc, _ := st["auto_gc"].(map[string]any); agc["enabled"] != false {
		t.Errorf("stats auto_gc = %v, want enabled false on a read-only mount", agc)
	}
	if out, errOut, code := CLI(t, "stats", m.Dir); code != 0 || !strings.Contains(out, "read-only") {
		t.Errorf("dualstore stats: exit %d, does not say read-only:\n%s%s", code, out, errOut)
	}
	if v := scrapeMetrics(t, m.metricsAt()).value(t, "dualstore_read_only"); v != 1 {
		t.Errorf("dualstore_read_only = %v, want 1", v)
	}

	m.args = m.args[:len(m.args)-3]
	m.Remount()
	diffTrees(t, ref, m.Dir)
	writeFile(t, m.Path("new"), []byte("read-write again\n"))
}
