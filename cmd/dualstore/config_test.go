package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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
		{name: "same dir twice", yaml: "data_dir: /tmp/d\nprimary:\n  - path: /tmp/same\nsafety:\n  - path: /tmp/same\n", wantErr: "must be independent"},
		{name: "unknown store type", yaml: "data_dir: /tmp/d\nprimary:\n  - type: floppy\n    path: /x\n", wantErr: "primary[0].type \"floppy\""},
		{name: "local without path", yaml: "data_dir: /tmp/d\nsafety:\n  - type: local\n", wantErr: "safety[0].path: required"},
		{name: "bad hash", yaml: "data_dir: /tmp/d\nchunker:\n  hash: md5\n", wantErr: "chunker.hash"},
		{name: "not yaml", yaml: "data_dir: [unclosed\n", wantErr: "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := parseConfig([]byte(tc.yaml), &c)
			if err == nil {
				if tc.dataDir != "" {
					c.DataDir = tc.dataDir
				}
				err = c.complete()
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(c.Primary) == 0 || len(c.Safety) == 0 || c.Primary[0].Path == "" {
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
	if err := c.complete(); err != nil {
		t.Fatal(err)
	}
	s := string(c.redactedJSON())
	for _, want := range []string{`"data_dir": "/tmp/dd"`, `"path": "/tmp/dd/primary"`, `"path": "/tmp/dd/safety"`, `"read_preference": "primary"`} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered config lacks %s:\n%s", want, s)
		}
	}
}

func TestConfigDurations(t *testing.T) {
	var c Config
	if err := parseConfig([]byte("data_dir: /tmp/d\ndual:\n  store_timeout: 30s\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.complete(); err != nil {
		t.Fatal(err)
	}
	if c.Dual.StoreTimeout.D() != 30*time.Second {
		t.Fatalf("store_timeout = %v", c.Dual.StoreTimeout.D())
	}
	if s := string(c.redactedJSON()); !strings.Contains(s, `"store_timeout": "30s"`) || !strings.Contains(s, `"backfill_interval": "5s"`) {
		t.Fatalf("durations not rendered as text:\n%s", s)
	}
	if err := parseConfig([]byte("dual:\n  store_timeout: soon\n"), &c); err == nil || !strings.Contains(err.Error(), "soon") {
		t.Fatalf("bad duration error = %v", err)
	}
}
