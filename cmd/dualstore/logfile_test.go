package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFileReopen: after the file is moved away, Reopen starts a new
// file at the path; a path that cannot be opened any more keeps the old
// file in use and says why.
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.log")
	l, err := openLogFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	write := func(s string) {
		t.Helper()
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write("one\n")
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	write("two\n") // logrotate moved it; until the SIGHUP, lines follow the file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	write("three\n")
	if got := read(p + ".1"); got != "one\ntwo\n" {
		t.Errorf("the moved file: %q", got)
	}
	if got := read(p); got != "three\n" {
		t.Errorf("the new file: %q", got)
	}
	// The directory gone: the reopen fails, naming the path, and lines
	// go on into the file in use.
	kept := filepath.Join(t.TempDir(), "kept.log")
	if err := os.Rename(p, kept); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil || !strings.Contains(err.Error(), "reopening log_file "+p) {
		t.Errorf("Reopen without its directory = %v, want an error naming %s", err, p)
	}
	write("four\n")
	if got := read(kept); got != "three\nfour\n" {
		t.Errorf("the file in use after a failed reopen: %q", got)
	}
}
