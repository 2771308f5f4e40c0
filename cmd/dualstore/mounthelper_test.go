package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountHelperArgs: mount(8)'s helper command line, as libmount builds
// it (SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE]), becomes `dualstore
// mount` arguments: the source names the config or the data dir, every
// mount flag is an option, mount(8)'s and systemd's own options are
// dropped, and what dualstore cannot do is refused naming the option.
func TestMountHelperArgs(t *testing.T) {
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "photos.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: /var/lib/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	head := func(source string) string { return "mount --fsname=" + source + " " }
	for _, tc := range []struct {
		name string
		argv []string
		want string // the arguments joined by spaces, or the error
		err  bool
	}{
		{"config as source", []string{cfg, "/mnt/p", "-o", "rw,allow_other,_netdev"},
			head(cfg) + "--allow-other --config=" + cfg + " -- /mnt/p", false},
		{"data dir as source", []string{data, "/mnt/p"},
			head(data) + "--data-dir=" + data + " -- /mnt/p", false},
		{"config option, any source", []string{"photos", "/mnt/p", "-o", "config=" + cfg + ",nofail"},
			head("photos") + "--config=" + cfg + " -- /mnt/p", false},
		{"values and both spellings", []string{cfg, "/mnt/p", "-o", "cache_mb=256,log-file=/var/log/p.log,log_level=info,read_preference=safety,write_to_both=false"},
			head(cfg) + "--cache-mb=256 --log-file=/var/log/p.log --log-level=info --read-preference=safety --write-to-both=false --config=" + cfg + " -- /mnt/p", false},
		{"what mount(8) and systemd pass along", []string{cfg, "/mnt/p", "-o", "defaults,rw,auto,noauto,user,users,nouser,user=bob,owner,group,nosuid,nodev,exec,async,x-systemd.automount,comment=x"},
			head(cfg) + "--config=" + cfg + " -- /mnt/p", false},
		{"atime options", []string{cfg, "/mnt/p", "-o", "noatime,nodiratime,relatime,lazytime,allow_other"},
			head(cfg) + "--allow-other --config=" + cfg + " -- /mnt/p", false},
		{"noexec", []string{cfg, "/mnt/p", "-o", "noexec,nosuid,nodev,user"},
			head(cfg) + "--noexec --config=" + cfg + " -- /mnt/p", false},
		{"flags", []string{cfg, "/mnt/p", "-sfnv", "-t", "fuse.dualstore", "-oallow_other"},
			head(cfg) + "--allow-other --config=" + cfg + " -- /mnt/p", false},
		{"several -o", []string{cfg, "/mnt/p", "-o", "allow_other", "-o", "cache_mb=8"},
			head(cfg) + "--allow-other --cache-mb=8 --config=" + cfg + " -- /mnt/p", false},
		{"quoted value", []string{cfg, "/mnt/p", "-o", `metrics_addr="127.0.0.1:9567",allow_other`},
			head(cfg) + "--metrics-addr=127.0.0.1:9567 --allow-other --config=" + cfg + " -- /mnt/p", false},
		{"ro", []string{cfg, "/mnt/p", "-o", "ro,nosuid"}, head(cfg) + "--read-only --config=" + cfg + " -- /mnt/p", false},
		{"read_only", []string{cfg, "/mnt/p", "-o", "read_only"}, head(cfg) + "--read-only --config=" + cfg + " -- /mnt/p", false},
		{"suid", []string{cfg, "/mnt/p", "-o", "suid"}, "option suid: dualstore always mounts nosuid", true},
		{"unknown", []string{cfg, "/mnt/p", "-o", "bogus=1"}, "unknown option bogus=1", true},
		{"unknown, sloppy", []string{cfg, "/mnt/p", "-s", "-o", "bogus=1"}, head(cfg) + "--config=" + cfg + " -- /mnt/p", false},
		{"not an option", []string{cfg, "/mnt/p", "-o", "daemon"}, "unknown option daemon", true},
		{"fsname is the source", []string{cfg, "/mnt/p", "-o", "fsname=x"}, "unknown option fsname=x", true},
		{"needs a value", []string{cfg, "/mnt/p", "-o", "cache_mb"}, "option cache_mb needs a value", true},
		{"source neither", []string{filepath.Join(tmp, "nope.yaml"), "/mnt/p"}, "source " + tmp + "/nope.yaml: not a config file or a data dir", true},
		{"other type", []string{cfg, "/mnt/p", "-t", "fuse.sshfs"}, "-t fuse.sshfs: this helper mounts type fuse.dualstore", true},
		{"namespace", []string{cfg, "/mnt/p", "-N", "/proc/1/ns/mnt"}, "mounting in another namespace is not supported", true},
		{"one argument", []string{cfg}, "want SOURCE and DIR, got 1 arguments", true},
		{"unknown flag", []string{cfg, "/mnt/p", "-x"}, "unknown flag -x", true},
		{"unbalanced quote", []string{cfg, "/mnt/p", "-o", `config="a`}, "unbalanced double quote", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseHelperArgs(tc.argv)
			var args []string
			if err == nil {
				args, _, err = h.mountArgs()
			}
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%q: %v, want an error saying %q", tc.argv, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tc.argv, err)
			}
			if got := strings.Join(args, " "); got != tc.want {
				t.Errorf("%q:\n got %s\nwant %s", tc.argv, got, tc.want)
			}
		})
	}
}

// TestMountHelperNames: the binary acts as the helper under the names
// mount(8) runs helpers by, and only those.
func TestMountHelperNames(t *testing.T) {
	for argv0, want := range map[string]bool{
		"/sbin/mount.fuse.dualstore": true, "/usr/sbin/mount.dualstore": true, "mount.dualstore": true,
		"/usr/local/bin/dualstore": false, "mount.fuse": false, "mount.fuse.dualstore.old": false,
	} {
		if got := isMountHelper(argv0); got != want {
			t.Errorf("isMountHelper(%q) = %v, want %v", argv0, got, want)
		}
	}
}
