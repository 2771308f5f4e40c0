package s3

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// TestHostileObjects damages stored chunk objects the ways a broken or
// hostile bucket can: grown to 64 GiB (the server's backing file made
// sparse, so its Content-Length says so), an object of another size than
// the chunk's put over it, and in the casync layout a zstd bomb (a small
// frame that decodes to more than any chunk). Get and Stat are ErrCorrupt
// at once, naming the key, without the body being read (or decoded past
// the chunk's bound); Delete and Put then heal the chunk.
func TestHostileObjects(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("hostile")
	zeros := make([]byte, stores.MaxChunkSize+1<<20)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var bomb bytes.Buffer // streamed: the frame does not say its size
	enc.Reset(&bomb)
	if _, err := enc.Write(zeros); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, layout := range []string{LayoutDualstore, LayoutCasync} {
		t.Run(layout, func(t *testing.T) {
			o := testOptions(srv, "hostile", layout)
			o.Layout = layout
			s := open(t, o)
			ctx := t.Context()
			data := []byte(strings.Repeat("the chunk's bytes ", 50))
			id := idOf(data)
			key := s.key(id)
			file := filepath.Join(srv.BucketDir("hostile"), filepath.FromSlash(key))
			damages := map[string]func(t *testing.T){
				"sparse 64GiB": func(t *testing.T) {
					if err := os.Truncate(file, 64<<30); err != nil {
						t.Fatal(err)
					}
				},
				"another size": func(t *testing.T) {
					body := append(bytes.Clone(data), 'x')
					if layout == LayoutCasync {
						body = s.encode(body)
					}
					putObject(t, srv, "hostile", key, body)
				},
			}
			if layout == LayoutCasync {
				damages["zstd bomb"] = func(t *testing.T) { putObject(t, srv, "hostile", key, bomb.Bytes()) }
			}
			for name, damage := range damages {
				t.Run(name, func(t *testing.T) {
					if err := s.Put(ctx, id, data); err != nil {
						t.Fatal(err)
					}
					damage(t)
					ectx := stores.WithExpectedSize(ctx, id, int64(len(data)))
					for _, op := range []string{"get", "stat"} {
						if op == "stat" && name != "sparse 64GiB" {
							continue // Stat reports the size it finds (the bomb's frame says none)
						}
						start := time.Now()
						var err error
						if op == "get" {
							_, err = s.Get(ectx, id)
						} else {
							_, err = s.Stat(ectx, id)
						}
						if !errors.Is(err, stores.ErrCorrupt) || !strings.Contains(err.Error(), key) {
							t.Errorf("%s: %v, want ErrCorrupt naming %s", op, err, key)
						}
						if d := time.Since(start); d > 5*time.Second {
							t.Errorf("%s took %s", op, d)
						}
					}
					if name != "another size" {
						// No expected size: the max alone refuses it.
						if _, err := s.Get(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
							t.Errorf("get without an expected size: %v, want ErrCorrupt", err)
						}
					}
					if err := s.Delete(ctx, id); err != nil {
						t.Fatal(err)
					}
					if err := s.Put(ctx, id, data); err != nil {
						t.Fatal(err)
					}
					if got, err := s.Get(ectx, id); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("Get after the heal: %d bytes, %v", len(got), err)
					}
				})
			}
		})
	}
}

// TestEndlessBody: a server that sends a body without a Content-Length,
// and never ends it, gets no more than the chunk's bound read (plus one
// byte): Get is ErrCorrupt, not a hang or an allocation without end.
func TestEndlessBody(t *testing.T) {
	data := []byte("the chunk")
	id := idOf(data)
	f := newFakeS3(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("Range") != "" || !strings.HasSuffix(r.URL.Path, id.String()+chunkExt) {
			object(w, r, data)
			return
		}
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"0123"`)
		w.WriteHeader(http.StatusOK) // chunked: no Content-Length
		block := bytes.Repeat([]byte("x"), 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	})
	s, err := New(t.Context(), f.options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, ctx := range []context.Context{t.Context(), stores.WithExpectedSize(t.Context(), id, int64(len(data)))} {
		if _, err := s.Get(ctx, id); !errors.Is(err, stores.ErrCorrupt) {
			t.Errorf("Get of an endless body: %v, want ErrCorrupt", err)
		}
	}
}
