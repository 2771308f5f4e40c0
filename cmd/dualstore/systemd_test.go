package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit: the shipped unit is a notify service whose ExecStart
// is a foreground `dualstore mount` with flags the command has (a renamed
// flag would break every install), and systemd-analyze, where there is
// one, finds nothing wrong with it.
func TestSystemdUnit(t *testing.T) {
	const unit = "systemd/dualstore@.service"
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	if keys["Type"] != "notify" {
		t.Errorf("%s: Type=%s, want notify (the mount says READY=1)", unit, keys["Type"])
	}
	exec0 := strings.Fields(keys["ExecStart"])
	if len(exec0) < 3 || filepath.Base(exec0[0]) != "dualstore" || exec0[1] != "mount" {
		t.Fatalf("%s: ExecStart=%s, want dualstore mount …", unit, keys["ExecStart"])
	}
	flags := mountFlagSet()
	for _, a := range exec0[2:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !strings.HasPrefix(a, "--"):
		case name == "daemon":
			t.Errorf("%s: ExecStart has --daemon: a notify service runs in the foreground", unit)
		case flags.Lookup(name) == nil:
			t.Errorf("%s: ExecStart has %s, which `dualstore mount` does not take", unit, a)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze here: the unit's syntax is not checked")
		return
	}
	// verify wants the programs to exist: this test's binary stands in.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fixed := strings.ReplaceAll(string(b), exec0[0], self)
	if err := os.WriteFile(filepath.Join(dir, "dualstore@.service"), []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "./dualstore@photos.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}
