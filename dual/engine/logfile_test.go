package engine

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestConfigLogFile: log_file needs an existing directory and, if it
// exists, a regular file; it is made absolute and resolved; inside the
// mount point it is refused at mount time, naming the key.
func TestConfigLogFile(t *testing.T) {
	tmp := t.TempDir()
	logs := filepath.Join(tmp, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "logs-link")
	if err := os.Symlink(logs, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(logs, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(tmp, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want, wantPath string
	}{
		{"unset", "", "", ""},
		{"new file", logs + "/m.log", "", logs + "/m.log"},
		{"through a symlinked dir", link + "/m.log", "", logs + "/m.log"},
		{"missing dir", tmp + "/nope/m.log", "log_file " + tmp + "/nope/m.log: its directory " + tmp + "/nope", ""},
		{"dir is a file", plain + "/m.log", "is not a directory", ""},
		{"a directory", logs, "log_file " + logs + ": not a regular file", ""},
		{"a FIFO", fifo, "log_file " + fifo + ": not a regular file", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "data_dir: " + tmp + "/data\n"
			if tc.path != "" {
				yaml += "log_file: " + tc.path + "\n"
			}
			c, err := completeYAML(t, yaml)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Complete = %v, want it to say %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.LogFile != tc.wantPath {
				t.Errorf("log_file after Complete = %q, want %q", c.LogFile, tc.wantPath)
			}
		})
	}
	t.Run("relative", func(t *testing.T) {
		t.Chdir(logs)
		c, err := completeYAML(t, "data_dir: "+tmp+"/data\nlog_file: m.log\n")
		if err != nil {
			t.Fatal(err)
		}
		if c.LogFile != logs+"/m.log" {
			t.Errorf("log_file after Complete = %q, want %q", c.LogFile, logs+"/m.log")
		}
	})
	t.Run("inside the mount point", func(t *testing.T) {
		mnt := filepath.Join(tmp, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := completeYAML(t, "data_dir: "+tmp+"/data\nlog_file: "+mnt+"/m.log\n")
		if err != nil {
			t.Fatal(err)
		}
		want := "log_file " + mnt + "/m.log is inside the mount point " + mnt
		if err := c.CheckMountpoint(mnt); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("CheckMountpoint = %v, want it to say %q", err, want)
		}
		if err := c.CheckMountpoint(logs); err != nil {
			t.Fatalf("CheckMountpoint elsewhere = %v", err)
		}
	})
}
