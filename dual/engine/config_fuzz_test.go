package engine

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzConfig feeds arbitrary bytes to the config parser. It must never
// panic, and a config it accepts must render (`.dualstore/config`) as
// JSON that is itself a config meaning the same thing: parsing the
// rendering and completing it again renders the same bytes.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"data_dir: /tmp/d\n",
		"dual:\n  read_preference: fastest\n  require: any\n  store_timeout: 30s\n",
		"mount:\n  cache_mb: 16\n  attr_timeout: 500ms\n",
		"chunker:\n  hash: sha512-256\n  min_size: 65536\n",
		"primary:\n  - path: /tmp/p\n    compress: true\nsafety:\n  - name: s\n    path: /tmp/s\n",
		"safety:\n  - type: s3\n    bucket: b\n    endpoint: http://127.0.0.1:9000\n    access_key: AK\n    secret_key: SK\n",
		"dual: [1, 2]\n",
		"data_dir: !!binary aGk=\n",
		"&a [*a]\n",
		"{\"data_dir\": \"/x\", \"compare\": {\"rate\": 1e30}}\n",
		"dual:\n  store_timeout: -5s\n",
		"compare:\n  concurrency: -1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if err := ParseYAML(b, &c); err != nil {
			return
		}
		if c.DataDir == "" {
			c.DataDir = "/tmp/fuzz-data"
		}
		if err := c.Complete(DefaultRegistry()); err != nil {
			return
		}
		out := c.RedactedJSON()
		if !json.Valid(out) {
			t.Fatalf("redactedJSON is not JSON:\n%s", out)
		}
		var c2 Config
		if err := ParseYAML(out, &c2); err != nil {
			t.Fatalf("the rendered config does not parse: %v\n%s", err, out)
		}
		if err := c2.Complete(DefaultRegistry()); err != nil {
			t.Fatalf("the rendered config does not validate: %v\n%s", err, out)
		}
		if out2 := c2.RedactedJSON(); !bytes.Equal(out, out2) {
			t.Fatalf("rendering is not a fixed point:\n%s\nthen\n%s", out, out2)
		}
	})
}
