package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// treeNodes counts the nodes in go-fuse's tree below in (a hard-linked
// one once): what the daemon holds for the inodes the kernel knows.
func treeNodes(in *gofs.Inode, seen map[*gofs.Inode]bool) int {
	n := 0
	for _, ch := range in.Children() {
		if !seen[ch] {
			seen[ch] = true
			n += 1 + treeNodes(ch, seen)
		}
	}
	return n
}

// waitNodes polls until go-fuse's tree holds at most max nodes (the
// kernel's FORGETs arrive after its prune, in the background).
func waitNodes(t *testing.T, m *testMount, max int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := treeNodes(m.fs.root.EmbeddedInode(), map[*gofs.Inode]bool{})
		if n <= max {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon holds %d nodes after a walk, want at most %d (MaxNodes %d; %d pruned)",
				n, max, m.fs.opts.MaxNodes, m.fs.nodes.pruned.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manyFiles makes dirs directories of per files each, every file holding
// its own name, and returns their paths.
func manyFiles(t *testing.T, root string, dirs, per int) []string {
	t.Helper()
	var out []string
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range per {
			p := filepath.Join(dir, fmt.Sprintf("f%04d", i))
			if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
	}
	return out
}

// TestNodesPruned: past MaxNodes the kernel is asked to forget the least
// recently used inodes, so the daemon's nodes stay bounded however many
// files are created and walked, and every file still works afterwards
// (looked up again, read, renamed, linked, removed).
func TestNodesPruned(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			const maxNodes, dirs = 100, 4
			m := newTestMountWith(t, func(o *Options) { o.MaxNodes = maxNodes })
			// Entry invalidations, as on kernels before 6.16.
			m.fs.nodes.fallback.Store(fallback)
			paths := manyFiles(t, m.dir, dirs, 100)
			// Directories with entries cached below them stay: at most
			// one per directory above the bound.
			waitNodes(t, m, maxNodes+dirs)
			for _, p := range paths { // a walk: every file looked up again
				if _, err := os.Lstat(p); err != nil {
					t.Fatal(err)
				}
			}
			waitNodes(t, m, maxNodes+dirs)
			if m.fs.nodes.pruned.Load() == 0 {
				t.Fatal("no node was pruned")
			}
			for _, p := range paths {
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, []byte(p)) {
					t.Fatalf("%s after pruning: %q, %v", p, got, err)
				}
			}
			// Open files and the names they are reached by survive
			// pruning.
			f, err := os.Open(paths[0])
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range paths[1:] {
				if _, err := os.Lstat(p); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, len(paths[0]))
			if _, err := f.ReadAt(got, 0); err != nil || string(got) != paths[0] {
				t.Fatalf("open file after pruning: %q, %v", got, err)
			}
			for i, p := range paths[:90] {
				switch i % 3 {
				case 0:
					if err := os.Rename(p, p+".moved"); err != nil {
						t.Fatal(err)
					}
					if got, err := os.ReadFile(p + ".moved"); err != nil || string(got) != p {
						t.Fatalf("renamed %s: %q, %v", p, got, err)
					}
				case 1:
					if err := os.Link(p, p+".link"); err != nil {
						t.Fatal(err)
					}
					if st, err := os.Stat(p); err != nil || st.Sys().(*syscall.Stat_t).Nlink != 2 {
						t.Fatalf("linked %s: %v", p, err)
					}
				case 2:
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				}
			}
			if fallback {
				// An entry invalidation reaches one name of an inode,
				// and go-fuse tells the newest only: a hard-linked
				// inode with both names cached stays.
				return
			}
			waitNodes(t, m, maxNodes+dirs)
		})
	}
}

// TestNodeSize: a node is one per inode the kernel holds; it must stay in
// the 160-byte size class.
func TestNodeSize(t *testing.T) {
	if sz := unsafe.Sizeof(node{}); sz > 160 {
		t.Fatalf("node is %d bytes, want at most 160", sz)
	}
}
