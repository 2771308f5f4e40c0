package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/dual/engine"
)

// TestConfigFileWarning: a config file others may read is warned about
// only when it holds a secret, naming the keys and never the values.
func TestConfigFileWarning(t *testing.T) {
	withSecret := "data_dir: /tmp/d\nsafety:\n  - type: s3\n    endpoint: h\n    bucket: chunks\n    access_key: AKIA\n    secret_key: hunter2\n"
	for _, tc := range []struct {
		name, yaml string
		mode       os.FileMode
		warn       bool
	}{
		{"secret, readable by others", withSecret, 0o644, true},
		{"secret, private", withSecret, 0o600, false},
		{"secret, group only", withSecret, 0o640, false},
		{"no secret, readable by others", "data_dir: /tmp/d\n", 0o644, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "dualstore.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Complete(engine.DefaultRegistry()); err != nil {
				t.Fatal(err)
			}
			w := configFileWarning(p, &cfg)
			if (w != "") != tc.warn {
				t.Fatalf("warning %q, want one: %v", w, tc.warn)
			}
			if tc.warn && (!strings.Contains(w, "safety[0].secret_key") || strings.Contains(w, "hunter2") || strings.Contains(w, "AKIA")) {
				t.Errorf("warning %q: want the keys named and no values", w)
			}
		})
	}
}
