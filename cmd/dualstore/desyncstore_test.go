package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualstore/dualstore/stores/s3"
)

func TestDesyncS3Options(t *testing.T) {
	t.Setenv("S3_ACCESS_KEY", "ak")
	t.Setenv("S3_SECRET_KEY", "sk")
	t.Setenv("S3_REGION", "eu-1")
	o, err := desyncS3Options("s3+http://127.0.0.1:9000/bucket/some/prefix?lookup=path")
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != "127.0.0.1:9000" || o.Bucket != "bucket" || o.Prefix != "some/prefix" || !o.DisableTLS ||
		o.Addressing != s3.AddressingPath || o.Region != "eu-1" || o.AccessKey != "ak" || o.Layout != s3.LayoutCasync {
		t.Errorf("options %v", o)
	}
	if o, err := desyncS3Options("s3+https://host/bkt"); err != nil || o.DisableTLS || o.Prefix != "" {
		t.Errorf("s3+https://host/bkt: %v, %v", o, err)
	}
	for _, bad := range []string{"s3+ftp://h/bkt", "s3+http:///bkt", "s3+http://h", "s3+http://h/bkt?lookup=sideways"} {
		if _, err := desyncS3Options(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want an error naming it", bad, err)
		}
	}
}

// TestReadBounded: a chunk file of a desync store is read only if it is a
// regular file within the bound; a FIFO in its place fails at once.
func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := readBounded(ok, 5); err != nil || string(b) != "12345" {
		t.Errorf("within the bound: %q, %v", b, err)
	}
	if _, err := readBounded(ok, 4); err == nil {
		t.Error("a file over the bound was read")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readBounded(fifo, 5); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO was read as a chunk file")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readBounded hangs on a FIFO")
	}
}
