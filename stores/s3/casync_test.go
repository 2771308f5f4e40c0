package s3

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/s3/s3test"
	"github.com/dualstore/dualstore/stores/storetest"
)

// casyncID is how desync names a chunk: the SHA512/256 of its bytes.
func casyncID(data []byte) stores.ID { return sha512.Sum512_256(data) }

func casyncOptions(srv *s3test.Server, bucket, prefix string) Options {
	o := testOptions(srv, bucket, prefix)
	o.Layout = LayoutCasync
	return o
}

func TestCasyncConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("casync")
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) stores.Store {
		return open(t, casyncOptions(srv, "casync", fmt.Sprintf("run/%d", n.Add(1))))
	})
}

// TestCasyncObjects checks the objects themselves, as desync v0.9.6's
// S3Store names them (prefix + "/" + id[:4] + "/" + id + ".cacnk", the
// prefix being the store URL's path after the bucket): a zstd frame that
// a plain decoder (desync's) reads, also for data that does not compress
// and for an empty chunk. List reports them and nothing else beside them.
func TestCasyncObjects(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("cas")
	ctx := t.Context()
	s := open(t, casyncOptions(srv, "cas", "/store/a/"))
	if !s.Shared() || !stores.IsShared(s) {
		t.Error("a casync-layout store is not Shared")
	}
	if plain := open(t, testOptions(srv, "cas", "plain")); plain.Shared() {
		t.Error("a dualstore-layout store is Shared")
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	random := make([]byte, 100_000)
	for i := range random {
		random[i] = byte(i*7919>>3) ^ byte(i>>11) ^ byte(i*i)
	}
	var want []stores.ID
	for name, data := range map[string][]byte{
		"text":         bytes.Repeat([]byte("casync "), 10_000),
		"incompressed": random,
		"empty":        {},
		"zstd magic":   []byte(zstdMagic + "not a frame"),
	} {
		id := casyncID(data)
		want = append(want, id)
		if err := s.Put(ctx, id, data); err != nil {
			t.Fatalf("%s: Put: %v", name, err)
		}
		h := id.String()
		p := filepath.Join(srv.BucketDir("cas"), "store", "a", h[:4], h+".cacnk")
		stored, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: the object file: %v", name, err)
		}
		if !isZstd(stored) {
			t.Errorf("%s: %s is not a zstd frame", name, p)
		}
		if got, err := dec.DecodeAll(stored, nil); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: a plain zstd decoder reads %d bytes, %v; want %d", name, len(got), err, len(data))
		}
		if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: Get: %d bytes, %v", name, len(got), err)
		}
		if n, err := s.Stat(ctx, id); err != nil || n != int64(len(data)) {
			t.Errorf("%s: Stat: %d, %v; want %d", name, n, err, len(data))
		}
	}
	// A frame desync writes: its encoder's defaults, no single segment.
	data := bytes.Repeat([]byte("desync wrote this "), 50_000)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := casyncID(data)
	want = append(want, id)
	putObject(t, srv, "cas", "store/a/"+id.String()[:4]+"/"+id.String()+".cacnk", enc.EncodeAll(data, nil))
	enc.Close()
	if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Errorf("desync's frame: Get: %d bytes, %v", len(got), err)
	}
	if n, err := s.Stat(ctx, id); err != nil || (n != int64(len(data)) && n != -1) {
		t.Errorf("desync's frame: Stat = %d, %v; want %d or -1", n, err, len(data))
	}

	// Beside them: a meta object, a .chunk key (the other layout), an
	// uncompressed desync chunk (.cacnk is all this layout reads), and
	// chunks of another prefix. List reports the .cacnk chunks only.
	if err := s.PutMeta(ctx, "index/gen-1", []byte("meta")); err != nil {
		t.Fatal(err)
	}
	other := casyncID([]byte("other"))
	oh := other.String()
	putObject(t, srv, "cas", "store/a/"+oh[:4]+"/"+oh+".chunk", []byte("other"))
	putObject(t, srv, "cas", "store/a/"+oh[:4]+"/"+oh, []byte("other"))
	putObject(t, srv, "cas", "store/"+oh[:4]+"/"+oh+".cacnk", []byte("other"))
	var got []stores.ID
	if err := s.List(ctx, func(id stores.ID) error { got = append(got, id); return nil }); err != nil {
		t.Fatal(err)
	}
	cmp := func(a, b stores.ID) int { return bytes.Compare(a[:], b[:]) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get of a chunk stored only as .chunk = %v, want ErrNotFound", err)
	}
}

// TestCasyncCorrupt: an object that is no zstd frame, or a frame that
// does not decode, is corrupt (the tier falls back and heals), not a
// chunk returned as it is.
func TestCasyncCorrupt(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("bad")
	ctx := t.Context()
	s := open(t, casyncOptions(srv, "bad", "p"))
	for name, body := range map[string][]byte{
		"raw":       []byte("raw chunk bytes, as the dualstore layout keeps them"),
		"empty":     {},
		"truncated": []byte(zstdMagic + "\x00"),
		"garbage":   append([]byte(zstdMagic), bytes.Repeat([]byte{0xff}, 64)...),
	} {
		id := casyncID([]byte(name))
		h := id.String()
		putObject(t, srv, "bad", "p/"+h[:4]+"/"+h+".cacnk", body)
		if _, err := s.Get(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
			t.Errorf("%s: Get = %v, want ErrCorrupt", name, err)
		} else if !strings.Contains(err.Error(), h+".cacnk") {
			t.Errorf("%s: Get's error does not name the key: %v", name, err)
		}
		if name != "garbage" {
			if _, err := s.Stat(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
				t.Errorf("%s: Stat = %v, want ErrCorrupt", name, err)
			}
		}
		// Repair: Delete, then Put writes a good frame.
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, id, []byte(name)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, id); err != nil || string(got) != name {
			t.Errorf("%s: Get after repair = %q, %v", name, got, err)
		}
	}
}

func TestCasyncParseKey(t *testing.T) {
	id := casyncID([]byte("k"))
	h := id.String()
	s := &Store{keyPrefix: "p/", casync: true}
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"p/" + h[:4] + "/" + h + ".cacnk", true},
		{"p/" + h[:4] + "/" + h + ".chunk", false},
		{"p/" + h[:4] + "/" + h + ".cacnk.tmp", false},
		{"p/" + h[:4] + "/" + h, false},
		{h[:4] + "/" + h + ".cacnk", false},
		{"p/_meta/" + h[:4] + "/" + h + ".cacnk", false},
		{"p/_meta/" + h + ".cacnk", false},
	} {
		got, ok := s.parseKey(tc.key)
		if ok != tc.ok || (ok && got != id) {
			t.Errorf("parseKey(%q) = %v, %v; want ok=%v", tc.key, got, ok, tc.ok)
		}
	}
	if got := s.key(id); got != "p/"+h[:4]+"/"+h+".cacnk" {
		t.Errorf("key = %q", got)
	}
}

func TestCasyncConfig(t *testing.T) {
	for _, tc := range []struct {
		layout, want, hash string
		bad                bool
	}{
		{"", LayoutDualstore, "", false},
		{"dualstore", LayoutDualstore, "", false},
		{"casync", LayoutCasync, "sha512-256", false},
		{"desync", "", "", true},
	} {
		c := &Config{Endpoint: "http://127.0.0.1:1", Bucket: "bkt", Layout: tc.layout}
		err := c.Complete("primary[0]")
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "primary[0].layout") {
				t.Errorf("layout %q: Complete = %v, want an error naming the key", tc.layout, err)
			}
			continue
		}
		if err != nil || c.Layout != tc.want || c.RequiredHash() != tc.hash {
			t.Errorf("layout %q: Complete = %v, Layout %q, RequiredHash %q", tc.layout, err, c.Layout, c.RequiredHash())
		}
		if o, err := c.Options("x"); err != nil || o.Layout != tc.want {
			t.Errorf("layout %q: Options.Layout = %q, %v", tc.layout, o.Layout, err)
		}
	}
	if err := (Options{Endpoint: "http://h", Bucket: "bb1", Layout: "x"}).Validate(); err == nil {
		t.Error("Validate accepts layout x")
	}
}

func putObject(t *testing.T, srv *s3test.Server, bucket, key string, data []byte) {
	t.Helper()
	_, err := srv.Client().PutObject(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{DisableMultipart: true})
	if err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
}
