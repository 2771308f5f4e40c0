package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// TestSetupWarnings: a data dir anyone may write (0777), a store dir owned
// by another user and a config file anyone may read (0644) that holds an
// S3 secret key mount, with a warning for each in the log (level warn) and
// in the stats (JSON `warnings`, and `dualstore stats`), none of them
// showing the secret. A clean setup has an empty list.
func TestSetupWarnings(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	srv := startS3(t)
	tmp := t.TempDir()
	data, primaryDir := filepath.Join(tmp, "data"), filepath.Join(tmp, "primary")
	for _, d := range []string{data, primaryDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(primaryDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "dualstore.yaml")
	yaml := s3SafetyConfig(srv) + fmt.Sprintf("primary:\n  - path: %s\n", primaryDir)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	m := mount(t, withData(data), func(m *Mount) { m.Config = cfg })
	want := [][]string{
		{"data_dir " + data, "writable by others (mode 0777"},
		{"primary[0].path " + primaryDir + " (store primary-0)", "owned by uid 65534"},
		{"config " + cfg, "readable by others (mode 0644)", "safety[0].secret_key", "safety[0].access_key"},
	}
	raw, _ := m.StatsRaw()["warnings"].([]any)
	var got []string
	for _, w := range raw {
		s, _ := w.(string)
		got = append(got, s)
	}
	out, errOut, code := CLI(t, "stats", m.Dir)
	if code != 0 {
		t.Fatalf("dualstore stats: exit %d: %s", code, errOut)
	}
	var logged []string
	for _, line := range strings.Split(m.Logs(), "\n") {
		if strings.Contains(line, `"level":"warn"`) {
			logged = append(logged, line)
		}
	}
	for _, w := range want {
		for what, texts := range map[string][]string{"stats JSON": got, "the log": logged} {
			if !anyHasAll(texts, w) {
				t.Errorf("%s has no warning saying %q: %q", what, w, texts)
			}
		}
		if !strings.Contains(out, "WARNING: "+w[0]) {
			t.Errorf("`dualstore stats` shows no warning about %s:\n%s", w[0], out)
		}
	}
	if len(got) != len(want) {
		t.Errorf("stats lists %d warnings, want %d: %q", len(got), len(want), got)
	}
	for _, secret := range []string{s3test.SecretKey, s3test.AccessKey} {
		if strings.Contains(strings.Join(got, "\n")+out+m.Logs(), secret) {
			t.Errorf("a warning shows the credential %q", secret)
		}
	}

	clean := mount(t)
	if w, ok := clean.StatsRaw()["warnings"].([]any); !ok || len(w) != 0 {
		t.Errorf("a clean setup's stats warnings: %v, want []", clean.StatsRaw()["warnings"])
	}
	if out, _, _ := CLI(t, "stats", clean.Dir); strings.Contains(out, "WARNING") {
		t.Errorf("`dualstore stats` of a clean setup warns:\n%s", out)
	}
	if strings.Contains(clean.Logs(), `"level":"warn"`) {
		t.Errorf("a clean setup logged warnings:\n%s", clean.Logs())
	}
}

// anyHasAll reports whether one of texts contains every one of parts.
func anyHasAll(texts, parts []string) bool {
	for _, s := range texts {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(s, p)
		}
		if ok {
			return true
		}
	}
	return false
}
