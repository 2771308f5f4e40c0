package integration

// FOPEN_KEEP_CACHE: the kernel keeps a file's page cache across opens
// only while it holds the file's content (fs/keepcache.go).

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// TestKeepCacheRevert: an appending write that fails (the primary store
// turned read-only: its bytes were in the chunker, now lost) reverts the
// file to its last committed content behind the kernel's back, after the
// kernel copied the new bytes into its page cache. The next open must not
// keep that cache, and a descriptor that was open all along must not read
// the lost bytes either. (A failed commit of staged writes keeps them for
// the next flush instead, #15: vfs's TestCommitFailureReverts.)
func TestKeepCacheRevert(t *testing.T) {
	t.Parallel()
	prim := sfTmpfs(t, "64m")
	m := mount(t, withConfig(fmt.Sprintf("primary:\n  - name: small-primary\n    path: %s\n", prim)))
	old, lost := randBytes(901, 300<<10), randBytes(902, 300<<10)
	path := m.Path("f")
	writeFile(t, path, old)
	// Two reads: the first open after the write drops the cache, the
	// second keeps the pages the first read brought in.
	for range 2 {
		if got := readAll(t, path); !bytes.Equal(got, old) {
			t.Fatalf("%s: %d bytes before the failed write, not the content written", path, len(got))
		}
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	runTool(t, "mount", "-o", "remount,ro", prim)
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := out.Write(lost)
	cerr := out.Close()
	if werr == nil && cerr == nil {
		t.Fatalf("the write to a read-only primary store succeeded")
	}
	runTool(t, "mount", "-o", "remount,rw", prim)

	// The descriptor open across the failed write: the revert invalidates
	// the kernel's cache (asynchronously), before any other open would.
	got := make([]byte, len(old)+len(lost)) // room for the lost bytes, if they were read
	withLost := append(append([]byte{}, old...), lost...)
	if err := waitFor(5*time.Second, func() error {
		n, err := reader.ReadAt(got, 0)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:n], old) {
			return fmt.Errorf("a descriptor open across the failed write still reads %d bytes that are not the committed content (the lost write: %v)", n, bytes.Equal(got[:n], withLost))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	if got := readAll(t, path); !bytes.Equal(got, old) {
		t.Errorf("a fresh open after the failed write read %d bytes, not the last committed content (the page cache kept the lost write: %v)", len(got), bytes.Equal(got, withLost))
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
