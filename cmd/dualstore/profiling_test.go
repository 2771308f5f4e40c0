package main

import (
	"net"
	"path/filepath"
	"testing"
)

// TestStopProfilingFreesAddr: `mount --daemon` stops the caller's
// profiling before it starts the background process, which must then be
// able to take the same DUALSTORE_PPROF address and DUALSTORE_CPUPROFILE
// file.
func TestStopProfilingFreesAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("DUALSTORE_PPROF", addr)
	t.Setenv("DUALSTORE_CPUPROFILE", filepath.Join(t.TempDir(), "cpu.prof"))
	if code := startProfiling(); code != exitOK {
		t.Fatalf("startProfiling: %d", code)
	}
	stopProfiling()
	if code := startProfiling(); code != exitOK {
		t.Fatalf("startProfiling again after stopProfiling: %d (the address or the profile still held)", code)
	}
	stopProfiling()
}
