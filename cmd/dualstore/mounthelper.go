package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// The mount helper: mount(8) mounts an fstab line of type fuse.dualstore
// by running /sbin/mount.fuse.dualstore (type dualstore:
// /sbin/mount.dualstore), a symlink to this binary, as
//
//	mount.fuse.dualstore SOURCE DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]
//
// (libmount looks for /sbin/mount.TYPE first, then, for TYPE with a
// subtype, /sbin/mount.fuse, which would run a program named dualstore
// with other arguments: the exact name must be installed). The helper
// mounts in the background and returns once the mount is ready, as
// `mount --daemon` does, so `mount -a` and boot go on.
//
// SOURCE is the config file, or a data dir for a mount without one;
// config= or data_dir= in the options take precedence, and SOURCE is then
// only a name. Either way SOURCE is the mount's source in /proc/mounts,
// which is how `mount -a` knows the line is mounted already.
//
// Every mount flag is an option, with _ or - (allow_other, cache_mb=256,
// log_file=/var/log/dualstore.log, read_preference=safety, …). What
// mount(8) and systemd pass along for themselves is dropped; what
// dualstore cannot do is refused, naming the option, unless -s (sloppy)
// makes it a warning.

// helperNames are the names mount(8) runs the helper by.
var helperNames = []string{"mount.fuse.dualstore", "mount.dualstore"}

// isMountHelper reports whether argv0 names the mount helper.
func isMountHelper(argv0 string) bool {
	base := filepath.Base(argv0)
	for _, n := range helperNames {
		if base == n {
			return true
		}
	}
	return false
}

// mount(8)'s exit codes, which its helpers return.
const (
	mountExitUsage   = 1  // incorrect invocation or permissions
	mountExitFailure = 32 // mount failure
)

// droppedOptions are the options that are not the filesystem's business:
// mount(8)'s own (which it passes to helpers anyway: rw, user, _netdev,
// nofail), fstab's defaults and auto, and what dualstore does always
// (nosuid, nodev, exec and async are how it mounts). x-* and comment=
// are dropped too (mount(8) already keeps them from helpers).
//
// The atime options are dropped too: dualstore never changes a file's
// atime when it is read (the kernel does not ask a FUSE filesystem to),
// only when told to (touch -a, utimensat), which is noatime whatever the
// line says; fstab lines copied from other filesystems often carry them.
var droppedOptions = map[string]bool{
	"defaults": true, "rw": true, "auto": true, "noauto": true, "_netdev": true, "nofail": true,
	"user": true, "nouser": true, "users": true, "nousers": true,
	"owner": true, "noowner": true, "group": true, "nogroup": true,
	"nosuid": true, "nodev": true, "exec": true, "async": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"nostrictatime": true, "lazytime": true, "nolazytime": true, "diratime": true, "nodiratime": true,
}

// refusedOptions are options dualstore cannot honour, with why.
var refusedOptions = map[string]string{
	"suid": "dualstore always mounts nosuid",
	"dev":  "dualstore always mounts nodev",
}

// optionFlags are the options spelled otherwise than their flag.
var optionFlags = map[string]string{"ro": "read-only"}

// notOptions are mount flags that make no sense as fstab options.
var notOptions = map[string]bool{"daemon": true, "help": true, "fsname": true}

// helperCall is one call of the helper, parsed.
type helperCall struct {
	source, dir           string
	opts                  []string
	sloppy, fake, verbose bool
}

// parseHelperArgs reads mount(8)'s helper command line.
func parseHelperArgs(args []string) (helperCall, error) {
	var h helperCall
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			switch c := a[j]; c {
			case 's':
				h.sloppy = true
			case 'f':
				h.fake = true
			case 'n': // no mtab: dualstore writes none
			case 'v':
				h.verbose = true
			case 'o', 't', 'N':
				// The value is the rest of this argument, or the next.
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return h, fmt.Errorf("-%c needs a value", c)
					}
					i++
					v = args[i]
				}
				switch c {
				case 'o':
					opts, err := splitOptions(v)
					if err != nil {
						return h, err
					}
					h.opts = append(h.opts, opts...)
				case 't':
					if v != "dualstore" && v != "fuse.dualstore" {
						return h, fmt.Errorf("-t %s: this helper mounts type fuse.dualstore (or dualstore)", v)
					}
				case 'N':
					return h, fmt.Errorf("-N %s: mounting in another namespace is not supported", v)
				}
				j = len(a)
			default:
				return h, fmt.Errorf("unknown flag -%c (usage: SOURCE DIR [-sfnv] [-o OPTIONS] [-t fuse.dualstore])", c)
			}
		}
	}
	if len(pos) != 2 {
		return h, fmt.Errorf("want SOURCE and DIR, got %d arguments %q (usage: SOURCE DIR [-sfnv] [-o OPTIONS])", len(pos), pos)
	}
	h.source, h.dir = pos[0], pos[1]
	return h, nil
}

// splitOptions splits a mount option string at its commas; a value in
// double quotes (libmount's quoting, for a comma in a value) keeps its
// commas and loses the quotes.
func splitOptions(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ',' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if quoted {
		return nil, fmt.Errorf("options %q: unbalanced double quote", s)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

// mountFlagSet is every flag `dualstore mount` takes, global ones
// included, to translate options by.
func mountFlagSet() *pflag.FlagSet {
	var g globals
	fs := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	globalFlags(fs, &g)
	fs.AddFlagSet(mountCmd(&g).Flags())
	return fs
}

// mountArgs translates the call into `dualstore mount` arguments (without
// --daemon, which the caller adds), and lists the
// options -s let through unknown.
func (h helperCall) mountArgs() (args, ignored []string, err error) {
	flags := mountFlagSet()
	source := false // the source named the config or the data dir
	var errs []error
	for _, o := range h.opts {
		name, val, hasVal := strings.Cut(o, "=")
		switch {
		case droppedOptions[name] || strings.HasPrefix(name, "x-") || name == "comment" || (name == "user" && hasVal):
			continue
		case refusedOptions[name] != "":
			errs = append(errs, fmt.Errorf("option %s: %s", name, refusedOptions[name]))
			continue
		}
		flag := strings.ReplaceAll(name, "_", "-")
		if f, ok := optionFlags[name]; ok {
			flag = f
		}
		f := flags.Lookup(flag)
		if f == nil || notOptions[flag] {
			if h.sloppy {
				ignored = append(ignored, o)
				continue
			}
			errs = append(errs, fmt.Errorf("unknown option %s (options are the flags of `dualstore mount`, e.g. config=FILE, allow_other, cache_mb=N; -s ignores unknown ones)", o))
			continue
		}
		if flag == "config" || flag == "data-dir" {
			source = true
		}
		switch {
		case hasVal:
			args = append(args, "--"+flag+"="+val)
		case f.Value.Type() == "bool":
			args = append(args, "--"+flag)
		default:
			errs = append(errs, fmt.Errorf("option %s needs a value (%s=…)", name, name))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if !source {
		st, err := os.Stat(h.source)
		switch {
		case err == nil && st.Mode().IsRegular():
			args = append(args, "--config="+h.source)
		case err == nil && st.IsDir():
			args = append(args, "--data-dir="+h.source)
		default:
			return nil, nil, fmt.Errorf("source %s: not a config file or a data dir (give config=FILE or data_dir=DIR in the options to name the filesystem otherwise)", h.source)
		}
	}
	args = append([]string{"mount", "--fsname=" + h.source}, args...)
	return append(args, "--", h.dir), ignored, nil
}

// mountHelper is the helper's main: it returns mount(8)'s exit code, 1
// for what the fstab line or the config must fix, 32 for a mount that
// failed.
func mountHelper(argv0 string, argv []string) int {
	name := filepath.Base(argv0)
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return code
	}
	h, err := parseHelperArgs(argv)
	if err != nil {
		return fail(mountExitUsage, err)
	}
	args, ignored, err := h.mountArgs()
	if err != nil {
		return fail(mountExitUsage, err)
	}
	for _, o := range ignored {
		fmt.Fprintf(os.Stderr, "%s: ignoring unknown option %s (-s)\n", name, o)
	}
	args = append([]string{args[0], "--daemon"}, args[1:]...)
	if h.verbose {
		fmt.Fprintf(os.Stderr, "%s: dualstore %s\n", name, strings.Join(args, " "))
	}
	if h.fake {
		return exitOK
	}
	err = startDaemon(args, daemonOptions{quiet: !h.verbose})
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce) && ce.code == exitUsage:
		return fail(mountExitUsage, err)
	default:
		return fail(mountExitFailure, err)
	}
}
