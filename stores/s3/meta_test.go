package s3

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/s3/s3test"
)

// TestMetaLayout: a meta object is the object <prefix>/_meta/<name> with
// its bytes as they are; stores of other prefixes, nested ones included,
// neither see it as a meta object nor as a chunk.
func TestMetaLayout(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("meta")
	ctx := t.Context()
	a := open(t, testOptions(srv, "meta", "/a/"))
	ab := open(t, testOptions(srv, "meta", "a/b"))
	root := open(t, testOptions(srv, "meta", ""))
	data := []byte("index backup")
	if err := a.PutMeta(ctx, "index/gen-1", data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(srv.BucketDir("meta"), "a", "_meta", "index", "gen-1")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object file %s = %q, %v", p, got, err)
	}
	if err := root.PutMeta(ctx, "index/gen-1", []byte("root's")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *Store
		want []stores.MetaInfo
	}{
		{a, []stores.MetaInfo{{Name: "index/gen-1", Size: int64(len(data))}}},
		{ab, nil},
		{root, []stores.MetaInfo{{Name: "index/gen-1", Size: 6}}},
	} {
		got, err := tc.s.ListMeta(ctx, "")
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: ListMeta = %v, %v; want %v", tc.s.Name(), got, err, tc.want)
		}
		n := 0
		if err := tc.s.List(ctx, func(stores.ID) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("%s: List beside meta objects = %d chunks, %v", tc.s.Name(), n, err)
		}
	}
	if _, err := ab.GetMeta(ctx, "index/gen-1", 100); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("GetMeta of another prefix's object = %v, want ErrNotFound", err)
	}
}

// TestMetaListSkipsForeign: keys below _meta/ that are no valid meta name
// are not reported, and a prefix no name can start with is not asked.
func TestMetaListSkipsForeign(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("foreign")
	ctx := t.Context()
	s := open(t, testOptions(srv, "foreign", "p"))
	raw := srv.Client()
	for _, key := range []string{"p/_meta/a b", "p/_meta/x~y", "p/_meta/ok"} {
		if _, err := raw.PutObject(ctx, "foreign", key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("putting %s: %v", key, err)
		}
	}
	got, err := s.ListMeta(ctx, "")
	if want := []stores.MetaInfo{{Name: "ok", Size: 1}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ListMeta = %v, %v; want %v", got, err, want)
	}
	for _, p := range []string{"a b", "../", "ok/./", "/"} {
		if got, err := s.ListMeta(ctx, p); err != nil || len(got) != 0 {
			t.Errorf("ListMeta(%q) = %v, %v; want nothing", p, got, err)
		}
	}
}

func TestMetaPrefixPossible(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"", true}, {"a", true}, {"a/", true}, {"a/.", true}, {"a/..", true}, {".", true}, {"..", true},
		{"a/b/c", true}, {strings.Repeat("a", stores.MaxMetaName), true}, {strings.Repeat("a", stores.MaxMetaName-1) + "/", false},
		{"/", false}, {"/a", false}, {"a//", false}, {"../", false}, {"a/./", false}, {"a b", false}, {"a~", false},
		{strings.Repeat("a", stores.MaxMetaName+1), false},
	} {
		if got := metaPrefixPossible(tc.p); got != tc.ok {
			t.Errorf("metaPrefixPossible(%q) = %v, want %v", tc.p, got, tc.ok)
		}
	}
}

// TestMetaOverMax: an object whose Content-Length is over max is refused
// from its headers, without waiting for a body; one whose body runs past
// max (no or a false Content-Length) is cut at max+1 bytes.
func TestMetaOverMax(t *testing.T) {
	release := make(chan struct{})
	f := newFakeS3(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		switch {
		case strings.HasSuffix(r.URL.Path, "/huge"):
			// Headers only, then a body that never comes.
			w.Header().Set("Content-Length", "1099511627776")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-release
		case strings.HasSuffix(r.URL.Path, "/endless"):
			// Chunked, no Content-Length: more than max arrives.
			w.WriteHeader(http.StatusOK)
			for range 100 {
				w.Write(bytes.Repeat([]byte("x"), 1000))
			}
		default:
			s3Error(w, http.StatusNotFound, "NoSuchKey")
		}
	})
	// After newFakeS3's cleanup, so it runs first: the server's Close
	// waits for the handler.
	t.Cleanup(func() { close(release) })
	s, err := newStore(f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"huge", "endless"} {
		start := time.Now()
		got, err := s.GetMeta(t.Context(), name, 4096)
		if !errors.Is(err, stores.ErrCorrupt) || got != nil {
			t.Errorf("GetMeta(%s) = %d bytes, %v; want ErrCorrupt", name, len(got), err)
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name the object", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("GetMeta(%s) took %s: it waited for the body", name, d)
		}
	}
	if _, err := s.GetMeta(t.Context(), "missing", 4096); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("GetMeta of a missing object = %v, want ErrNotFound", err)
	}
}
