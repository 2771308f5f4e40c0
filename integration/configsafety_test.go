package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Careless configs: a store where the mount or the system lives is
// refused before anything is written, naming the key. (What is unsafe
// but workable is warned about: warnings_test.go.)

// TestConfigStoreInsideMountpoint: a store inside the mount point would be
// created there and then hidden by the mount, every chunk write going
// through the mount itself (EIO). The mount is refused (exit 2), naming
// the key, and creates nothing: no store dir in the mount point, no data
// dir.
func TestConfigStoreInsideMountpoint(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	tmp := t.TempDir()
	mp, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("primary:\n  - path: %s\n", filepath.Join(mp, "store")))
	mountMustFail(t, 2, mp, []string{"primary[0].path", "inside the mount point " + mp},
		"mount", "--config", cfg, "--data-dir", data, mp)
	noMountLeft(t, mp, "the refused mount")
	mustNotExist(t, data)
}

// refusedDir makes an empty directory in /run (a system directory,
// refused for stores, and a tmpfs: nothing of the real system is touched
// if the refusal fails) and removes it at the end.
func refusedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/run", "dualstore-it-")
	if err != nil {
		t.Skipf("SKIP: cannot make a directory in /run: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// emptyDir fails the test if dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s, where no store may be, was written to: %v", dir, names)
	}
}

// TestConfigStoreSymlinkRefused: a store directory that is a symlink is
// resolved once, and refused if it points somewhere refused. Today's main
// followed it: with the safety dir of an existing filesystem replaced by
// a link to /etc, its open marker and the chunks self-heal copied back
// went into /etc. The tests point links at /run, refused the same way
// (and harmless to write if the refusal failed), and at a missing
// directory in /etc, which nothing here may create; each is refused
// before anything is written.
func TestConfigStoreSymlinkRefused(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	t.Run("existing filesystem, safety dir replaced by a link", func(t *testing.T) {
		tmp := t.TempDir()
		safetyDir := filepath.Join(tmp, "safety")
		m := mount(t, withConfig(fmt.Sprintf("safety:\n  - path: %s\n", safetyDir)))
		writeFile(t, m.Path("f"), randBytes(700, 300<<10))
		m.Unmount()
		target := refusedDir(t)
		if err := os.Rename(safetyDir, safetyDir+".orig"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, safetyDir); err != nil {
			t.Fatal(err)
		}
		mp := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		mountMustFail(t, 2, mp, []string{"safety[0].path " + safetyDir + " (resolves to " + target + ")", "inside /run"},
			"mount", "--config", m.Config, "--data-dir", m.Data, mp)
		noMountLeft(t, mp, "the refused mount")
		emptyDir(t, target)
	})
	t.Run("new filesystem, link to a directory in /run", func(t *testing.T) {
		tmp := t.TempDir()
		target := refusedDir(t)
		link := filepath.Join(tmp, "primary")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		mp, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, fmt.Sprintf("primary:\n  - path: %s\n", link))
		mountMustFail(t, 2, mp, []string{"primary[0].path " + link + " (resolves to " + target + ")"},
			"mount", "--config", cfg, "--data-dir", data, mp)
		noMountLeft(t, mp, "the refused mount")
		emptyDir(t, target)
		mustNotExist(t, data)
	})
	t.Run("link to a missing directory in /etc", func(t *testing.T) {
		tmp := t.TempDir()
		target := filepath.Join("/etc", filepath.Base(tmp)+"-dualstore-it")
		mustNotExist(t, target)
		link := filepath.Join(tmp, "safety")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		mp, data := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "data")
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := writeConfig(t, fmt.Sprintf("safety:\n  - path: %s\n", link))
		mountMustFail(t, 2, mp, []string{"safety[0].path " + link + " (resolves to " + target + ") is inside /etc"},
			"mount", "--config", cfg, "--data-dir", data, mp)
		noMountLeft(t, mp, "the refused mount")
		mustNotExist(t, target)
		mustNotExist(t, data)
	})
}
