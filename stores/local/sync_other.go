//go:build !linux

package local

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// syncFS makes every file and directory under dir durable. Without
// syncfs(2) that takes an fsync of each, which is slow but correct.
func syncFS(dir *os.File) error {
	return filepath.WalkDir(dir.Name(), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temp file renamed or a chunk deleted meanwhile
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// fsMagic cannot tell the filesystem where statfs(2) has no f_type; auto
// then resolves to fsync, which beats syncFS's walk of the whole store.
func fsMagic(*os.File) (uint32, error) { return 0, errors.ErrUnsupported }

// startWriteback is a no-op where sync_file_range(2) does not exist.
func startWriteback(*os.File) {}

// readWhole reads the first size bytes of f (fewer if it shrank).
func readWhole(f *os.File, size int, rb *readBuf) ([]byte, error) { return readPlain(f, size, rb) }
