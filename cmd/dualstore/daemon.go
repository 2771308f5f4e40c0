package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// How `mount --daemon` works: the command re-executes itself in the
// background (a new session, stdin and stdout on /dev/null) and waits on
// a readiness pipe, which the background process (the daemon) closes
// after writing either "ready" and the mount point (the kernel mount is
// up and answering) or "error CODE" and the message of what failed. Under
// systemd (NOTIFY_SOCKET) the waiting command, then, says READY=1 with
// MAINPID naming the daemon, which says STOPPING=1 itself when it
// unmounts: `mount --daemon` runs under a Type=notify unit as the
// foreground mount does. The caller's terminal and
// exit code see the error as a foreground mount would show it: a bad
// config exits 2, a failed mount 1. Until it is ready the daemon's stderr
// is a pipe the waiting command copies to its own, so warnings and a
// crash's output reach the caller too; once ready, stderr is the log file
// (--log-file), the journal (when the command's stderr was journald's,
// see JOURNAL_STREAM in systemd.exec(5)), or /dev/null.

// envDaemon marks the background process, and its value says how it
// announces the mount: "1", or "quiet" for the mount helper (no
// "mounted" line, as mount(8) helpers keep quiet unless -v).
const envDaemon = "DUALSTORE_DAEMON"

// The background process's inherited descriptors.
const (
	readyFD       = 3 // the readiness pipe
	afterReadyFD  = 4 // stderr once ready: /dev/null or the journal
	readyMessage  = "ready"
	errorPrefix   = "error "
	stderrTimeout = 2 * time.Second
)

// errReported is an error the daemon already told the waiting command:
// run prints nothing more (the daemon's stderr is the command's).
var errReported = errors.New("reported to the waiting command")

// service is what a mount does as a service, beside serving: where it
// logs, how it says it is ready (to the command that started it in the
// background, to systemd with sd_notify), what SIGHUP does. The zero
// value is a foreground mount logging to stderr.
type service struct {
	// ready and afterReady are the background process's readiness pipe
	// and its stderr-to-be (nil in the foreground); reported is set once
	// the waiting command was told.
	ready, afterReady *os.File
	reported          bool
	// quiet leaves out the "mounted" line (the mount helper without -v).
	quiet bool
	// logFile is the open --log-file, or nil (stderr).
	logFile *logFile

	stopOnce sync.Once
}

// newService returns the service of this process: the background one of
// `mount --daemon` when envDaemon says so (and its descriptors are
// there), else a foreground mount. SIGHUP is ignored from here on: it
// reopens the log file once the mount catches signals, and never ends a
// mount (a dead mount point is worse than a mount that outlives its
// terminal).
func newService() (*service, error) {
	signal.Ignore(syscall.SIGHUP)
	s := &service{}
	mode, ok := os.LookupEnv(envDaemon)
	if !ok {
		return s, nil
	}
	os.Unsetenv(envDaemon)
	for _, fd := range []int{readyFD, afterReadyFD} {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return s, usageErr(fmt.Errorf("%s is set but descriptor %d is not open: it is set by `mount --daemon` for its background process only", envDaemon, fd))
		}
		syscall.CloseOnExec(fd)
	}
	// The waiting command may be gone (killed, its terminal closed): a
	// write to the broken stderr pipe must fail, not kill the mount.
	signal.Ignore(syscall.SIGPIPE)
	s.ready = os.NewFile(readyFD, "readiness pipe")
	s.afterReady = os.NewFile(afterReadyFD, "stderr after readiness")
	s.quiet = mode == "quiet"
	return s, nil
}

// background reports whether this is the background process of `mount
// --daemon`.
func (s *service) background() bool { return s.ready != nil }

// logger builds the mount's logger: to the log file of cfg (opened here;
// Complete checked its directory, CheckMountpoint that it is not inside
// the mount), else to stderr.
func (s *service) logger(cfg Config, stderrLog zerolog.Logger) (zerolog.Logger, error) {
	if cfg.LogFile == "" {
		return stderrLog, nil
	}
	lf, err := openLogFile(cfg.LogFile)
	if err != nil {
		return stderrLog, err
	}
	s.logFile = lf
	return stderrLog.Output(lf), nil
}

// closeLog closes the log file, if any.
func (s *service) closeLog() {
	if s.logFile != nil {
		_ = s.logFile.Close()
	}
}

// announce prints the line that says the mount is up (before the metrics
// line), unless quiet. The test suite and scripts wait for its start,
// "dualstore: mounted".
func (s *service) announce(mnt, dataDir string) {
	switch {
	case s.quiet:
	case s.background():
		fmt.Fprintf(os.Stderr, "dualstore: mounted %s (data dir %s) in the background, pid %d; `dualstore unmount %s` or `umount %s` to unmount\n",
			mnt, dataDir, os.Getpid(), mnt, mnt)
	default:
		fmt.Fprintf(os.Stderr, "dualstore: mounted %s (data dir %s); Ctrl-C or `dualstore unmount %s` to unmount\n", mnt, dataDir, mnt)
	}
}

// isReady tells whoever waits that the mount is ready: systemd
// (READY=1, when NOTIFY_SOCKET is set) and the command that started this
// background process, after moving stderr off its pipe (to the log file,
// the journal or /dev/null) and leaving the working directory (which
// would otherwise stay busy).
func (s *service) isReady(mnt string, log zerolog.Logger) {
	if s.background() && !s.reported {
		if err := os.Chdir("/"); err != nil {
			log.Warn().Err(err).Msg("daemon: chdir /")
		}
		var err error
		if s.logFile != nil {
			err = s.logFile.asStderr()
		} else {
			err = syscall.Dup3(int(s.afterReady.Fd()), 2, 0)
		}
		if err != nil {
			log.Warn().Err(err).Msg("daemon: moving stderr off the pipe to the waiting command")
		}
		s.afterReady.Close()
		// The waiting command tells systemd, with MAINPID (see
		// startDaemon): this process is not yet the one systemd listens
		// to.
		s.report(readyMessage + "\n" + mnt)
		return
	}
	if _, err := daemon.SdNotify(false, readyNotice(mnt)); err != nil {
		log.Warn().Err(err).Msg("sd_notify READY=1")
	}
}

// readyNotice is the sd_notify message of a ready mount. A newline in
// the mount point would start another assignment: it is escaped.
func readyNotice(mnt string) string {
	return daemon.SdNotifyReady + "\nSTATUS=mounted " + strings.ReplaceAll(mnt, "\n", `\n`)
}

// stopping tells systemd the mount is going down (STOPPING=1), once.
func (s *service) stopping(log zerolog.Logger) {
	s.stopOnce.Do(func() {
		if _, err := daemon.SdNotify(false, daemon.SdNotifyStopping); err != nil {
			log.Warn().Err(err).Msg("sd_notify STOPPING=1")
		}
	})
}

// report writes msg to the readiness pipe and closes it: the waiting
// command reads until then.
func (s *service) report(msg string) {
	s.reported = true
	_, _ = io.WriteString(s.ready, msg)
	s.ready.Close()
}

// exit is what the mount command returns for err: in the background
// process before readiness, err goes to the waiting command (which
// prints it and exits with its code) and run prints nothing more.
func (s *service) exit(err error) error {
	if err == nil || !s.background() || s.reported {
		return err
	}
	code := exitError
	var ce *codeError
	if errors.As(err, &ce) {
		code = ce.code
	}
	s.report(fmt.Sprintf("%s%d\n%s", errorPrefix, code, err))
	return &codeError{code, errReported}
}

// signals catches the signals of a mount, from before the kernel mount
// on, and returns the channel serveMount waits on, and what stops the
// catching. SIGINT and SIGTERM unmount; systemd hears STOPPING=1 first.
// SIGHUP reopens the log file (logrotate's postrotate `kill -HUP`) and
// never ends the mount.
func (s *service) signals(log zerolog.Logger) (<-chan os.Signal, func()) {
	in := make(chan os.Signal, 4)
	out := make(chan os.Signal, 2)
	done := make(chan struct{})
	signal.Notify(in, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-in:
				if sig == syscall.SIGHUP {
					s.reopenLog(log)
					continue
				}
				s.stopping(log)
				select {
				case out <- sig:
				default: // serveMount is unmounting already
				}
			}
		}
	}()
	return out, func() {
		signal.Stop(in)
		signal.Ignore(syscall.SIGHUP)
		close(done)
	}
}

// reopenLog is SIGHUP's work: the log file reopened, or nothing to do.
func (s *service) reopenLog(log zerolog.Logger) {
	if s.logFile == nil {
		log.Info().Msg("SIGHUP: no log file to reopen (logging to stderr)")
		return
	}
	if err := s.logFile.Reopen(); err != nil {
		log.Error().Err(err).Msg("SIGHUP: logging on in the old file")
		return
	}
	log.Info().Str("log_file", s.logFile.path).Msg("SIGHUP: reopened the log file")
}

// daemonOptions are how startDaemon runs the background process.
type daemonOptions struct {
	// quiet: no "mounted" line (the mount helper without -v).
	quiet bool
	// notify tells systemd (NOTIFY_SOCKET) that the mount is ready, with
	// the daemon as MAINPID: `mount --daemon` as a unit's command. The
	// mount helper does not (a `mount` run by some unit's ExecStartPre
	// must not speak for that unit), and its daemon does not inherit
	// NOTIFY_SOCKET.
	notify bool
}

// startDaemon runs `dualstore ARGS` (a mount) as a background process and
// waits until its mount is ready or it failed: nil once ready; the
// daemon's error with its exit code; or, for a daemon that ended without
// a word (a crash), its exit status, its output being above.
func startDaemon(args []string, o daemonOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemon: finding this program to run it in the background: %w", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemon: readiness pipe: %w", err)
	}
	defer readyR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return fmt.Errorf("daemon: stderr pipe: %w", err)
	}
	defer errR.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		readyW.Close()
		errW.Close()
		return fmt.Errorf("daemon: %w", err)
	}
	after := devNull
	if stderrIsJournal() {
		after = os.Stderr
	}
	mode := "1"
	if o.quiet {
		mode = "quiet"
	}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = "dualstore"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, errW
	cmd.ExtraFiles = []*os.File{readyW, after} // fds 3 and 4
	env := os.Environ()
	if !o.notify {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "NOTIFY_SOCKET=") })
	}
	cmd.Env = append(env, envDaemon+"="+mode)
	// A session of its own: no controlling terminal, so neither Ctrl-C
	// nor a closed terminal reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stopProfiling()
	err = cmd.Start()
	readyW.Close()
	errW.Close()
	devNull.Close()
	if err != nil {
		return fmt.Errorf("daemon: starting %s in the background: %w", exe, err)
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(os.Stderr, errR)
		close(copied)
	}()
	msg, _ := io.ReadAll(readyR)
	// The daemon moved its stderr off the pipe before saying ready, or
	// is gone: the copy ends, and every line it wrote is out before this
	// command returns.
	select {
	case <-copied:
	case <-time.After(stderrTimeout):
	}
	first, rest, _ := bytes.Cut(msg, []byte("\n"))
	switch {
	case string(first) == readyMessage:
		// Under a Type=notify unit this command is the service's main
		// process, and about to exit: the daemon becomes the main
		// process (MAINPID) in the same message that says the mount is
		// ready, so systemd (NotifyAccess=main) hears the daemon's
		// STOPPING=1 later and tracks it, not this command's exit.
		pid := cmd.Process.Pid
		_ = cmd.Process.Release()
		if !o.notify {
			return nil
		}
		if _, err := daemon.SdNotify(false, fmt.Sprintf("MAINPID=%d\n%s", pid, readyNotice(string(rest)))); err != nil {
			// systemd will fail the unit (and stop the daemon): say so
			// here, where the unit's log shows it.
			return fmt.Errorf("%s is mounted by the daemon (pid %d), but telling systemd so failed (sd_notify READY=1, MAINPID=%d): %w", rest, pid, pid, err)
		}
		return nil
	case bytes.HasPrefix(first, []byte(errorPrefix)):
		_ = cmd.Wait()
		code, err := strconv.Atoi(strings.TrimPrefix(string(first), errorPrefix))
		if err != nil || code <= 0 {
			code = exitError
		}
		return &codeError{code, errors.New(string(rest))}
	}
	werr := cmd.Wait()
	if werr == nil {
		werr = errors.New("exit status 0")
	}
	return fmt.Errorf("the background mount process (pid %d) ended before the mount was ready: %v (its output, if any, is above)", cmd.Process.Pid, werr)
}

// stderrIsJournal reports whether stderr is the journal's stream that
// systemd gave this process (JOURNAL_STREAM names its device and inode):
// then the daemon keeps logging there after it is ready.
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}
