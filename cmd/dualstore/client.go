package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
)

// controlPath returns MOUNTPOINT/.dualstore/NAME, checking it is a mount.
func controlPath(mnt, name string) (string, error) {
	p := filepath.Join(mnt, ".dualstore", name)
	if _, err := os.Stat(p); err != nil {
		return "", usageErr(fmt.Errorf("%s is not a dualstore mount (no %s): %w", mnt, p, err))
	}
	return p, nil
}

func readControl(mnt, name string) ([]byte, error) {
	p, err := controlPath(mnt, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// sendCommand writes one command to ctl; the kernel's EINVAL/EBUSY comes
// back as the error, with the daemon's explanation from ctl.
func sendCommand(mnt, line string) error {
	p, err := controlPath(mnt, "ctl")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, syscall.EROFS) {
		// A read-only mount: the same command through the ioctl that
		// carries it on a read-only descriptor.
		return sendCommandIoctl(p, line)
	}
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(line + "\n"))
	cerr := f.Close()
	if werr != nil {
		return commandFailed(p, line, werr)
	}
	return cerr
}

// commandFailed explains err, the daemon's answer to line on ctl (path
// p), with the last line of ctl's status: a rejected command is a usage
// error.
func commandFailed(p, line string, err error) error {
	status, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimSpace(string(status)), "\n")
	why := lines[len(lines)-1]
	if errors.Is(err, syscall.EINVAL) {
		return usageErr(fmt.Errorf("%q rejected: %s", line, why))
	}
	return fmt.Errorf("%q failed: %w (%s)", line, err, why)
}

// sendCommandIoctl sends line through dsfs.CtlIoctl on a read-only
// descriptor of ctl (path p), with the errors sendCommand gives.
func sendCommandIoctl(p, line string) error {
	if len(line) >= dsfs.MaxCommandLen {
		return usageErr(fmt.Errorf("%q: longer than a control command may be (%d bytes)", line, dsfs.MaxCommandLen-1))
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, dsfs.MaxCommandLen)
	copy(buf, line)
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(dsfs.CtlIoctl), uintptr(unsafe.Pointer(&buf[0])))
	runtime.KeepAlive(buf)
	if errno == 0 {
		return nil
	}
	return commandFailed(p, line, errno)
}

func statsCmd() *cobra.Command {
	var asJSON, watch bool
	var wo watchOptions
	c := &cobra.Command{
		Use:   "stats [--json | --watch [--interval 1s] [--count N]] MOUNTPOINT",
		Short: "Show live statistics of a mount (--watch: rates every interval)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch {
				if asJSON {
					return usageErr(fmt.Errorf("stats: --json and --watch do not go together"))
				}
				return watchStats(args[0], wo, os.Stdout)
			}
			b, err := readControl(args[0], "stats")
			if err != nil {
				return err
			}
			if asJSON {
				_, err = os.Stdout.Write(b)
				return err
			}
			var s dsfs.Stats
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("stats of %s: %w", args[0], err)
			}
			printStats(os.Stdout, s)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	c.Flags().BoolVarP(&watch, "watch", "w", false, "show per-second rates every interval (redrawn on a terminal, a line per interval when piped)")
	c.Flags().DurationVarP(&wo.interval, "interval", "i", time.Second, "with --watch: time between samples")
	c.Flags().IntVarP(&wo.count, "count", "n", 0, "with --watch: stop after N intervals (0: until interrupted)")
	return c
}

func printStats(w io.Writer, s dsfs.Stats) {
	for _, warning := range s.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	fmt.Fprintf(w, "uptime %s, read preference %s, action: %s\n", time.Duration(s.UptimeSeconds*float64(time.Second)).Round(time.Second), s.ReadPreference, s.Action)
	if s.ReadOnly {
		fmt.Fprintln(w, "mounted read-only: changes are refused, no background gc")
	}
	if s.Health.State != "" && s.Health.State != dsfs.Healthy {
		fmt.Fprintf(w, "health: %s, %d problems (dualstore status shows them)\n", s.Health.State, len(s.Health.Problems))
	}
	fmt.Fprintf(w, "files %d, dirs %d, logical %s, unique chunks %d (%s), dedup ratio %.2f\n",
		s.Files, s.Dirs, human(s.LogicalBytes), s.UniqueChunks, human(s.UniqueBytes), s.DedupRatio)
	cr := "n/a (no comparison yet)"
	if s.ConsistencyRate != nil {
		cr = fmt.Sprintf("%.4f", *s.ConsistencyRate)
	}
	fmt.Fprintf(w, "fallbacks %d, self-heals %d, pending backfill %d, success rate %.4f, consistency %s\n",
		s.Fallbacks, s.SelfHeals, s.PendingBackfill, s.SuccessRate, cr)
	fmt.Fprintf(w, "durability points %d (%d failed)", s.FS.Syncs, s.FS.SyncErrors)
	if s.FS.RecoveryChecked > 0 {
		fmt.Fprintf(w, "; after an unclean shutdown: %d files checked, %d chunks healed, %d files reverted",
			s.FS.RecoveryChecked, s.FS.RecoveryHealed, s.FS.RecoveryReverted)
	}
	fmt.Fprint(w, "\n")
	if g := s.AutoGC; g.Enabled {
		fmt.Fprintf(w, "background gc: %d runs, unused %s of a %s threshold", g.Runs, human(g.UnusedBytes), human(g.ThresholdBytes))
		if g.LastState != "" {
			fmt.Fprintf(w, ", last %s (%s, %s removed)", g.LastStart, g.LastState, human(g.LastRemovedBytes))
		}
		if g.Blocked != "" {
			fmt.Fprintf(w, "; blocked: %s", g.Blocked)
		}
		fmt.Fprintln(w)
	}
	if b := s.IndexBackup; b != nil {
		fmt.Fprintf(w, "index backup: generation %s, seq %d, newest point %s", b.Generation, b.Seq, b.Point.UTC().Format(time.RFC3339))
		if b.Pending != "" {
			fmt.Fprintf(w, ", new generation due (%s)", b.Pending)
		}
		fmt.Fprintln(w)
		for _, t := range b.Tiers {
			fmt.Fprintf(w, "  %s: seq %d, lag %.1fs, %d behind, %d objects (%s), %d errors", t.Name, t.Seq, t.LagSeconds, t.Behind, t.Objects, human(t.Bytes), t.Errors)
			if t.LastError != "" {
				fmt.Fprintf(w, ", last: %s", t.LastError)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STORE\tTYPE\tWRITES\tW-ERR\tREADS\tR-ERR\tCKSUM\tWRITTEN\tREAD\tW-P99 ms\tR-P99 ms\t")
	tiers := make([]string, 0, len(s.Tiers))
	for t := range s.Tiers {
		tiers = append(tiers, t)
	}
	sort.Strings(tiers)
	for _, name := range tiers {
		t := s.Tiers[name]
		fmt.Fprintf(tw, "%s\ttier\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.2f\t%.2f\t\n", name, t.Writes.OK, t.Writes.Errors, t.Reads.OK, t.Reads.Errors, t.Reads.ChecksumErrors,
			human(t.Writes.Bytes), human(t.Reads.Bytes), t.LatencyMS.WriteP99, t.LatencyMS.ReadP99)
		for _, m := range t.Stores {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.2f\t%.2f\t\n", m.Name, m.Type, m.Writes.OK, m.Writes.Errors, m.Reads.OK, m.Reads.Errors, m.Reads.ChecksumErrors,
				human(m.Writes.Bytes), human(m.Reads.Bytes), m.LatencyMS.WriteP99, m.LatencyMS.ReadP99)
		}
	}
	tw.Flush()
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ctlCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ctl MOUNTPOINT COMMAND...",
		Short: "Send a raw control command (stop, read-preference safety, reset-stats, …)",
		Args:  usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sendCommand(args[0], strings.Join(args[1:], " ")); err != nil {
				return err
			}
			b, err := readControl(args[0], "ctl")
			os.Stdout.Write(b)
			return err
		},
	}
}

// runAction starts an action on a mount through its ctl file and, with
// wait, follows `.dualstore/compare` with a progress bar to the end.
func runAction(mnt, line string, wait, asJSON bool) error {
	if err := sendCommand(mnt, line); err != nil {
		return err
	}
	if !wait {
		fmt.Printf("%s started; follow it with: cat %s\n", line, filepath.Join(mnt, ".dualstore", "compare"))
		return nil
	}
	// The document shows the run this command started until it ends. A
	// background gc may start right after it; while that runs the
	// document is the gc's ("automatic": true, "running"), and afterwards
	// ours again: follow on while it runs. (A daemon from before that
	// rule keeps showing the finished gc: said, not taken for ours.)
	var automatic bool
	r, err := follow(func() (dual.Report, error) {
		b, err := readControl(mnt, "compare")
		if err != nil {
			return dual.Report{}, err
		}
		var doc struct {
			dual.Report
			Automatic bool `json:"automatic"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return doc.Report, fmt.Errorf("%s/.dualstore/compare: %w", mnt, err)
		}
		automatic = doc.Automatic
		return doc.Report, nil
	}, func(r dual.Report) bool { return r.State == "running" })
	if err != nil {
		return err
	}
	if automatic {
		return fmt.Errorf("%s: a background gc replaced the result in %s/.dualstore/compare (the daemon is older than this command: remount to update it); `dualstore stats` shows the last comparison", line, mnt)
	}
	return finish(r, asJSON)
}

// mountinfoPath undoes the escapes of the paths in /proc/self/mountinfo
// (the kernel escapes space, tab, newline and backslash).
var mountinfoPath = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

// deadMount reports whether /proc/self/mountinfo lists a dualstore mount
// (file system type fuse.dualstore) on mnt.
func deadMount(mnt string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && len(g) > 0 && mountinfoPath.Replace(f[4]) == mnt && g[0] == "fuse.dualstore" {
			return true
		}
	}
	return false
}

func unmountCmd() *cobra.Command {
	var lazy bool
	c := &cobra.Command{
		Use:   "unmount MOUNTPOINT",
		Short: "Unmount a dualstore mount (the daemon then exits)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt, _ := filepath.Abs(args[0])
			flags := 0
			if _, err := controlPath(mnt, "stats"); err != nil {
				// A daemon that died (SIGKILL, a fatal runtime error)
				// leaves its mount dead: ENOTCONN to everyone until it is
				// unmounted. Nothing can be served from it any more, so
				// it goes lazily.
				if !errors.Is(err, syscall.ENOTCONN) || !deadMount(mnt) {
					return err
				}
				lazy = true
			}
			if lazy {
				flags = syscall.MNT_DETACH
			}
			if err := syscall.Unmount(mnt, flags); err != nil {
				if os.Geteuid() != 0 {
					if p, lerr := lookPath("fusermount3", "fusermount"); lerr == nil {
						args := []string{"-u", mnt}
						if lazy {
							args = []string{"-u", "-z", mnt}
						}
						return runCmd(p, args...)
					}
				}
				if errors.Is(err, syscall.EBUSY) {
					return fmt.Errorf("unmount %s: busy (a process has files open there); close them or use --lazy", mnt)
				}
				return fmt.Errorf("unmount %s: %w", mnt, err)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&lazy, "lazy", false, "detach now, finish when no longer busy (umount -l)")
	return c
}
