package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/local"
)

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// config returns the completed embedded default for a data dir.
func config(t *testing.T, dataDir string) Config {
	t.Helper()
	c := Config{DataDir: dataDir}
	if err := c.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	return c
}

func isConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

func TestCreateOpenClose(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := config(t, dir)

	if _, err := Open(ctx, cfg, testLog(t)); err == nil || !isConfigError(err) || !strings.Contains(err.Error(), "holds no dualstore filesystem") {
		t.Fatalf("Open of an empty data dir: %v, want a ConfigError naming it", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused Open created the data dir: %v", err)
	}

	e, err := Create(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("the map is as safe as the chunks")
	id := stores.ID(blake3.Sum256(data))
	if err := e.Dual.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if e.Config.Chunker.Hash != "blake3" || e.Config.Chunker.AvgSize == 0 {
		t.Errorf("engine config chunker = %+v, want the index header's", e.Config.Chunker)
	}
	// The data dir is locked while the engine is open.
	if _, err := Open(ctx, cfg, testLog(t)); err == nil || !strings.Contains(err.Error(), "in use by") {
		t.Errorf("second open while the first holds the lock: %v, want 'in use by'", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := Create(ctx, cfg, testLog(t)); err == nil || !isConfigError(err) || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("Create over an existing filesystem: %v, want a ConfigError", err)
	}
	e, err = Open(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err := e.Dual.Get(ctx, id)
	if err != nil || string(got) != string(data) {
		t.Fatalf("chunk after reopen: %q, %v", got, err)
	}
	for _, tier := range []string{"primary", "safety"} {
		if _, err := os.Stat(filepath.Join(dir, tier)); err != nil {
			t.Errorf("default %s store: %v", tier, err)
		}
	}
}

// TestFailedCreateLeavesNothing: a creation that fails at its last store
// removes the data dir and every store directory it made.
func TestFailedCreateLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	blocker := filepath.Join(tmp, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "data")
	c := Config{DataDir: dir, Safety: []StoreConfig{{Type: "local", Options: localAt(filepath.Join(blocker, "safety"))}}}
	if err := c.Complete(DefaultRegistry()); err != nil {
		t.Fatal(err)
	}
	_, err := OpenOrCreate(context.Background(), c, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "safety[0]") {
		t.Fatalf("create with an impossible safety dir: %v, want an error naming safety[0]", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed create left the data dir (and its primary store) behind: %v", err)
	}
}

// TestRefuseFullStores: index.db lost, stores full: a new filesystem is
// not created over them.
func TestRefuseFullStores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := config(t, dir)
	e, err := OpenOrCreate(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("a chunk")
	if err := e.Dual.Put(ctx, stores.ID(blake3.Sum256(data)), data); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.db", "index.db-wal", "index.db-shm"} {
		os.Remove(filepath.Join(dir, f))
	}
	_, err = OpenOrCreate(ctx, cfg, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "is missing, but store primary-0 of the primary tier holds chunks") {
		t.Fatalf("create over full stores: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused create left an index behind: %v", err)
	}
}

// TestMissingStoreDir: an existing filesystem never gets a store
// directory created for it.
func TestMissingStoreDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := config(t, dir)
	e, err := OpenOrCreate(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "safety")); err != nil {
		t.Fatal(err)
	}
	_, err = OpenOrCreate(ctx, cfg, testLog(t))
	if err == nil || !strings.Contains(err.Error(), `safety[0] store "safety-0": directory`) {
		t.Fatalf("open with the safety dir gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "safety")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the open re-created the missing store directory")
	}
}

// memConfig is a backend registered by a test: its package (here, this
// type) plus one Register line is all a backend needs.
type memConfig struct {
	Label string `yaml:"label" json:"label"`
	store *stores.Mem
}

func (c *memConfig) Complete(key string) error {
	if c.Label == "" {
		return errors.New(key + ".label: required")
	}
	return nil
}

func (c *memConfig) Open(_ context.Context, name string, _ bool) (stores.Store, func(), error) {
	c.store = stores.NewMem(name + "/" + c.Label)
	return c.store, nil, nil
}

func TestRegistryNewBackend(t *testing.T) {
	reg := DefaultRegistry()
	reg.Register("mem", func() stores.Config { return &memConfig{} })
	dir := t.TempDir()
	var c Config
	if err := ParseYAML([]byte("data_dir: "+dir+"\nsafety:\n  - type: mem\n    label: ram\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(reg); err != nil {
		t.Fatal(err)
	}
	mc, ok := c.Safety[0].Options.(*memConfig)
	if !ok || mc.Label != "ram" {
		t.Fatalf("safety[0] options = %#v", c.Safety[0].Options)
	}
	ctx := context.Background()
	e, err := OpenOrCreate(ctx, c, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	data := []byte("into the registered backend")
	id := stores.ID(blake3.Sum256(data))
	if err := e.Dual.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if ok, err := stores.Has(ctx, mc.store, id); err != nil || !ok {
		t.Errorf("the chunk is not in the registered backend's store: %v %v", ok, err)
	}
	if !strings.Contains(string(c.RedactedJSON()), `"label": "ram"`) {
		t.Errorf("rendered config lacks the backend's key:\n%s", c.RedactedJSON())
	}

	// A key of the default registry's backends on the new type is named
	// as such; the default registry does not know the type at all.
	var bad Config
	if err := ParseYAML([]byte("data_dir: "+dir+"\nsafety:\n  - type: mem\n    label: x\n    path: /tmp/x\n"), &bad); err != nil {
		t.Fatal(err)
	}
	if err := bad.Complete(reg); err == nil || !strings.Contains(err.Error(), "safety[0].path: only for local stores") {
		t.Errorf("local key on a mem store: %v", err)
	}
	var unknown Config
	if err := ParseYAML([]byte("data_dir: "+dir+"\nsafety:\n  - type: mem\n    label: x\n"), &unknown); err != nil {
		t.Fatal(err)
	}
	if err := unknown.Complete(DefaultRegistry()); err == nil || !strings.Contains(err.Error(), `safety[0].type "mem": unknown store type (want local or s3)`) {
		t.Errorf("unregistered type: %v", err)
	}
}

func localAt(p string) stores.Config { return &local.Config{Path: p} }
