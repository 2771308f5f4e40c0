package integration

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// What other users of an allow_other mount learn from the daemon beyond
// what the kernel's mode checks let them see (fs/access.go).

// privacyJSON parses a control document read by another user.
func privacyJSON(t *testing.T, who, doc string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", who, err, truncate(doc, 400))
	}
	return v
}

// TestPrivacyControlFiles damages the one chunk of a file in a directory
// only root may list, and compares that directory: root reads the file's
// path and chunk id in `.dualstore/compare` (and the subtree in the stats'
// last_compare), while nobody, for whom both documents are world-readable,
// reads the same counts, no path, no chunk id, and "redacted": true. Root
// and nobody read in turns: no reader is served another's snapshot.
func TestPrivacyControlFiles(t *testing.T) {
	t.Parallel()
	m := mount(t, withArgs("--allow-other"))
	permTraversable(t, m.Dir)
	const dir, name = "private-dir", "guessable-name.txt"
	if err := os.Mkdir(m.Path(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	data := []byte("the salary of the boss is 123456\n")
	writeFile(t, m.Path(dir, name), data)
	writeFile(t, m.Path("public"), randBytes(600, 64<<10))
	refs := m.FileChunks(safety, data)
	if len(refs) != 1 {
		t.Fatalf("a %d-byte file in %d chunks, want 1", len(data), len(refs))
	}
	id := refs[0].ID
	removeChunk(t, m.ChunkPath(safety, id))
	r := m.Action("compare /" + dir)
	if r.State != "done" || r.PrimaryOnly != 1 {
		t.Fatalf("compare /%s: state %s, %s; want done with primary_only 1", dir, r.State, r.counts())
	}
	secrets := []string{dir, name, id}

	rootSees := func(when string) {
		t.Helper()
		r := m.Report()
		if len(r.Details) != 1 || r.Details[0].Chunk != id || !slices.Equal(r.Details[0].Files, []string{"/" + dir + "/" + name}) {
			t.Errorf("%s: root reads compare details %+v, want chunk %s of /%s/%s", when, r.Details, id, dir, name)
		}
		raw := m.StatsRaw()
		lc, _ := raw["last_compare"].(map[string]any)
		if lc == nil || lc["path"] != "/"+dir || raw["redacted"] != nil {
			t.Errorf("%s: root reads stats last_compare %v (redacted %v), want path /%s and no redacted mark", when, lc, raw["redacted"], dir)
		}
	}
	nobodySees := func(when string) {
		t.Helper()
		for _, doc := range []string{"compare", "stats"} {
			out := permMust(t, permNobody, permNobody, m.Dir, "cat .dualstore/"+doc)
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s: nobody reads %q in .dualstore/%s:\n%s", when, s, doc, truncate(out, 2000))
				}
			}
			v := privacyJSON(t, "nobody's "+doc, out)
			if v["redacted"] != true {
				t.Errorf("%s: nobody's %s has redacted = %v, want true", when, doc, v["redacted"])
			}
			report := v
			if doc == "stats" {
				report, _ = v["last_compare"].(map[string]any)
				if v["files"] != float64(2) {
					t.Errorf("%s: nobody's stats count %v files, want 2", when, v["files"])
				}
			}
			if report == nil || report["state"] != "done" || report["primary_only"] != float64(1) || report["path"] != nil {
				t.Errorf("%s: nobody's %s report %v, want state done, primary_only 1 and no path", when, doc, report)
			}
			if doc == "compare" {
				if d, ok := report["details"].([]any); !ok || len(d) != 0 {
					t.Errorf("%s: nobody's compare details %v, want []", when, report["details"])
				}
			}
		}
	}
	rootSees("first")
	nobodySees("after root's read")
	rootSees("after nobody's read")
	nobodySees("again")
	// Another user cannot read ctl, whose status names the last command's
	// path, at all.
	permDenied(t, permNobody, permNobody, m.Dir, "cat .dualstore/ctl", syscall.EACCES)
	if st := m.CtlStatus(); !strings.Contains(st, "compare /"+dir) {
		t.Errorf("root reads ctl %q, want the last command compare /%s", st, dir)
	}
}

// TestPrivacyTrustedXattrs: the trusted.* extended attributes are root's,
// as on ext4. Another user does not see their names in listxattr, gets
// ENODATA for their values and EPERM setting or removing one, even on a
// 0666 file; root lists, gets, sets and removes them; user.* works for
// both.
func TestPrivacyTrustedXattrs(t *testing.T) {
	t.Parallel()
	needTool(t, "getfattr", "attr")
	m := mount(t, withArgs("--allow-other"))
	permTraversable(t, m.Dir)
	p := m.Path("f")
	writeFile(t, p, []byte("content\n"))
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"trusted.overlay.secret": "root-only", "user.pub": "public"} {
		if err := unix.Setxattr(p, name, []byte(value), 0); err != nil {
			t.Fatalf("root setting %s: %v", name, err)
		}
	}
	nob := func(script string) string { return permMust(t, permNobody, permNobody, m.Dir, script) }
	if out := nob("getfattr -m - f"); strings.Contains(out, "trusted") || !strings.Contains(out, "user.pub") {
		t.Errorf("nobody lists the xattrs of f as %q, want user.pub and no trusted.*", out)
	}
	if out := nob("getfattr -d -m - f"); strings.Contains(out, "trusted") || strings.Contains(out, "root-only") || !strings.Contains(out, "public") {
		t.Errorf("nobody dumps the xattrs of f as %q, want user.pub only", out)
	}
	// getfattr says "No such attribute" for ENODATA.
	if out, err := permAs(t, permNobody, permNobody, m.Dir, "getfattr -n trusted.overlay.secret f"); err == nil || !strings.Contains(out, "No such attribute") {
		t.Errorf("nobody reading trusted.overlay.secret: %v, %q; want ENODATA (No such attribute)", err, out)
	}
	permDenied(t, permNobody, permNobody, m.Dir, "setfattr -n trusted.mine -v x f", syscall.EPERM)
	permDenied(t, permNobody, permNobody, m.Dir, "setfattr -x trusted.overlay.secret f", syscall.EPERM)
	nob("setfattr -n user.nobody -v hello f && getfattr -n user.nobody --only-values f")

	// Root sees and changes them.
	out := runTool(t, "getfattr", "-m", "-", "--absolute-names", p)
	for _, want := range []string{"trusted.overlay.secret", "user.pub", "user.nobody"} {
		if !strings.Contains(out, want) {
			t.Errorf("root lists %q, want %s in it", out, want)
		}
	}
	if v := getXattr(t, p, "trusted.overlay.secret"); v != "root-only" {
		t.Errorf("root reads trusted.overlay.secret = %q after nobody's attempts, want root-only", v)
	}
	if _, err := unix.Getxattr(p, "trusted.mine", nil); err != unix.ENODATA {
		t.Errorf("trusted.mine after nobody's setfattr: %v, want ENODATA", err)
	}
	if err := unix.Setxattr(p, "trusted.mine", []byte("root"), 0); err != nil {
		t.Errorf("root setting trusted.mine: %v", err)
	}
	if err := unix.Removexattr(p, "trusted.overlay.secret"); err != nil {
		t.Errorf("root removing trusted.overlay.secret: %v", err)
	}
	if v := getXattr(t, p, "trusted.mine"); v != "root" {
		t.Errorf("trusted.mine = %q, want root", v)
	}
	// A file of nobody's own is no different.
	if err := os.Mkdir(m.Path("shared"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.Path("shared"), 0o777); err != nil {
		t.Fatal(err)
	}
	nob("echo mine > shared/own && setfattr -n user.x -v y shared/own")
	if err := unix.Setxattr(m.Path("shared", "own"), "trusted.x", []byte("z"), 0); err != nil {
		t.Fatal(err)
	}
	if out := nob("getfattr -m - shared/own"); strings.Contains(out, "trusted") || !strings.Contains(out, "user.x") {
		t.Errorf("nobody lists the xattrs of its own file as %q, want user.x and not root's trusted.x", out)
	}
	permDenied(t, permNobody, permNobody, m.Dir, "setfattr -x trusted.x shared/own", syscall.EPERM)
}

// getXattr reads one extended attribute as the test (root), failing the
// test on error.
func getXattr(t *testing.T, p, name string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return string(buf[:n])
}
