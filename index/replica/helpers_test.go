package replica

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// metaMem is a MetaStore in memory with switchable failures. (The real
// stores' MetaStore is checked by stores/storetest; here the replicator's
// logic is under test.)
type metaMem struct {
	mu      sync.Mutex
	objs    map[string][]byte
	failPut error
	failGet error
}

func newMetaMem() *metaMem { return &metaMem{objs: map[string][]byte{}} }

func (m *metaMem) PutMeta(ctx context.Context, name string, data []byte) error {
	if err := stores.ValidMetaName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut != nil {
		return m.failPut
	}
	m.objs[name] = bytes.Clone(data)
	return nil
}

func (m *metaMem) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failGet != nil {
		return nil, m.failGet
	}
	b, ok := m.objs[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, stores.ErrNotFound)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: too large", name, stores.ErrCorrupt)
	}
	return bytes.Clone(b), nil
}

func (m *metaMem) ListMeta(ctx context.Context, prefix string) ([]stores.MetaInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []stores.MetaInfo
	for n, b := range m.objs {
		if strings.HasPrefix(n, prefix) {
			out = append(out, stores.MetaInfo{Name: n, Size: int64(len(b))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *metaMem) DeleteMeta(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, name)
	return nil
}

func (m *metaMem) setFail(err error) {
	m.mu.Lock()
	m.failPut = err
	m.mu.Unlock()
}

// names lists the object names under prefix.
func (m *metaMem) names(prefix string) []string {
	l, _ := m.ListMeta(context.Background(), prefix)
	var out []string
	for _, i := range l {
		out = append(out, i.Name)
	}
	return out
}

func (m *metaMem) mutate(name string, fn func([]byte) []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[name] = fn(m.objs[name])
}

var testHeader = index.Header{Hash: "blake3", Polynomial: 0x3DA3358B4DC173, MinSize: 512 << 10, AvgSize: 1 << 20, MaxSize: 8 << 20}

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func openIndex(t *testing.T, path string) *index.DB {
	t.Helper()
	db, err := index.Open(context.Background(), index.Options{Path: path, NewHeader: testHeader, Log: testLog(t)})
	if err != nil {
		t.Fatalf("index.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// image reads the index's pages, for byte comparison.
func image(t *testing.T, db *index.DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := db.Snapshot(context.Background(), func(pg uint32, data []byte) error {
		buf.Write(data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// point runs a durability point (no stores here: Seal and Settle), twice:
// the first Settle's own commit (dropping undo records) lands in the
// second's cut, so the backup then holds the index exactly as it is.
func point(t *testing.T, db *index.DB) {
	t.Helper()
	for range 2 {
		e := db.Seal()
		if _, err := db.Settle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func addFiles(t *testing.T, db *index.DB, parent uint64, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		a, err := db.Create(ctx, parent, fmt.Sprintf("%s%d", prefix, i),
			index.NewNode{Mode: syscall.S_IFREG | 0o644, Uid: 1, Gid: 1, Time: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		var id stores.ID
		copy(id[:], fmt.Sprintf("%-32s", prefix+fmt.Sprint(i)))
		if _, err := db.CommitChunks(ctx, a.Ino, []index.Chunk{{ID: id, Size: uint32(1000 + i)}}, time.Unix(1700000000, 0)); err != nil {
			t.Fatal(err)
		}
	}
}

type env struct {
	t       *testing.T
	dir     string
	db      *index.DB
	fsid    string
	primary *metaMem
	safety  *metaMem
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	db := openIndex(t, filepath.Join(dir, "index.db"))
	return &env{t: t, dir: dir, db: db, fsid: db.Header().FSID, primary: newMetaMem(), safety: newMetaMem()}
}

func (e *env) targets() []Target {
	return []Target{{Name: "primary", Store: e.primary}, {Name: "safety", Store: e.safety}}
}

func (e *env) opts() Options {
	return Options{FSID: e.fsid, Targets: e.targets(), StateFile: filepath.Join(e.dir, "index-backup.json"),
		CallTimeout: 5 * time.Second, Log: testLog(e.t)}
}

func (e *env) start(o Options) *Replicator {
	e.t.Helper()
	r, err := Start(context.Background(), e.db, o)
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	return r
}

func wait(t *testing.T, r *Replicator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// restore restores into a new file and returns its image (as the index
// reads it) and the result.
func (e *env) restore(o RestoreOptions) ([]byte, *Restored, error) {
	e.t.Helper()
	o.Path = filepath.Join(e.t.TempDir(), "restored.db")
	res, err := Restore(context.Background(), o)
	if err != nil {
		return nil, nil, err
	}
	db, err := index.Open(context.Background(), index.Options{Path: o.Path, MustExist: true, Log: testLog(e.t)})
	if err != nil {
		e.t.Fatalf("open restored index: %v", err)
	}
	defer db.Close()
	if err := db.Check(context.Background(), 10); err != nil {
		e.t.Errorf("restored index Check: %v", err)
	}
	return image(e.t, db), res, nil
}
