package integration

import (
	"bytes"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// opsCreate and opsModify run, with real tools, both in the mount and in
// a reference directory on plain disk; the two trees must then be equal
// byte for byte. $SRC holds the input files.
const opsCreate = `
cp "$SRC/big" big
cp "$SRC/small" small
mkdir -p a b c/d
cp small a/x
mv a/x a/x2
mv a/x2 b/x3
printf 'old\n' > b/victim
cp "$SRC/mid" a/over
mv a/over b/victim
mkdir -p tree/s1/s2
printf 'deep\n' > tree/s1/s2/f
cp small tree/s1/g
mv tree c/d/moved
mv c/d c/e
mkdir gone gone/sub
printf x > gone/f
cp small gone/sub/g
rm -r gone
cp small rmme
rm rmme
cp "$SRC/mid" t_down
truncate -s 1000000 t_down
cp "$SRC/mid" t_up
truncate -s 4000000 t_up
cp "$SRC/mid" t_both
truncate -s 300000 t_both
truncate -s 2000000 t_both
cp small t_zero
truncate -s 0 t_zero
printf 'line one\n' >> app
printf 'line two\n' >> app
cp "$SRC/mid" app2
printf 'tail one\n' >> app2
printf 'tail two\n' >> app2
dd if="$SRC/patch" of=sparse bs=1M seek=20 status=none
cp small h1
ln h1 a/h2
printf 'through h2\n' >> a/h2
ln -s b/victim sl
mv sl a/sl2
`

// opsModify runs after a remount: the files it changes must be loaded from
// their chunks.
const opsModify = `
dd if="$SRC/patch" of=big bs=4096 seek=777 conv=notrunc status=none
dd if="$SRC/patch" of=big bs=1 seek=5000001 count=3333 conv=notrunc status=none
dd if="$SRC/patch" of=big bs=65536 seek=200 conv=notrunc status=none
printf 'line three\n' >> app
printf 'tail three\n' >> app2
mv b/x3 b/victim
mv c/e/moved top
truncate -s 123457 t_up
dd if="$SRC/patch" of=t_down bs=1000 seek=999 count=10 conv=notrunc status=none
rm -r c
printf 'through h1\n' >> h1
dd if="$SRC/patch" of=a/h2 bs=1000 seek=3 count=2 conv=notrunc status=none
`

func runOps(t *testing.T, dir, src, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-exc", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SRC="+src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %v\n%s", dir, err, out)
	}
}

// countFiles returns the regular files (inodes: hard links count once)
// and their total size below root.
func countFiles(t *testing.T, root string) (n, size int64) {
	t.Helper()
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			st, err := d.Info()
			if err != nil {
				return err
			}
			if ino := st.Sys().(*syscall.Stat_t).Ino; !seen[ino] {
				seen[ino] = true
				n++
				size += st.Size()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

// readRange returns bytes [from, to) of a file.
func readRange(t *testing.T, p string, from, to int64) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil {
		t.Fatalf("reading %s [%d, %d): %v", p, from, to, err)
	}
	return b
}

// TestFileOperations applies mv, rm, rm -r, truncate, >>, ln and dd
// (seek, conv=notrunc, sparse) to files in the mount and to a reference
// copy on plain disk, and compares the two byte for byte, across
// remounts; open files outlive their names; removing everything leaves no
// file and no referenced chunk.
func TestFileOperations(t *testing.T) {
	t.Parallel()
	m := mount(t)
	src := t.TempDir()
	ref := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), randBytes(30, 12<<20))
	writeFile(t, filepath.Join(src, "mid"), randBytes(31, 1536<<10))
	writeFile(t, filepath.Join(src, "small"), randBytes(32, 100<<10))
	writeFile(t, filepath.Join(src, "patch"), randBytes(33, 256<<10))

	check := func(when string) {
		t.Helper()
		diffTrees(t, ref, m.Dir)
		n, size := countFiles(t, ref)
		if st := m.Stats(); st.Files != n || st.LogicalBytes != size {
			t.Errorf("%s: stats files %d logical_bytes %d, want %d and %d", when, st.Files, st.LogicalBytes, n, size)
		}
	}
	zeros := func(p string, from, to int64) {
		t.Helper()
		if b := readRange(t, p, from, to); !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("%s: bytes [%d, %d) are not all zero", p, from, to)
		}
	}

	runOps(t, ref, src, opsCreate)
	runOps(t, m.Dir, src, opsCreate)
	check("after creating")
	zeros(m.Path("t_both"), 300000, 2000000)
	zeros(m.Path("t_up"), 1536<<10, 4000000)
	zeros(m.Path("sparse"), 0, 20<<20)
	cmpFiles(t, filepath.Join(src, "mid"), m.Path("b/victim"))
	for _, gone := range []string{"a/x", "a/x2", "a/over", "tree", "c/d", "gone", "rmme"} {
		if _, err := os.Lstat(m.Path(gone)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it gone", gone, err)
		}
	}

	m.Remount()
	check("after remount")
	runOps(t, ref, src, opsModify)
	runOps(t, m.Dir, src, opsModify)
	check("after modifying")
	m.Remount()
	check("after the second remount")
	zeros(m.Path("big"), 12<<20, 200*65536)
	var h1, h2 syscall.Stat_t
	if err := syscall.Stat(m.Path("h1"), &h1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(m.Path("a/h2"), &h2); err != nil {
		t.Fatal(err)
	}
	if h1.Ino != h2.Ino || h1.Nlink != 2 || h2.Nlink != 2 {
		t.Errorf("hard links h1, a/h2: inodes %d, %d, nlink %d, %d; want one inode with nlink 2", h1.Ino, h2.Ino, h1.Nlink, h2.Nlink)
	}

	// An open file outlives its name, replaced (mv over it) or removed.
	type openFile struct {
		name string
		f    *os.File
		want []byte
	}
	var open []openFile
	for _, name := range []string{"b/victim", "t_down"} {
		want, err := os.ReadFile(filepath.Join(ref, name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(m.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, openFile{name, f, want})
	}
	runOps(t, ref, src, "mv app2 b/victim\nrm t_down\n")
	runOps(t, m.Dir, src, "mv app2 b/victim\nrm t_down\n")
	for _, o := range open {
		got, err := io.ReadAll(o.f)
		if err != nil || !bytes.Equal(got, o.want) {
			t.Errorf("reading %s, replaced or removed, through a descriptor opened before: %v, %d bytes, equal %v", o.name, err, len(got), bytes.Equal(got, o.want))
		}
		o.f.Close()
	}
	wantFiles, wantSize := countFiles(t, ref)
	// The kernel releases files in the background.
	if err := waitFor(10*time.Second, func() error {
		if st := m.Stats(); st.Files != wantFiles || st.LogicalBytes != wantSize {
			return fmt.Errorf("stats files %d logical_bytes %d, want %d and %d", st.Files, st.LogicalBytes, wantFiles, wantSize)
		}
		return nil
	}); err != nil {
		t.Errorf("after closing replaced and removed files: %v", err)
	}
	diffTrees(t, ref, m.Dir)

	runTool(t, "sh", "-c", "rm -r "+m.Dir+"/*")
	if ents, err := os.ReadDir(m.Dir); err != nil || len(ents) != 0 {
		t.Errorf("after rm -r of everything: %d entries (%v)", len(ents), err)
	}
	st := m.Stats()
	if st.Files != 0 || st.LogicalBytes != 0 || st.UniqueChunks != 0 || st.UniqueBytes != 0 {
		t.Errorf("after rm -r of everything: stats files %d logical_bytes %d unique_chunks %d unique_bytes %d, want all 0",
			st.Files, st.LogicalBytes, st.UniqueChunks, st.UniqueBytes)
	}
}
