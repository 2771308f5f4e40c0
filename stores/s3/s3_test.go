package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/s3/s3test"
	"github.com/dualstore/dualstore/stores/storetest"
)

func idOf(data []byte) stores.ID { return sha256.Sum256(data) }

// testOptions are options for srv's bucket with the root credentials and
// quick timeouts.
func testOptions(srv *s3test.Server, bucket, prefix string) Options {
	return Options{
		Endpoint:   srv.Endpoint(),
		Bucket:     bucket,
		Prefix:     prefix,
		Region:     s3test.Region,
		Addressing: AddressingPath,
		AccessKey:  s3test.AccessKey,
		SecretKey:  s3test.SecretKey,
		Timeout:    10 * time.Second,
	}
}

func open(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New(%v): %v", opts, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clearAWSEnv makes the credential chain see nothing of the machine's own
// AWS setup.
func clearAWSEnv(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("conformance")
	var n atomic.Int64
	t.Run("prefix", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) stores.Store {
			return open(t, testOptions(srv, "conformance", fmt.Sprintf("run/%d", n.Add(1))))
		})
	})
	t.Run("bucket root", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) stores.Store {
			bucket := fmt.Sprintf("root-%d", n.Add(1))
			o := testOptions(srv, bucket, "")
			o.CreateBucket = true
			return open(t, o)
		})
	})
	t.Run("concurrency 1", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) stores.Store {
			o := testOptions(srv, "conformance", fmt.Sprintf("run/%d", n.Add(1)))
			o.Concurrency = 1
			return open(t, o)
		})
	})
}

// TestLayout checks the key layout <prefix>/<4 hex>/<64 hex>.chunk with the
// chunk's bytes as they are, on the server's disk.
func TestLayout(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("layout")
	s := open(t, testOptions(srv, "layout", "/deep/prefix/"))
	data := []byte("layout")
	id := idOf(data)
	if err := s.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(srv.BucketDir("layout"), "deep", "prefix", id.String()[:4], id.String()+".chunk")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object file %s = %q, %v", p, got, err)
	}
	if s.Name() != "s3://layout/deep/prefix" || s.Type() != "s3" {
		t.Errorf("Name, Type = %q, %q", s.Name(), s.Type())
	}
	if want := srv.Endpoint() + "/layout/deep/prefix"; s.Where() != want {
		t.Errorf("Where = %q, want %q", s.Where(), want)
	}

	// Put of a present chunk does not rewrite it.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("second Put rewrote the object (mtime %v, want %v): %v", fi.ModTime(), old, err)
	}
}

// TestNotFound: a missing key is ErrNotFound, and nothing else is.
func TestNotFound(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("notfound")
	s := open(t, testOptions(srv, "notfound", "p"))
	id := idOf([]byte("never stored"))
	_, err := s.Get(t.Context(), id)
	if !errors.Is(err, stores.ErrNotFound) || errors.Is(err, ErrAuth) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Get of a missing chunk = %v, want ErrNotFound only", err)
	}
	if !strings.Contains(err.Error(), srv.Endpoint()+"/notfound/p") || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("error %q does not name the store and the chunk", err)
	}
	if _, err := s.Stat(t.Context(), id); !errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Stat of a missing chunk = %v, want ErrNotFound", err)
	}

	// A bucket that went away is not a missing chunk.
	s2 := open(t, testOptions(srv, "notfound", "p"))
	if err := os.RemoveAll(srv.BucketDir("notfound")); err != nil {
		t.Fatal(err)
	}
	_, err = s2.Get(t.Context(), id)
	if !errors.Is(err, ErrNoBucket) || errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get from a deleted bucket = %v, want ErrNoBucket and not ErrNotFound", err)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	o := testOptions(srv, "not-there", "")
	_, err := New(t.Context(), o)
	if !errors.Is(err, ErrNoBucket) || !strings.Contains(err.Error(), srv.Endpoint()+"/not-there") {
		t.Fatalf("New with a missing bucket = %v, want ErrNoBucket naming endpoint and bucket", err)
	}
	o.CreateBucket = true
	s := open(t, o)
	if err := s.Put(t.Context(), idOf([]byte("x")), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.BucketDir("not-there")); err != nil {
		t.Errorf("CreateBucket did not create the bucket: %v", err)
	}
	open(t, o) // an existing bucket with CreateBucket set is fine
}

// TestAuth: credentials the server refuses are reported as ErrAuth, by New
// and by every call, never as a missing chunk, and the secret appears in
// no error.
func TestAuth(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("auth")
	good := open(t, testOptions(srv, "auth", ""))
	data := []byte("present")
	id := idOf(data)
	if err := good.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	const badSecret = "wrong-secret-value-42"
	for name, o := range map[string]Options{
		"wrong secret": func() Options { o := testOptions(srv, "auth", ""); o.SecretKey = badSecret; return o }(),
		"unknown key": func() Options {
			o := testOptions(srv, "auth", "")
			o.AccessKey = "nobody"
			o.SecretKey = badSecret
			return o
		}(),
		"anonymous": func() Options {
			o := testOptions(srv, "auth", "")
			o.AccessKey, o.SecretKey, o.Anonymous = "", "", true
			return o
		}(),
		"session token": func() Options { o := testOptions(srv, "auth", ""); o.SessionToken = "bogus-token"; return o }(),
	} {
		t.Run(name, func(t *testing.T) {
			if o.Anonymous {
				clearAWSEnv(t)
			}
			_, err := New(t.Context(), o)
			if !errors.Is(err, ErrAuth) || errors.Is(err, stores.ErrNotFound) {
				t.Fatalf("New = %v, want ErrAuth and not ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), srv.Endpoint()+"/auth") {
				t.Errorf("New error %q does not name endpoint and bucket", err)
			}
			// Every call of a store that skipped New's check.
			s, err := newStore(o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := t.Context()
			_, gerr := s.Get(ctx, id)
			_, serr := s.Stat(ctx, id)
			_, merr := s.Get(ctx, idOf([]byte("missing")))
			errs := map[string]error{
				"Get": gerr, "Stat": serr, "Get missing": merr,
				"Put":    s.Put(ctx, idOf([]byte("new")), []byte("new")),
				"Delete": s.Delete(ctx, id),
				"List":   s.List(ctx, func(stores.ID) error { return nil }),
			}
			for op, err := range errs {
				if !errors.Is(err, ErrAuth) || errors.Is(err, stores.ErrNotFound) {
					t.Errorf("%s = %v, want ErrAuth and not ErrNotFound", op, err)
				}
				if err != nil && strings.Contains(err.Error(), badSecret) {
					t.Errorf("%s error shows the secret: %v", op, err)
				}
			}
			if s.out.down() {
				t.Error("auth failures opened the outage window; the server did answer")
			}
		})
	}
	if _, err := good.Get(t.Context(), id); err != nil {
		t.Errorf("the chunk is gone after the refused calls: %v", err)
	}
}

// TestServerDown: a stopped server fails calls quickly with
// ErrUnavailable (never ErrNotFound), later calls fail at once while the
// outage window is open, and calls work again once it is back.
func TestServerDown(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("down")
	o := testOptions(srv, "down", "")
	o.Retries = 2
	o.OutageBackoff = 300 * time.Millisecond
	s := open(t, o)
	data := []byte("survives")
	id := idOf(data)
	if err := s.Put(t.Context(), id, data); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	start := time.Now()
	_, err := s.Get(t.Context(), id)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, stores.ErrNotFound) {
		t.Fatalf("Get with the server down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get with the server down took %s", d)
	}
	start = time.Now()
	err = s.Put(t.Context(), idOf([]byte("new")), []byte("new"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not trying") {
		t.Errorf("Put right after = %v, want a fail-fast ErrUnavailable", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("fail-fast Put took %s", d)
	}

	srv.Start()
	storetest.WaitFor(t, 20*time.Second, func() error {
		got, err := s.Get(t.Context(), id)
		if err == nil {
			if !bytes.Equal(got, data) {
				t.Fatalf("Get after the restart = %q", got)
			}
			return nil
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get after the restart = %v", err)
		}
		return fmt.Errorf("the store did not recover: %w", err)
	})
	if s.out.down() {
		t.Error("outage window still open after a successful call")
	}
}

// blackHole accepts connections and never answers: a hung server.
// accepted tells how many connections it has accepted so far.
func blackHole(t *testing.T) (endpoint string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	accepted = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	return "http://" + l.Addr().String(), accepted
}

// TestTimeout: a server that accepts but never answers fails calls after
// Timeout with stores.ErrTimeout instead of hanging; Close ends a call
// that waits.
func TestTimeout(t *testing.T) {
	ep, accepted := blackHole(t)
	o := Options{Endpoint: ep, Bucket: "hung", Region: "us-east-1", AccessKey: "a", SecretKey: "b", Timeout: 300 * time.Millisecond}
	start := time.Now()
	_, err := New(t.Context(), o)
	if !errors.Is(err, stores.ErrTimeout) || !strings.Contains(err.Error(), ep+"/hung") {
		t.Errorf("New against a hung server = %v, want ErrTimeout naming it", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("New took %s with a 300ms timeout", d)
	}

	s, err := newStore(o)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = s.Get(t.Context(), idOf([]byte("x")))
	if !errors.Is(err, stores.ErrTimeout) || errors.Is(err, stores.ErrNotFound) {
		t.Errorf("Get = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Get took %s with a 300ms timeout", d)
	}
	s.Close()

	// Close ends a call in progress.
	o.Timeout = time.Minute
	o.OutageBackoff = -1
	s, err = newStore(o)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	conns := accepted()
	go func() {
		_, err := s.Get(context.Background(), idOf([]byte("x")))
		errc <- err
	}()
	// Close once the Get is talking to the server.
	storetest.WaitFor(t, 10*time.Second, func() error {
		if accepted() == conns {
			return errors.New("the Get has not connected to the server")
		}
		return nil
	})
	start = time.Now()
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, stores.ErrClosed) {
			t.Errorf("Get ended by Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a running Get")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}

	// The caller's own deadline is the caller's, not a store timeout, and
	// says nothing about the server...
	o.OutageBackoff = time.Minute
	s, err = newStore(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = s.Get(ctx, idOf([]byte("x")))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stores.ErrTimeout) {
		t.Errorf("Get past the caller's deadline = %v, want DeadlineExceeded only", err)
	}
	if s.out.down() {
		t.Error("a caller's deadline opened the outage window")
	}
	// ...unless it is a store timeout (the dual manager's store_timeout).
	ctx, cancel = context.WithTimeoutCause(t.Context(), 200*time.Millisecond, stores.ErrTimeout)
	defer cancel()
	if _, err = s.Get(ctx, idOf([]byte("x"))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past the store timeout = %v", err)
	}
	if !s.out.down() {
		t.Error("a store timeout did not open the outage window")
	}
}

// TestPrefixIsolation: stores on one bucket with different prefixes (and
// the bucket root) see only their own chunks, and List skips every key
// that is not exactly a chunk of the store.
func TestPrefixIsolation(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("shared")
	a := open(t, testOptions(srv, "shared", "a"))
	b := open(t, testOptions(srv, "shared", "b"))
	ab := open(t, testOptions(srv, "shared", "a/b")) // nested below a
	root := open(t, testOptions(srv, "shared", ""))
	ctx := t.Context()
	put := func(s *Store, text string) stores.ID {
		data := []byte(text)
		if err := s.Put(ctx, idOf(data), data); err != nil {
			t.Fatal(err)
		}
		return idOf(data)
	}
	ida, idb, idab, idr := put(a, "in a"), put(b, "in b"), put(ab, "in a/b"), put(root, "in root")

	// Foreign objects: not chunks, upper case, misplaced, other suffix.
	raw := srv.Client()
	other := idOf([]byte("other"))
	upper := strings.ToUpper(other.String())
	for _, key := range []string{
		"a/README",
		"a/zz/x.chunk",
		"a/" + upper[:4] + "/" + upper + ".chunk",
		"a/0000/" + other.String() + ".chunk",
		"a/" + other.String()[:4] + "/" + other.String() + ".cacnk",
		"a/" + other.String()[:4] + "/" + other.String() + ".chunk/x",
		other.String()[:4] + "/" + other.String() + ".chunk.tmp",
	} {
		if _, err := raw.PutObject(ctx, "shared", key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("putting %s: %v", key, err)
		}
	}

	list := func(s *Store) []stores.ID {
		var ids []stores.ID
		if err := s.List(ctx, func(id stores.ID) error { ids = append(ids, id); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, tc := range []struct {
		s    *Store
		want stores.ID
	}{{a, ida}, {b, idb}, {ab, idab}, {root, idr}} {
		if got := list(tc.s); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: List = %v, want only %s", tc.s.Name(), got, tc.want)
		}
		for _, other := range []stores.ID{ida, idb, idab, idr} {
			_, err := tc.s.Get(ctx, other)
			if other == tc.want && err != nil {
				t.Errorf("%s: Get of its own chunk: %v", tc.s.Name(), err)
			}
			if other != tc.want && !errors.Is(err, stores.ErrNotFound) {
				t.Errorf("%s: Get of another prefix's chunk = %v, want ErrNotFound", tc.s.Name(), err)
			}
		}
	}
	if err := a.Delete(ctx, idb); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, idb); err != nil {
		t.Errorf("Delete in a removed b's chunk: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	id := idOf([]byte("k"))
	h := id.String()
	s := &Store{keyPrefix: "p/"}
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"p/" + h[:4] + "/" + h + ".chunk", true},
		{h[:4] + "/" + h + ".chunk", false},
		{"p/" + h[:4] + "/" + h, false},
		{"p/" + h[:3] + "/" + h + ".chunk", false},
		{"p/ffff/" + h + ".chunk", h[:4] == "ffff"},
		{"p/" + h[:4] + "/" + strings.ToUpper(h) + ".chunk", false},
		{"p/" + h[:4] + "/x/" + h + ".chunk", false},
		{"q/" + h[:4] + "/" + h + ".chunk", false},
		// Meta objects, even one named like a chunk's key.
		{"p/_meta/" + h[:4] + "/" + h + ".chunk", false},
		{"p/_meta/index", false},
		{"p/_meta/" + h + ".chunk", false},
	} {
		got, ok := s.parseKey(tc.key)
		if ok != tc.ok || (ok && got != id) {
			t.Errorf("parseKey(%q) = %v, %v; want ok=%v", tc.key, got, ok, tc.ok)
		}
	}
	if got := s.key(id); got != "p/"+h[:4]+"/"+h+".chunk" {
		t.Errorf("key = %q", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	base := Options{Endpoint: "s3.example.test", Bucket: "chunks", AccessKey: "a", SecretKey: "b"}
	with := func(f func(*Options)) Options { o := base; f(&o); return o }
	for _, tc := range []struct {
		name string
		opts Options
		want string // "" = valid
	}{
		{"minimal", base, ""},
		{"no credentials is valid (chain)", with(func(o *Options) { o.AccessKey, o.SecretKey = "", "" }), ""},
		{"host:port", with(func(o *Options) { o.Endpoint = "127.0.0.1:9000" }), ""},
		{"http URL", with(func(o *Options) { o.Endpoint = "http://127.0.0.1:9000" }), ""},
		{"https URL", with(func(o *Options) { o.Endpoint = "https://s3.example.test/" }), ""},
		{"ipv6", with(func(o *Options) { o.Endpoint = "[::1]:9000" }), ""},
		{"prefix", with(func(o *Options) { o.Prefix = "/a/b/" }), ""},
		{"no endpoint", with(func(o *Options) { o.Endpoint = "" }), "endpoint not set"},
		{"endpoint with path", with(func(o *Options) { o.Endpoint = "http://h:9000/bucket" }), "path is not allowed"},
		{"endpoint with credentials", with(func(o *Options) { o.Endpoint = "http://key:pw@h:9000" }), "do not belong in the URL"},
		{"endpoint scheme", with(func(o *Options) { o.Endpoint = "ftp://h" }), "want http or https"},
		{"https but TLS off", with(func(o *Options) { o.Endpoint = "https://h"; o.DisableTLS = true }), "TLS is disabled"},
		{"bad port", with(func(o *Options) { o.Endpoint = "h:" }), "empty host or port"},
		{"no bucket", with(func(o *Options) { o.Bucket = "" }), "bucket not set"},
		{"bucket upper case", with(func(o *Options) { o.Bucket = "Chunks" }), "lower-case"},
		{"bucket short", with(func(o *Options) { o.Bucket = "ab" }), "3 to 63"},
		{"bucket dash end", with(func(o *Options) { o.Bucket = "chunks-" }), "start and end"},
		{"bucket dots", with(func(o *Options) { o.Bucket = "a..b" }), "two dots"},
		{"prefix dot dot", with(func(o *Options) { o.Prefix = "a/../b" }), "'..'"},
		{"prefix double slash", with(func(o *Options) { o.Prefix = "a//b" }), "empty"},
		{"prefix control", with(func(o *Options) { o.Prefix = "a\nb" }), "control"},
		{"prefix in meta objects", with(func(o *Options) { o.Prefix = "a/_meta/b" }), "meta objects"},
		{"prefix meta-like", with(func(o *Options) { o.Prefix = "a/_meta_/_metadata" }), ""},
		{"key without secret", with(func(o *Options) { o.SecretKey = "" }), "set together"},
		{"secret without key", with(func(o *Options) { o.AccessKey = "" }), "set together"},
		{"token without keys", with(func(o *Options) { o.AccessKey, o.SecretKey, o.SessionToken = "", "", "t" }), "session_token"},
		{"keys and profile", with(func(o *Options) { o.Profile = "p" }), "exclude profile"},
		{"negative concurrency", with(func(o *Options) { o.Concurrency = -1 }), "concurrency"},
		{"bad addressing", with(func(o *Options) { o.Addressing = 7 }), "addressing"},
		{"bad region", with(func(o *Options) { o.Region = "us east" }), "region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want ok", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error shows a URL password: %v", err)
			}
		})
	}
}

func TestEndpointAndDefaults(t *testing.T) {
	for _, tc := range []struct {
		endpoint   string
		disableTLS bool
		host       string
		secure     bool
	}{
		{"s3.example.test", false, "s3.example.test", true},
		{"s3.example.test", true, "s3.example.test", false},
		{"http://127.0.0.1:9000", false, "127.0.0.1:9000", false},
		{"https://s3.example.test:8443/", false, "s3.example.test:8443", true},
	} {
		host, secure, err := Options{Endpoint: tc.endpoint, DisableTLS: tc.disableTLS}.endpoint()
		if err != nil || host != tc.host || secure != tc.secure {
			t.Errorf("endpoint(%q, DisableTLS %v) = %q, %v, %v; want %q, %v", tc.endpoint, tc.disableTLS, host, secure, err, tc.host, tc.secure)
		}
	}
	var o Options
	if o.timeout() != DefaultTimeout || o.attempts() != DefaultRetries+1 || o.concurrency() != DefaultConcurrency || o.outageBackoff() != DefaultOutageBackoff {
		t.Errorf("zero Options: timeout %s attempts %d concurrency %d backoff %s", o.timeout(), o.attempts(), o.concurrency(), o.outageBackoff())
	}
	o = Options{Timeout: -1, Retries: -1, OutageBackoff: -1}
	if o.timeout() != 0 || o.attempts() != 1 || o.outageBackoff() != 0 {
		t.Errorf("negative Options: timeout %s attempts %d backoff %s", o.timeout(), o.attempts(), o.outageBackoff())
	}
	o = Options{Retries: 5, OutageBackoff: time.Hour}
	if o.attempts() != 6 || o.outageBackoff() != maxOutageBackoff {
		t.Errorf("attempts %d backoff %s", o.attempts(), o.outageBackoff())
	}
}

func TestParseAddressing(t *testing.T) {
	for in, want := range map[string]Addressing{
		"": AddressingAuto, "auto": AddressingAuto, "AUTO": AddressingAuto,
		"true": AddressingPath, "path": AddressingPath,
		"false": AddressingVirtualHost, "virtual-host": AddressingVirtualHost, "virtual": AddressingVirtualHost,
	} {
		if got, err := ParseAddressing(in); err != nil || got != want {
			t.Errorf("ParseAddressing(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseAddressing("sideways"); err == nil || !strings.Contains(err.Error(), "sideways") {
		t.Errorf("ParseAddressing(sideways) = %v", err)
	}
	for _, a := range []Addressing{AddressingAuto, AddressingPath, AddressingVirtualHost} {
		if got, err := ParseAddressing(a.String()); err != nil || got != a {
			t.Errorf("ParseAddressing(%v.String()) = %v, %v", a, got, err)
		}
	}
}

// TestOptionsRedacted: no fmt verb prints a secret.
func TestOptionsRedacted(t *testing.T) {
	o := Options{Endpoint: "http://h:1", Bucket: "bkt", AccessKey: "AKIDSECRETID", SecretKey: "s3cr3t-value", SessionToken: "tok3n-value"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, o)
		for _, secret := range []string{o.AccessKey, o.SecretKey, o.SessionToken} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows %q: %s", verb, secret, out)
			}
		}
		if !strings.Contains(out, "REDACTED") || !strings.Contains(out, `Bucket:"bkt"`) {
			t.Errorf("%s: %s", verb, out)
		}
	}
	s, err := newStore(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, s)
		if strings.Contains(out, o.SecretKey) || strings.Contains(out, o.AccessKey) || !strings.Contains(out, "http://h:1/bkt") {
			t.Errorf("%s of a Store: %s", verb, out)
		}
	}
}

// TestCredentialChain: explicit keys, then the environment, then the
// shared credentials file, as the AWS tools do.
func TestCredentialChain(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("creds")
	noKeys := testOptions(srv, "creds", "")
	noKeys.AccessKey, noKeys.SecretKey = "", ""
	writeCreds := func(t *testing.T, profile, key, secret string) string {
		p := filepath.Join(t.TempDir(), "credentials")
		text := fmt.Sprintf("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, key, secret)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(t *testing.T, o Options, source string) {
		t.Helper()
		s, err := New(t.Context(), o)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer s.Close()
		if !strings.Contains(s.CredentialSource(), source) {
			t.Errorf("CredentialSource = %q, want it to mention %q", s.CredentialSource(), source)
		}
		if strings.Contains(s.CredentialSource(), s3test.SecretKey) {
			t.Errorf("CredentialSource shows the secret")
		}
	}

	t.Run("environment", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
		check(t, noKeys, "environment")
	})
	t.Run("config beats environment", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		check(t, testOptions(srv, "creds", ""), "config")
	})
	t.Run("environment beats shared file", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeCreds(t, "default-ignored", "wrong", "wrong"))
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
		check(t, noKeys, "environment")
	})
	t.Run("shared file via AWS_PROFILE", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeCreds(t, "dualstore", s3test.AccessKey, s3test.SecretKey))
		t.Setenv("AWS_PROFILE", "dualstore")
		check(t, noKeys, "profile dualstore")
	})
	t.Run("shared file in HOME", func(t *testing.T) {
		clearAWSEnv(t)
		p := writeCreds(t, "dualstore", s3test.AccessKey, s3test.SecretKey)
		home := os.Getenv("HOME")
		if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		o := noKeys
		o.Profile = "dualstore"
		check(t, o, "profile dualstore")
	})
	t.Run("explicit file and profile", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "wrong") // an explicit profile wins over the environment
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		o := noKeys
		o.CredentialsFile = writeCreds(t, "mine", s3test.AccessKey, s3test.SecretKey)
		o.Profile = "mine"
		check(t, o, "profile mine")
	})
	t.Run("missing profile", func(t *testing.T) {
		clearAWSEnv(t)
		o := noKeys
		o.CredentialsFile = writeCreds(t, "mine", s3test.AccessKey, s3test.SecretKey)
		o.Profile = "other"
		if _, err := New(t.Context(), o); !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "other") {
			t.Errorf("New = %v, want ErrNoCredentials naming the profile", err)
		}
	})
	t.Run("none", func(t *testing.T) {
		clearAWSEnv(t)
		_, err := New(t.Context(), noKeys)
		if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Errorf("New = %v, want ErrNoCredentials saying where to put them", err)
		}
	})
}

// fakeS3 is an S3 endpoint for behaviour versitygw cannot be made to show
// (transient failures, cut bodies, slowness). handle gets every request;
// it counts the requests in flight.
type fakeS3 struct {
	srv         *httptest.Server
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	requests    atomic.Int64
}

func newFakeS3(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64)) *fakeS3 {
	f := &fakeS3{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.requests.Add(1)
		cur := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		for {
			m := f.maxInFlight.Load()
			if cur <= m || f.maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		handle(w, r, n)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeS3) options() Options {
	return Options{Endpoint: f.srv.URL, Bucket: "fake", Region: "us-east-1", AccessKey: "a", SecretKey: "b", Addressing: AddressingPath, Timeout: 10 * time.Second}
}

// object answers a GET with data (or its first byte for a ranged GET).
func object(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.Header().Set("ETag", `"0123"`)
	if r.Header.Get("Range") == "bytes=0-0" && len(data) > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(data)))
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[:1])
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, code)
}

// TestRetries: transient failures (503, SlowDown, a body cut short) are
// retried, up to Retries; permanent ones are not.
func TestRetries(t *testing.T) {
	data := bytes.Repeat([]byte("retry me "), 1000)
	id := idOf(data)
	for _, tc := range []struct {
		name     string
		retries  int
		fail     func(w http.ResponseWriter) // a failing answer
		failures int64                       // how many answers fail before the good one
		ok       bool
		requests int64
	}{
		{"503 twice", 3, func(w http.ResponseWriter) { s3Error(w, 503, "ServiceUnavailable") }, 2, true, 3},
		{"SlowDown", 3, func(w http.ResponseWriter) { s3Error(w, 503, "SlowDown") }, 1, true, 2},
		{"500 past the retries", 1, func(w http.ResponseWriter) { s3Error(w, 500, "InternalError") }, 5, false, 2},
		{"no retries", -1, func(w http.ResponseWriter) { s3Error(w, 503, "ServiceUnavailable") }, 1, false, 1},
		{"cut body", 3, func(w http.ResponseWriter) {
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:100]) // and the handler returns: the connection is cut
		}, 2, true, 3},
		{"permanent error", 3, func(w http.ResponseWriter) { s3Error(w, 400, "InvalidArgument") }, 5, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeS3(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				if n <= tc.failures {
					tc.fail(w)
					return
				}
				object(w, r, data)
			})
			o := f.options()
			o.Retries = tc.retries
			s, err := newStore(o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := s.Get(t.Context(), id)
			if tc.ok && (err != nil || !bytes.Equal(got, data)) {
				t.Errorf("Get = %d bytes, %v; want the data after retries", len(got), err)
			}
			if !tc.ok && err == nil {
				t.Errorf("Get succeeded, want an error")
			}
			if !tc.ok && (errors.Is(err, stores.ErrNotFound) || errors.Is(err, ErrUnavailable)) {
				t.Errorf("Get = %v: a server error is neither a missing chunk nor an outage", err)
			}
			if n := f.requests.Load(); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
		})
	}
}

// TestConcurrencyBound: no more than Concurrency calls talk to the server
// at once, however many callers there are.
func TestConcurrencyBound(t *testing.T) {
	data := []byte("slow")
	f := newFakeS3(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		time.Sleep(20 * time.Millisecond) // a slow server, so that callers pile up: not synchronisation
		object(w, r, data)
	})
	o := f.options()
	o.Concurrency = 3
	s, err := newStore(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			if _, err := s.Get(t.Context(), idOf(data)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := f.maxInFlight.Load(); m > 3 || m < 2 {
		t.Errorf("%d requests in flight at most, want up to 3 (and more than 1)", m)
	}
	// A caller waiting for a slot gives up with its context.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	for range 3 {
		s.sem <- struct{}{}
	}
	_, err = s.Get(ctx, idOf(data))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get waiting for a slot past its deadline = %v", err)
	}
	for range 3 {
		<-s.sem
	}
}

func TestOutageWindow(t *testing.T) {
	o := outage{base: 40 * time.Millisecond}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	o.failed(errors.New("connection refused"))
	if err := o.check(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("check in the window = %v", err)
	}
	o.failed(errors.New("again")) // same window: no doubling
	if o.backoff != 40*time.Millisecond {
		t.Errorf("backoff %s after two failures in one window", o.backoff)
	}
	time.Sleep(50 * time.Millisecond) // the 40ms window passing is what is tested: not synchronisation
	if err := o.check(); err != nil {
		t.Fatalf("check after the window = %v", err)
	}
	o.failed(errors.New("still down"))
	if o.backoff != 80*time.Millisecond {
		t.Errorf("backoff %s, want doubled", o.backoff)
	}
	for range 20 {
		o.until = time.Time{}
		o.failed(errors.New("down"))
	}
	if o.backoff != maxOutageBackoff {
		t.Errorf("backoff %s, want capped at %s", o.backoff, maxOutageBackoff)
	}
	o.ok()
	if err := o.check(); err != nil || o.down() {
		t.Errorf("check after ok = %v", err)
	}
	off := outage{}
	off.failed(errors.New("x"))
	if off.check() != nil {
		t.Error("a disabled breaker opened")
	}
}
