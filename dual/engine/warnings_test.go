package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupWarnings: a data dir or store others may write, or another
// user owns, is warned about with its key; a private one is not.
func TestSetupWarnings(t *testing.T) {
	tmp := t.TempDir()
	data, store := filepath.Join(tmp, "data"), filepath.Join(tmp, "store")
	for _, d := range []string{data, store} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c, err := completeYAML(t, "data_dir: "+data+"\nprimary:\n  - path: "+store+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if w := setupWarnings(*c); len(w) != 0 {
		t.Errorf("private dirs: %q, want no warnings", w)
	}
	if err := os.Chmod(data, 0o777); err != nil {
		t.Fatal(err)
	}
	want := []string{"data_dir " + data + " is writable by others (mode 0777"}
	if os.Geteuid() == 0 {
		if err := os.Chown(store, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		want = append(want, "primary[0].path "+store+" (store primary-0) is owned by uid 65534")
	}
	w := setupWarnings(*c)
	if len(w) != len(want) {
		t.Fatalf("warnings %q, want %d", w, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(w[i], want[i]) {
			t.Errorf("warning %q, want it to start %q", w[i], want[i])
		}
	}
}

func TestSecretKeys(t *testing.T) {
	c, err := completeYAML(t, "data_dir: /tmp/d\nsafety:\n  - type: s3\n    endpoint: h\n    bucket: chunks\n    access_key: AKIA\n    secret_key: hunter2\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.SecretKeys(), ","); got != "safety[0].access_key,safety[0].secret_key" {
		t.Errorf("SecretKeys = %s", got)
	}
	c, err = completeYAML(t, "data_dir: /tmp/d\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.SecretKeys(); len(got) != 0 {
		t.Errorf("SecretKeys of a config without secrets = %q", got)
	}
}
