package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/stores/local"
)

// TestConfigRefusesPlaces: stores and the data dir at / or in a system
// directory, directly or through a symlink (resolved, even where the
// directory does not exist yet), a store that is the data dir or in its
// staging area, the data dir inside a store, two stores with one name.
// Nothing is created: Complete only reads.
func TestConfigRefusesPlaces(t *testing.T) {
	tmp := t.TempDir()
	link := func(name, target string) string {
		p := filepath.Join(tmp, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	toEtc := link("to-etc", "/etc")
	toNew := link("to-new", "/etc/dualstore-test-not-there")
	toRoot := link("to-root", "/")
	chain := link("chain", toEtc)
	data := filepath.Join(tmp, "data")
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"store at /", "primary:\n  - path: /\n", "primary[0].path / is the root directory"},
		{"store in /etc", "primary:\n  - path: /etc/chunks\n", "primary[0].path /etc/chunks is inside /etc"},
		{"store in /usr/local", "safety:\n  - path: /usr/local/chunks\n", "safety[0].path /usr/local/chunks is inside /usr"},
		{"store in /proc", "safety:\n  - path: /proc/chunks\n", "inside /proc"},
		{"store in /run", "safety:\n  - path: /run/chunks\n", "inside /run"},
		{"store in /var/run", "safety:\n  - path: /var/run/chunks\n", "resolves to /run/chunks"},
		{"store symlinked to /etc", "primary:\n  - path: " + toEtc + "\n", "primary[0].path " + toEtc + " (resolves to /etc) is inside /etc"},
		{"store below a symlink to /etc", "primary:\n  - path: " + toEtc + "/chunks\n", "(resolves to /etc/chunks) is inside /etc"},
		{"dangling symlink into /etc", "primary:\n  - path: " + toNew + "\n", "(resolves to /etc/dualstore-test-not-there) is inside /etc"},
		{"symlink to a symlink to /etc", "safety:\n  - path: " + chain + "/x/y\n", "(resolves to /etc/x/y) is inside /etc"},
		{"symlink to /", "safety:\n  - path: " + toRoot + "\n", "(resolves to /) is the root directory"},
		{"data dir in /etc", "data_dir: /etc/dualstore\n", "data_dir /etc/dualstore is inside /etc"},
		{"data dir symlinked to /", "data_dir: " + toRoot + "\n", "data_dir " + toRoot + " (resolves to /) is the root directory"},
		{"store is the data dir", "primary:\n  - path: " + data + "\n", "primary[0].path " + data + " is the data dir"},
		{"store in staging", "safety:\n  - path: " + data + "/staging/s\n", "is inside the data dir's staging area"},
		{"data dir in a store", "primary:\n  - path: " + tmp + "\n", "data_dir " + data + " is inside primary[0].path " + tmp},
		{"one name twice", "primary:\n  - name: disk\n    path: " + tmp + "/p\nsafety:\n  - name: disk\n    path: " + tmp + "/s\n",
			`safety[0].name "disk": primary[0] has that name too`},
		{"a default name taken", "primary:\n  - path: " + tmp + "/p\n  - name: primary-0\n    path: " + tmp + "/q\n",
			`primary[1].name "primary-0": primary[0] has that name too`},
		{"symlinked duplicate", "primary:\n  - path: " + link("p-link", filepath.Join(tmp, "p")) + "\nsafety:\n  - path: " + tmp + "/p\n",
			"are the same directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := tc.yaml
			if !strings.HasPrefix(yaml, "data_dir:") {
				yaml = "data_dir: " + data + "\n" + yaml
			}
			_, err := completeYAML(t, yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Complete = %v, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := os.Lstat("/etc/dualstore-test-not-there"); !os.IsNotExist(err) {
		t.Errorf("a refused config created /etc/dualstore-test-not-there: %v", err)
	}
	// A symlink to an allowed place is followed once: the store uses
	// the resolved path.
	real := filepath.Join(tmp, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := completeYAML(t, "data_dir: "+data+"\nprimary:\n  - path: "+link("ok-link", real)+"/chunks\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Primary[0].Options.(*local.Config).Path; got != filepath.Join(real, "chunks") {
		t.Errorf("the store's path after Complete: %s, want the resolved %s", got, filepath.Join(real, "chunks"))
	}
}

// TestCheckMountpoint: the mount point is known only at mount time; a
// store or the data dir inside it, or it inside a store or the staging
// area, is refused naming the key.
func TestCheckMountpoint(t *testing.T) {
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mntLink := filepath.Join(tmp, "mnt-link")
	if err := os.Symlink(mnt, mntLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml, mnt, want string
	}{
		{"fine", "", mnt, ""},
		{"store inside", "primary:\n  - path: " + mnt + "/store\n", mnt, "primary[0].path " + mnt + "/store is inside the mount point " + mnt},
		{"store inside, mount point a symlink", "safety:\n  - path: " + mnt + "/store\n", mntLink, "safety[0].path " + mnt + "/store is inside the mount point " + mntLink + " (resolves to " + mnt + ")"},
		{"data dir inside", "data_dir: " + mnt + "/data\n", mnt, "data_dir " + mnt + "/data is inside the mount point"},
		{"mount point inside a store", "primary:\n  - path: " + tmp + "/p\n", tmp + "/p/mnt", "the mount point " + tmp + "/p/mnt is inside primary[0].path " + tmp + "/p"},
		{"mount point in staging", "", data + "/staging/m", "inside the data dir's staging area"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := tc.yaml
			if !strings.HasPrefix(yaml, "data_dir:") {
				yaml = "data_dir: " + data + "\n" + yaml
			}
			c, err := completeYAML(t, yaml)
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckMountpoint(tc.mnt)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckMountpoint = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckMountpoint = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
