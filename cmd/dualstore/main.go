// Command dualstore mounts a FUSE filesystem that keeps every chunk of
// every file in two independent chunk stores, and drives comparisons and
// repairs of the two.
//
// Exit codes:
//
//	0  success
//	1  runtime error (a store, the index or the mount failed); `status`:
//	   the mount is degraded
//	2  bad usage or configuration
//	3  differences remain: a comparison found some, a repair or migration
//	   could not fix all, fsck found problems
//
// Run as mount.fuse.dualstore (a symlink in /sbin), the binary is mount(8)'s
// helper for fstab lines of type fuse.dualstore (mounthelper.go), which
// exits with mount(8)'s codes. `mount --daemon`, the helper, sd_notify and
// the log file are in daemon.go and logfile.go.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime/pprof"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes (documented in the package comment and the README).
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitDiffers = 3
)

// exitError carries an exit code through cobra.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func usageErr(err error) error { return &codeError{exitUsage, err} }

// usageArgs wraps a cobra argument check so a wrong number of arguments
// exits with the usage code, like a bad flag.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErr(fmt.Errorf("%s: %w (usage: %s)", cmd.Name(), err, cmd.UseLine()))
		}
		return nil
	}
}

type globals struct {
	logLevel string
	cfgFile  string
	dataDir  string
}

func main() {
	// Run as /sbin/mount.fuse.dualstore (a symlink to this binary),
	// mount(8) asks for an fstab mount.
	if isMountHelper(os.Args[0]) {
		os.Exit(mountHelper(os.Args[0], os.Args[1:]))
	}
	var g globals
	root := &cobra.Command{
		Use:           "dualstore",
		Short:         "A FUSE filesystem that keeps every chunk in two independent stores",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	globalFlags(root.PersistentFlags(), &g)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(mountCmd(&g), statsCmd(), compareCmd(&g), repairCmd(&g), migrateCmd(&g), gcCmd(&g), fsckCmd(&g), restoreCmd(&g), exportCmd(&g), importCmd(),
		unmountCmd(), ctlCmd(), statusCmd())

	os.Exit(run(root))
}

// globalFlags are the flags of every command.
func globalFlags(f *pflag.FlagSet, g *globals) {
	f.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (default warn)")
	f.StringVarP(&g.cfgFile, "config", "c", "", "YAML config file")
	f.StringVar(&g.dataDir, "data-dir", "", "data directory (index, staging, default local stores)")
}

func run(root *cobra.Command) int {
	if code := startProfiling(); code != exitOK {
		return code
	}
	defer stopProfiling()
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintln(os.Stderr, "dualstore:", err)
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

// servePprof serves net/http/pprof's handlers on addr, in the background,
// for the life of the process.
// profiling is what DUALSTORE_CPUPROFILE and DUALSTORE_PPROF started.
var profiling struct {
	cpu *os.File
	ln  net.Listener
}

// startProfiling starts what the environment asks for, for performance
// work (see README, Performance): a CPU profile of the whole process
// (DUALSTORE_CPUPROFILE=FILE, e.g. a mount from start to unmount), and
// live profiles (DUALSTORE_PPROF=ADDR: `go tool pprof
// http://ADDR/debug/pprof/heap`). Debugging only: anyone who can reach
// ADDR can read them, so give a loopback address.
func startProfiling() int {
	if p := os.Getenv("DUALSTORE_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dualstore: DUALSTORE_CPUPROFILE:", err)
			return exitUsage
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintln(os.Stderr, "dualstore: DUALSTORE_CPUPROFILE:", err)
			return exitUsage
		}
		profiling.cpu = f
	}
	if addr := os.Getenv("DUALSTORE_PPROF"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dualstore: DUALSTORE_PPROF:", err)
			return exitUsage
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		go func() { _ = http.Serve(ln, mux) }()
		profiling.ln = ln
	}
	return exitOK
}

// stopProfiling ends both. `mount --daemon` calls it before it starts the
// background process, which then profiles the mount itself: the caller's
// listener would hold the address, and its profile the same file.
func stopProfiling() {
	if profiling.cpu != nil {
		pprof.StopCPUProfile()
		profiling.cpu.Close()
		profiling.cpu = nil
	}
	if profiling.ln != nil {
		profiling.ln.Close()
		profiling.ln = nil
	}
}

// logger builds the process logger: structured JSON on stderr, quiet (warn)
// unless asked.
func logger(level string) (zerolog.Logger, error) {
	if level == "" {
		level = "warn"
	}
	l, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), usageErr(fmt.Errorf("--log-level %q: want debug, info, warn or error", level))
	}
	return zerolog.New(os.Stderr).Level(l).With().Timestamp().Logger(), nil
}
