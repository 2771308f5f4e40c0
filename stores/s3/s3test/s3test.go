// Package s3test runs a real S3 server for tests: the versitygw gateway
// with its posix backend on a temp dir, listening on 127.0.0.1. Tests of
// the s3 store and the integration tests (which mount with an S3 tier) use
// it; it is not test code itself so that both can import it.
//
// The server binary is DUALSTORE_VERSITYGW, else bin/versitygw in the
// repository (`make versitygw` installs the pinned version there), else
// versitygw on PATH. Without one a test skips loudly, and fails when
// CI=true. Each Server is stopped in t.Cleanup; only the process it started
// is ever signalled.
//
// It imports minio-go (to create buckets) but nothing of dualstore.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Root credentials of every test server. They are test-only values: the
// server listens on 127.0.0.1 and lives as long as one test.
const (
	AccessKey = "dualstore-test"
	SecretKey = "dualstore-test-secret-0123456789"
	Region    = "us-east-1"
)

const (
	// readyDeadline bounds a (re)start; two busy cores can be slow.
	readyDeadline = 30 * time.Second
	// stopDeadline is how long Stop waits after SIGTERM before SIGKILL.
	stopDeadline = 5 * time.Second
)

// Server is one versitygw process serving Dir. Safe for use by one test
// goroutine at a time (Stop and Start are not concurrent-safe).
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	addr string // 127.0.0.1:port, fixed across restarts

	mu   sync.Mutex
	proc *process
	logs []string // output of earlier processes
}

type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Binary returns the versitygw binary to use and where it was found, or
// an error saying what was looked for.
func Binary() (string, error) {
	if p := os.Getenv("DUALSTORE_VERSITYGW"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("DUALSTORE_VERSITYGW=%s is not a binary (run `make versitygw`)", p)
		}
		return filepath.Abs(p)
	}
	if root := repoRoot(); root != "" {
		p := filepath.Join(root, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("no versitygw binary: set DUALSTORE_VERSITYGW, or run `make versitygw` (installs bin/versitygw), or put versitygw on PATH")
}

// repoRoot finds the module root above the working directory (go test
// runs in the package's directory).
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/dualstore/dualstore")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Require returns the binary, or skips the test loudly (fails it when
// CI=true) when there is none.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the S3 test server is missing: %v", err)
	}
	t.Skipf("SKIP (no S3 test server): %v — set CI=true to make this fatal", err)
	return ""
}

// Start runs a fresh server on a free port with an empty temp dir and
// waits until it answers. It is stopped in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	s := &Server{t: t, bin: bin, dir: filepath.Join(t.TempDir(), "s3")}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("versitygw output (%s):\n%s", s.addr, s.Logs())
		}
	})
	// A port picked free can be taken before the server binds it; try a
	// few.
	var err error
	for range 3 {
		s.addr, err = freePort()
		if err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("starting versitygw: %v\n%s", err, s.Logs())
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// Start starts the server again after Stop, on the same port and
// directory, and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting versitygw on %s: %v\n%s", s.addr, err, s.Logs())
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	if s.proc != nil {
		s.mu.Unlock()
		return fmt.Errorf("versitygw on %s is already running", s.addr)
	}
	p := &process{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(s.bin,
		"--port", s.addr,
		"--access", AccessKey, "--secret", SecretKey,
		"--region", Region,
		"--quiet",
		"posix", s.dir)
	// A small, explicit environment: no VGW_* or ROOT_* settings of the
	// caller's shell change the server under test.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Dir(s.dir)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Should the test binary die, the server dies with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	s.mu.Unlock()

	deadline := time.Now().Add(readyDeadline)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.Endpoint() + "/")
		if err == nil {
			resp.Body.Close()
			return nil // any HTTP answer (403 without credentials) means it serves
		}
		select {
		case <-p.done:
			s.mu.Lock()
			s.proc = nil
			s.logs = append(s.logs, p.out.String())
			s.mu.Unlock()
			return fmt.Errorf("versitygw exited before answering: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("versitygw did not answer on %s within %s: %v", s.addr, readyDeadline, err)
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after a deadline) and waits
// for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopDeadline):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	s.mu.Lock()
	s.logs = append(s.logs, p.out.String())
	s.mu.Unlock()
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Endpoint is the server's URL: http://127.0.0.1:port.
func (s *Server) Endpoint() string { return "http://" + s.addr }

// Addr is 127.0.0.1:port.
func (s *Server) Addr() string { return s.addr }

// Dir is the posix backend's directory: one subdirectory per bucket.
func (s *Server) Dir() string { return s.dir }

// BucketDir is where the objects of bucket are files: object "a/b" is
// BucketDir(bucket)/a/b.
func (s *Server) BucketDir(bucket string) string { return filepath.Join(s.dir, bucket) }

// Logs returns the output of every process of this server so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append([]string{}, s.logs...)
	if s.proc != nil {
		all = append(all, s.proc.out.String())
	}
	return strings.Join(all, "\n--- restart ---\n")
}

// Client returns a minio-go client with the root credentials, for a test
// to look at or change the bucket behind the store's back.
func (s *Server) Client() *minio.Client {
	s.t.Helper()
	c, err := minio.New(s.addr, &minio.Options{
		Creds:        credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(bucket string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client().MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		s.t.Fatalf("creating bucket %s on %s: %v", bucket, s.addr, err)
	}
}

// Objects lists the files below BucketDir(bucket)/prefix as keys relative
// to the bucket, read from disk (not through the server, which may be
// stopped). Temp files the gateway may keep while writing are skipped.
func (s *Server) Objects(bucket, prefix string) []string {
	s.t.Helper()
	root := s.BucketDir(bucket)
	var keys []string
	err := filepath.WalkDir(filepath.Join(root, prefix), func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".sgwtmp") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		s.t.Fatalf("listing %s: %v", root, err)
	}
	return keys
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
