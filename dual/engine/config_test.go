package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores/local"
	"github.com/dualstore/dualstore/stores/s3"
)

func TestConfigParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, dataDir string
		wantErr             string // substring; "" = no error
	}{
		{name: "empty uses defaults", yaml: "", dataDir: "/tmp/x"},
		{name: "full", yaml: "data_dir: /tmp/d\ndual:\n  read_preference: fastest\n  require: any\nprimary:\n  - path: /tmp/p\nsafety:\n  - path: /tmp/s\n"},
		{name: "unknown key named", yaml: "data_dir: /tmp/d\ndual:\n  read_preferense: safety\n", wantErr: "read_preferense"},
		{name: "bad preference", yaml: "data_dir: /tmp/d\ndual:\n  read_preference: slowest\n", wantErr: "read_preference \"slowest\""},
		{name: "bad require", yaml: "data_dir: /tmp/d\ndual:\n  require: most\n", wantErr: "require \"most\""},
		{name: "no data dir", yaml: "", wantErr: "data_dir: required"},
		{name: "backup interval too short", yaml: "data_dir: /tmp/d\nindex_backup:\n  interval: 10ms\n", wantErr: "index_backup.interval 10ms: want 200ms..24h"},
		{name: "backup snapshot interval too short", yaml: "data_dir: /tmp/d\nindex_backup:\n  snapshot_interval: 5s\n", wantErr: "index_backup.snapshot_interval 5s"},
		{name: "backup spool", yaml: "data_dir: /tmp/d\nindex_backup:\n  spool_mb: -3\n", wantErr: "index_backup.spool_mb -3"},
		{name: "backup unknown key", yaml: "data_dir: /tmp/d\nindex_backup:\n  fsync_wiat: true\n", wantErr: "fsync_wiat"},
		{name: "gc max_unused not a percentage", yaml: "data_dir: /tmp/d\ngc:\n  max_unused: lots\n", wantErr: `gc.max_unused "lots": want a percentage`},
		{name: "gc max_unused negative", yaml: "data_dir: /tmp/d\ngc:\n  max_unused: -1%\n", wantErr: `gc.max_unused "-1%"`},
		{name: "gc min_unused", yaml: "data_dir: /tmp/d\ngc:\n  min_unused: 3 apples\n", wantErr: `gc.min_unused "3 apples": want a byte count`},
		{name: "gc rate", yaml: "data_dir: /tmp/d\ngc:\n  rate: fast\n", wantErr: `gc.rate "fast"`},
		{name: "gc interval too short", yaml: "data_dir: /tmp/d\ngc:\n  interval: 10ms\n", wantErr: "gc.interval 10ms: want 1s..720h"},
		{name: "gc check interval too short", yaml: "data_dir: /tmp/d\ngc:\n  check_interval: 1ms\n", wantErr: "gc.check_interval 1ms: want 100ms..24h"},
		{name: "gc unknown key", yaml: "data_dir: /tmp/d\ngc:\n  max_unsued: 5%\n", wantErr: "max_unsued"},
		{name: "gc off", yaml: "data_dir: /tmp/d\ngc:\n  auto: false\n"},
		{name: "same dir twice", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/same\nsafety:\n  - path: /tmp/same\n", wantErr: "must be independent"},
		{name: "same dir in one tier", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/a\n  - path: /tmp/a/\n", wantErr: "primary[0].path and primary[1].path are the same directory /tmp/a"},
		{name: "same dir, second members", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/p\n  - path: /tmp/x\nsafety:\n  - path: /tmp/s\n  - path: /tmp/y/../x\n", wantErr: "primary[1].path and safety[1].path are the same directory /tmp/x"},
		{name: "store inside a store", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/p/inner\nsafety:\n  - path: /tmp/p\n", wantErr: "primary[0].path /tmp/p/inner is inside safety[0].path /tmp/p"},
		{name: "siblings with a common prefix", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/store\nsafety:\n  - path: /tmp/store2\n"},
		{name: "unknown store type", yaml: "data_dir: /tmp/d\nprimary:\n  - type: floppy\n    path: /x\n", wantErr: "primary[0].type \"floppy\""},
		{name: "local without path", yaml: "data_dir: /tmp/d\nsafety:\n  - type: local\n", wantErr: "safety[0].path: required"},
		{name: "bad hash", yaml: "data_dir: /tmp/d\nchunker:\n  hash: md5\n", wantErr: "chunker.hash"},
		{name: "not yaml", yaml: "data_dir: [unclosed\n", wantErr: "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := ParseYAML([]byte(tc.yaml), &c)
			if err == nil {
				if tc.dataDir != "" {
					c.DataDir = tc.dataDir
				}
				err = c.Complete(DefaultRegistry())
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(c.Primary) == 0 || len(c.Safety) == 0 || c.Primary[0].Options.(*local.Config).Path == "" {
					t.Fatalf("tiers not defaulted: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestConfigGC checks the gc section's defaults and the forms its values
// take.
func TestConfigGC(t *testing.T) {
	for _, tc := range []struct {
		name, yaml   string
		on           bool
		pct          float64
		minUnused    int64
		rate         int64
		interval     time.Duration
		check        time.Duration
		maxUnusedOut string // what .dualstore/config shows
	}{
		{name: "defaults", yaml: "", on: true, pct: 5, minUnused: 64 << 20, interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "5%"},
		{name: "percent sign", yaml: "gc:\n  max_unused: 2.5%\n  min_unused: 1MiB\n", on: true, pct: 2.5, minUnused: 1 << 20,
			interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "2.5%"},
		{name: "plain number is percent", yaml: "gc:\n  max_unused: 10\n  min_unused: 4096\n", on: true, pct: 10, minUnused: 4096,
			interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "10"},
		{name: "short interval shortens the check", yaml: "gc:\n  interval: 2s\n", on: true, pct: 5, minUnused: 64 << 20,
			interval: 2 * time.Second, check: 2 * time.Second, maxUnusedOut: "5%"},
		{name: "own check interval", yaml: "gc:\n  interval: 2s\n  check_interval: 100ms\n", on: true, pct: 5, minUnused: 64 << 20,
			interval: 2 * time.Second, check: 100 * time.Millisecond, maxUnusedOut: "5%"},
		{name: "rate from compare", yaml: "compare:\n  rate: 1048576\n", on: true, pct: 5, minUnused: 64 << 20, rate: 1 << 20,
			interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "5%"},
		{name: "own rate", yaml: "compare:\n  rate: 1048576\ngc:\n  rate: 50M\n", on: true, pct: 5, minUnused: 64 << 20, rate: 50 << 20,
			interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "5%"},
		{name: "off", yaml: "gc:\n  auto: false\n", on: false, pct: 5, minUnused: 64 << 20, interval: 10 * time.Minute, check: time.Minute, maxUnusedOut: "5%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := ParseYAML([]byte("data_dir: /tmp/d\n"+tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			if err := c.Complete(DefaultRegistry()); err != nil {
				t.Fatal(err)
			}
			pct, minUnused, rate, err := c.GC.Limits()
			if err != nil {
				t.Fatal(err)
			}
			if c.GC.On() != tc.on || pct != tc.pct || minUnused != tc.minUnused || rate != tc.rate ||
				c.GC.Interval.D() != tc.interval || c.GC.CheckInterval.D() != tc.check {
				t.Errorf("gc = on %v, %v%%, min %d, rate %d, interval %s, check %s; want on %v, %v%%, min %d, rate %d, interval %s, check %s",
					c.GC.On(), pct, minUnused, rate, c.GC.Interval.D(), c.GC.CheckInterval.D(),
					tc.on, tc.pct, tc.minUnused, tc.rate, tc.interval, tc.check)
			}
			if s := string(c.RedactedJSON()); !strings.Contains(s, fmt.Sprintf(`"max_unused": %q`, tc.maxUnusedOut)) {
				t.Errorf("rendered config lacks max_unused %q:\n%s", tc.maxUnusedOut, s)
			}
		})
	}
}

func TestConfigRedacted(t *testing.T) {
	b := []byte(`{"primary":[{"secret_key":"hunter2","access_key":"AKIA","name":"p"}],"token":"abc","path":"/x"}`)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	redact(m)
	out, _ := json.Marshal(m)
	for _, secret := range []string{"hunter2", "AKIA", "abc"} {
		if strings.Contains(string(out), secret) {
			t.Fatalf("secret %q not redacted: %s", secret, out)
		}
	}
	if !strings.Contains(string(out), "/x") {
		t.Fatalf("non-secret value lost: %s", out)
	}
}

func TestDefaultConfigRender(t *testing.T) {
	var c Config
	c.DataDir = "/tmp/dd"
	if err := c.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	s := string(c.RedactedJSON())
	for _, want := range []string{`"data_dir": "/tmp/dd"`, `"path": "/tmp/dd/primary"`, `"path": "/tmp/dd/safety"`, `"read_preference": "primary"`} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered config lacks %s:\n%s", want, s)
		}
	}
}

func TestConfigDurations(t *testing.T) {
	var c Config
	if err := ParseYAML([]byte("data_dir: /tmp/d\ndual:\n  store_timeout: 30s\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	if c.Dual.StoreTimeout.D() != 30*time.Second {
		t.Fatalf("store_timeout = %v", c.Dual.StoreTimeout.D())
	}
	if s := string(c.RedactedJSON()); !strings.Contains(s, `"store_timeout": "30s"`) || !strings.Contains(s, `"backfill_interval": "5s"`) {
		t.Fatalf("durations not rendered as text:\n%s", s)
	}
	if err := ParseYAML([]byte("dual:\n  store_timeout: soon\n"), &c); err == nil || !strings.Contains(err.Error(), "soon") {
		t.Fatalf("bad duration error = %v", err)
	}
}

func TestConfigS3(t *testing.T) {
	const head = "data_dir: /tmp/d\nprimary:\n  - path: /tmp/p\nsafety:\n  - type: s3\n"
	for _, tc := range []struct {
		name, yaml string
		wantErr    string // substring; "" = no error
		check      func(t *testing.T, s StoreConfig)
	}{
		{name: "minimal", yaml: head + "    endpoint: s3.example.test\n    bucket: chunks\n", check: func(t *testing.T, s StoreConfig) {
			c := s3cfg(t, s)
			if s.Name != "safety-0" || c.PathStyle != "auto" || c.TLS == nil || !*c.TLS || c.Retries == nil || *c.Retries != 3 ||
				c.Timeout.D() != 30*time.Second || c.Concurrency != 16 || c.OutageBackoff.D() != time.Second {
				t.Errorf("defaults not filled: %+v", c)
			}
			o, err := s3cfg(t, s).Options(s.Name)
			if err != nil || o.DisableTLS || o.Retries != 3 || o.Name != "safety-0" {
				t.Errorf("s3Options = %+v, %v", o, err)
			}
		}},
		{name: "everything", yaml: head + "    endpoint: http://127.0.0.1:7070\n    bucket: chunks\n    prefix: /host-a/\n    region: eu-west-1\n" +
			"    path_style: true\n    access_key: AKID\n    secret_key: s3cr3t\n    session_token: tok\n    timeout: 5s\n    retries: 0\n" +
			"    concurrency: 4\n    outage_backoff: 250ms\n    create_bucket: true\n", check: func(t *testing.T, s StoreConfig) {
			o, err := s3cfg(t, s).Options(s.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !o.DisableTLS || o.Addressing.String() != "path" || o.Retries != -1 || o.Timeout != 5*time.Second ||
				o.Concurrency != 4 || o.OutageBackoff != 250*time.Millisecond || !o.CreateBucket || o.Prefix != "/host-a/" ||
				o.AccessKey != "AKID" || o.SecretKey != "s3cr3t" || o.SessionToken != "tok" || o.Region != "eu-west-1" {
				t.Errorf("s3Options = %v", o)
			}
		}},
		{name: "virtual host, tls off", yaml: head + "    endpoint: minio.lan:9000\n    bucket: chunks\n    path_style: false\n    tls: false\n", check: func(t *testing.T, s StoreConfig) {
			o, _ := s3cfg(t, s).Options(s.Name)
			if !o.DisableTLS || o.Addressing.String() != "virtual-host" {
				t.Errorf("s3Options = %v", o)
			}
		}},
		{name: "profile", yaml: head + "    endpoint: s3.example.test\n    bucket: chunks\n    profile: backup\n    credentials_file: /etc/dualstore/aws\n", check: func(t *testing.T, s StoreConfig) {
			o, _ := s3cfg(t, s).Options(s.Name)
			if o.Profile != "backup" || o.CredentialsFile != "/etc/dualstore/aws" {
				t.Errorf("s3Options = %v", o)
			}
		}},
		{name: "no endpoint", yaml: head + "    bucket: chunks\n", wantErr: "safety[0]: endpoint not set"},
		{name: "no bucket", yaml: head + "    endpoint: h\n", wantErr: "safety[0]: bucket not set"},
		{name: "bad bucket", yaml: head + "    endpoint: h\n    bucket: My_Bucket\n", wantErr: "safety[0]: bucket \"My_Bucket\""},
		{name: "bad path_style", yaml: head + "    endpoint: h\n    bucket: chunks\n    path_style: sideways\n", wantErr: "path_style \"sideways\""},
		{name: "https with tls off", yaml: head + "    endpoint: https://h\n    bucket: chunks\n    tls: false\n", wantErr: "TLS is disabled"},
		{name: "key without secret", yaml: head + "    endpoint: h\n    bucket: chunks\n    access_key: AKID\n", wantErr: "set together"},
		{name: "negative retries", yaml: head + "    endpoint: h\n    bucket: chunks\n    retries: -2\n", wantErr: "safety[0].retries -2"},
		{name: "negative timeout", yaml: head + "    endpoint: h\n    bucket: chunks\n    timeout: -1s\n", wantErr: "safety[0].timeout"},
		{name: "path on s3", yaml: head + "    endpoint: h\n    bucket: chunks\n    path: /x\n", wantErr: "safety[0].path: only for local stores"},
		{name: "compress on s3", yaml: head + "    endpoint: h\n    bucket: chunks\n    compress: true\n", wantErr: "not supported by s3 stores"},
		{name: "s3 keys on a local store", yaml: "data_dir: /tmp/d\nsafety:\n  - path: /tmp/s\n    endpoint: h\n    bucket: chunks\n", wantErr: "safety[0]: endpoint, bucket: only for s3 stores (missing `type: s3`?)"},
		{name: "unknown key", yaml: head + "    endpoint: h\n    bucket: chunks\n    secret: x\n", wantErr: "secret"},
		{name: "same bucket twice", yaml: "data_dir: /tmp/d\nprimary:\n  - type: s3\n    endpoint: http://h:1\n    bucket: chunks\n    prefix: a\n" +
			"safety:\n  - type: s3\n    endpoint: h:1\n    bucket: chunks\n    prefix: /a/\n", wantErr: "must be independent"},
		{name: "same bucket, other prefixes", yaml: "data_dir: /tmp/d\nprimary:\n  - type: s3\n    endpoint: h:1\n    bucket: chunks\n    prefix: a\n" +
			"safety:\n  - type: s3\n    endpoint: h:1\n    bucket: chunks\n    prefix: b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := ParseYAML([]byte(tc.yaml), &c)
			if err == nil {
				err = c.Complete(DefaultRegistry())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c.Safety[0])
			}
		})
	}
}

// TestConfigS3Redacted: `.dualstore/config` shows an s3 store's settings
// but none of its secrets.
func TestConfigS3Redacted(t *testing.T) {
	var c Config
	yaml := "data_dir: /tmp/d\nsafety:\n  - type: s3\n    endpoint: http://127.0.0.1:7070\n    bucket: chunks\n    prefix: p\n" +
		"    access_key: AKIDEXAMPLE42\n    secret_key: wJalrXUtnFEMI-secret\n    session_token: FwoGZXIvYXdz-token\n"
	if err := ParseYAML([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	out := string(c.RedactedJSON())
	for _, secret := range []string{"AKIDEXAMPLE42", "wJalrXUtnFEMI-secret", "FwoGZXIvYXdz-token"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q in the rendered config:\n%s", secret, out)
		}
	}
	for _, want := range []string{`"type": "s3"`, `"endpoint": "http://127.0.0.1:7070"`, `"bucket": "chunks"`, `"prefix": "p"`,
		`"access_key": "REDACTED"`, `"secret_key": "REDACTED"`, `"session_token": "REDACTED"`,
		`"tls": false`, `"path_style": "auto"`, `"retries": 3`, `"timeout": "30s"`} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered config lacks %s:\n%s", want, out)
		}
	}
	// The options handed to the store keep the real values.
	o, err := s3cfg(t, c.Safety[0]).Options(c.Safety[0].Name)
	if err != nil || o.SecretKey != "wJalrXUtnFEMI-secret" {
		t.Errorf("s3Options lost the secret: %v", err)
	}
	// A local store's rendering has no s3 keys at all.
	if strings.Count(out, `"endpoint"`) != 1 {
		t.Errorf("s3 keys rendered for the local store:\n%s", out)
	}
}

// TestConfigSymlinkedStore: a symlink to another store's directory is the
// same directory.
func TestConfigSymlinkedStore(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("data_dir: %s\nprimary:\n  - path: %s/real\nsafety:\n  - path: %s/alias\n", dir, dir, dir)
	var c Config
	err := ParseYAML([]byte(yaml), &c)
	if err == nil {
		err = c.Complete(DefaultRegistry())
	}
	if err == nil || !strings.Contains(err.Error(), "are the same directory") {
		t.Errorf("a safety store symlinked to the primary's directory: err = %v, want \"are the same directory\"", err)
	}
}

// s3cfg returns a store entry's s3 options, failing if it is no s3 store.
func s3cfg(t *testing.T, s StoreConfig) *s3.Config {
	t.Helper()
	c, ok := s.Options.(*s3.Config)
	if !ok {
		t.Fatalf("store %s: options %T, want *s3.Config", s.Name, s.Options)
	}
	return c
}

// TestConfigCasyncHash: a store in the casync layout needs chunker.hash
// sha512-256; unset, the hash follows the store; set to another, the
// config is refused naming the store and the key. The tiers may differ in
// layout.
func TestConfigCasyncHash(t *testing.T) {
	casyncPrimary := "data_dir: /tmp/d\nprimary:\n  - name: desync-store\n    path: /tmp/p\n    layout: casync\nsafety:\n  - path: /tmp/s\n"
	for _, tc := range []struct {
		name, yaml, wantHash, wantErr string
	}{
		{name: "hash follows the store", yaml: casyncPrimary, wantHash: "sha512-256"},
		{name: "sha512-256 set", yaml: "chunker:\n  hash: sha512-256\n" + casyncPrimary, wantHash: "sha512-256"},
		{name: "blake3 refused", yaml: "chunker:\n  hash: blake3\n" + casyncPrimary,
			wantErr: `primary[0] (store "desync-store"): its layout needs chunker.hash: sha512-256 (the hash its chunk files are named by), but chunker.hash is blake3`},
		{name: "casync safety, blake3 refused", yaml: "data_dir: /tmp/d\nchunker:\n  hash: blake3\nsafety:\n  - path: /tmp/s\n    layout: casync\n",
			wantErr: `safety[0] (store "safety-0"): its layout needs chunker.hash: sha512-256`},
		{name: "dualstore layout, blake3", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/p\n    layout: dualstore\n", wantHash: "blake3"},
		{name: "bad layout", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/p\n    layout: tar\n", wantErr: `primary[0].layout "tar": want dualstore or casync`},
		{name: "casync layout on s3 needs sha512-256", yaml: "data_dir: /tmp/d\nchunker:\n  hash: blake3\nsafety:\n  - type: s3\n    endpoint: localhost:9000\n    bucket: bucket\n    layout: casync\n", wantErr: "sha512-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := ParseYAML([]byte(tc.yaml), &c)
			if err == nil {
				err = c.Complete(DefaultRegistry())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Chunker.Hash != tc.wantHash {
				t.Errorf("chunker.hash %q, want %q", c.Chunker.Hash, tc.wantHash)
			}
		})
	}
}

// TestOpenCasyncOverBlake3: a filesystem created with blake3 cannot be
// opened with a casync store in its config (its header's hash wins over
// the config's): a ConfigError naming the store, and nothing opened.
func TestOpenCasyncOverBlake3(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data")
	e, err := Create(ctx, config(t, dir), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir, Primary: []StoreConfig{{Name: "desync-store",
		Options: &local.Config{Path: filepath.Join(dir, "primary"), Layout: local.LayoutCasync}}}}
	if err := cfg.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, cfg, testLog(t))
	if !isConfigError(err) || !strings.Contains(err.Error(), `primary[0] (store "desync-store")`) ||
		!strings.Contains(err.Error(), "this filesystem was created with chunker.hash blake3") {
		t.Fatalf("Open of a blake3 filesystem with a casync store: %v, want a ConfigError naming the store and the hash", err)
	}
	// The refusal released the data dir.
	e, err = Open(ctx, config(t, dir), testLog(t))
	if err != nil {
		t.Fatalf("Open after the refusal: %v", err)
	}
	e.Close()

	// A sha512-256 filesystem opens with a casync primary.
	dir2 := filepath.Join(t.TempDir(), "data2")
	cfg2 := Config{DataDir: dir2, Primary: []StoreConfig{{Options: &local.Config{Path: filepath.Join(dir2, "casync"), Layout: local.LayoutCasync}}}}
	if err := cfg2.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	e, err = Create(ctx, cfg2, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.Index.Header().Hash != "sha512-256" {
		t.Errorf("new filesystem's hash %q, want sha512-256", e.Index.Header().Hash)
	}
	e.Close()
	if e, err = Open(ctx, cfg2, testLog(t)); err != nil {
		t.Fatal(err)
	}
	e.Close()
}
