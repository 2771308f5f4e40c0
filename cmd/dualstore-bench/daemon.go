package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	mountDeadline = 60 * time.Second
	stopDeadline  = 30 * time.Second
	pollInterval  = 20 * time.Millisecond
)

// daemon is one FUSE server process the bench started: a `dualstore
// mount` or a `dualstore-bench loopback`. The bench only ever signals
// processes it started, by their pid.
type daemon struct {
	cmd    *exec.Cmd
	mnt    string
	stderr *tailBuffer
	done   chan struct{}
	err    error // from Wait, valid once done is closed
}

// procs tracks the live daemons so that an interrupted bench can stop
// them all, whatever it was doing.
type procs struct {
	mu   sync.Mutex
	live map[*daemon]struct{}
	// closed is set by stopAll: no daemon starts after it.
	closed bool
}

// launch starts argv, which mounts mnt, and tracks it.
func (p *procs) launch(mnt string, argv []string, stdout io.Writer) (*daemon, error) {
	d := &daemon{mnt: mnt, stderr: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = stdout, d.stderr
	// Its own process group, so the terminal's Ctrl-C reaches the bench
	// only and the bench unmounts in order; killed with the bench, so a
	// crashed bench leaves an aborted mount rather than a hung one.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("shutting down: not starting another daemon")
	}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	if p.live == nil {
		p.live = map[*daemon]struct{}{}
	}
	p.live[d] = struct{}{}
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited reports an early exit as an error with the daemon's stderr.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited before serving %s: %v\n%s", filepath.Base(d.cmd.Path), d.mnt, d.err, d.stderr.String())
	default:
		return nil
	}
}

// startDualstore mounts mnt with `dualstore mount --config cfg` and waits
// for `.dualstore/stats` to answer, like the integration tests.
func (p *procs) startDualstore(ctx context.Context, bin, cfg, mnt string, extra []string) (*daemon, error) {
	argv := append([]string{bin, "mount", "--config", cfg}, extra...)
	d, err := p.launch(mnt, append(argv, mnt), nil)
	if err != nil {
		return nil, err
	}
	stats := filepath.Join(mnt, ".dualstore", "stats")
	if err := p.waitReady(ctx, d, func() bool { _, err := os.Stat(stats); return err == nil }); err != nil {
		return nil, err
	}
	return d, nil
}

// startLoopback mounts mnt with this binary's loopback subcommand and
// waits for its "ready".
func (p *procs) startLoopback(ctx context.Context, src, mnt string) (*daemon, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var ready readyWriter
	d, err := p.launch(mnt, []string{self, loopbackCmd, src, mnt}, &ready)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, d, func() bool { return ready.said.Load() && isMounted(mnt) }); err != nil {
		return nil, err
	}
	return d, nil
}

// readyWriter watches a daemon's stdout for the line "ready".
type readyWriter struct {
	mu   sync.Mutex
	line []byte
	said atomic.Bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range p {
		if c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		if string(w.line) == "ready" {
			w.said.Store(true)
		}
		w.line = w.line[:0]
	}
	return len(p), nil
}

// waitReady polls ok with a deadline. The probe runs in its own goroutine:
// a daemon that mounted but does not answer would hang a plain stat. On
// failure the daemon is stopped.
func (p *procs) waitReady(ctx context.Context, d *daemon, ok func() bool) error {
	deadline := time.Now().Add(mountDeadline)
	fail := func(err error) error {
		_ = p.stop(d)
		return err
	}
	for {
		probe := make(chan bool, 1)
		go func() { probe <- ok() }()
		select {
		case good := <-probe:
			if good {
				return nil
			}
		case <-time.After(time.Until(deadline)):
			return fail(fmt.Errorf("%s: no answer within %s (stderr:\n%s)", d.mnt, mountDeadline, d.stderr.String()))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		if err := d.exited(); err != nil {
			return fail(err)
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%s: not mounted within %s (stderr:\n%s)", d.mnt, mountDeadline, d.stderr.String()))
		}
		time.Sleep(pollInterval)
	}
}

// stop asks the daemon to unmount (SIGINT) and waits; past the deadline
// it detaches the mount (umount -l) and kills the process. It returns an
// error if the daemon did not exit cleanly.
func (p *procs) stop(d *daemon) error {
	if d == nil {
		return nil
	}
	p.mu.Lock()
	delete(p.live, d)
	p.mu.Unlock()
	if d.cmd.Process == nil {
		return nil
	}
	var errs []error
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
		if d.err != nil {
			errs = append(errs, fmt.Errorf("%s exited with %v after SIGINT\n%s", d.mnt, d.err, d.stderr.String()))
		}
	case <-time.After(stopDeadline):
		errs = append(errs, fmt.Errorf("%s: daemon pid %d did not exit within %s of SIGINT; detached and killed", d.mnt, d.pid(), stopDeadline))
		_ = syscall.Unmount(d.mnt, syscall.MNT_DETACH)
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(stopDeadline):
			errs = append(errs, fmt.Errorf("daemon pid %d survived SIGKILL", d.pid()))
		}
	}
	if isMounted(d.mnt) {
		errs = append(errs, fmt.Errorf("%s still mounted after its daemon exited: detached", d.mnt))
		_ = syscall.Unmount(d.mnt, syscall.MNT_DETACH)
	}
	return errors.Join(errs...)
}

// stopAll stops every live daemon (on interrupt or at the end) and lets
// no new one start.
func (p *procs) stopAll() error {
	p.mu.Lock()
	p.closed = true
	var all []*daemon
	for d := range p.live {
		all = append(all, d)
	}
	p.mu.Unlock()
	var errs []error
	for _, d := range all {
		errs = append(errs, p.stop(d))
	}
	return errors.Join(errs...)
}

// isMounted reports whether dir is a mount point.
func isMounted(dir string) bool {
	for _, mi := range mountTable() {
		if mi.point == dir {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procUsage is what /proc says about a daemon.
type procUsage struct {
	// CPU is user+system time, in seconds.
	CPU float64
	// HWM is the peak resident set (VmHWM), RSS the current one, in bytes.
	HWM, RSS int64
}

// userHZ is the unit of the times in /proc/PID/stat: fixed at 100 in
// Linux's ABI to user space, whatever the kernel's own tick rate.
const userHZ = 100

func usage(pid int) (procUsage, error) {
	var u procUsage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// The command name (field 2) may hold spaces; fields restart after
	// its closing parenthesis, at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return u, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	u.CPU = float64(utime+stime) / userHZ
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmHWM":
			dst = &u.HWM
		case "VmRSS":
			dst = &u.RSS
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		*dst = kb << 10
	}
	return u, nil
}

// tailBuffer keeps the last max bytes written to it (a daemon's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
