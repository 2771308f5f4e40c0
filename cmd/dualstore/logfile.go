package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// logFile is a mount's log file (--log-file, log_file): the logger writes
// to it, and a SIGHUP reopens the path, so that after logrotate moved the
// file away (and sent `kill -HUP`) the next line goes to a new file at the
// path, and the old one can be compressed. Safe for concurrent use.
type logFile struct {
	path string

	mu sync.Mutex
	f  *os.File
	// stderr: the file is also fd 2 (a daemon once it is ready), so that
	// what the Go runtime writes there (a panic, a fatal error) lands in
	// the log too. Reopen moves fd 2 along.
	stderr bool
}

// openLogFile opens path for appending, creating it (0640: logs name
// paths of the filesystem, which its owner may not want world-readable).
func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log_file %s: %w", path, err)
	}
	return &logFile{path: path, f: f}, nil
}

// Write appends one log line: zerolog makes one Write per event, and
// O_APPEND keeps each in one piece.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again and switches to the new file; the old one
// is closed. If the path cannot be opened (its directory gone), logging
// goes on in the old file and the error says why.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopening log_file %s: %w", l.path, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stderr {
		if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
			f.Close()
			return fmt.Errorf("reopening log_file %s: making it stderr: %w", l.path, err)
		}
	}
	old := l.f
	l.f = f
	return old.Close()
}

// asStderr makes fd 2 the log file from now on (and after every Reopen).
func (l *logFile) asStderr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := syscall.Dup3(int(l.f.Fd()), 2, 0); err != nil {
		return fmt.Errorf("log_file %s: making it stderr: %w", l.path, err)
	}
	l.stderr = true
	return nil
}

// Close closes the file (fd 2, if it is the log, stays open on it).
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
