package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/dual/engine"
	"github.com/dualstore/dualstore/dual/maint"
)

// The maintenance verbs (compare, repair, migrate, gc) run online, through
// MOUNTPOINT/.dualstore/ctl, or offline, in this process against the data
// dir of a filesystem that is not mounted. --config or --data-dir selects
// offline; the data dir's lock refuses it while a mount holds it.

// tuning are the flags that shape a run, online and offline.
type tuning struct {
	rate        string
	concurrency int
	batchSize   int
	wait, json  bool
}

func (t *tuning) flags(c *cobra.Command, withWait bool) {
	f := c.Flags()
	f.StringVar(&t.rate, "rate", "", "throttle reads to this many bytes/s (e.g. 50M; default: the config's compare.rate, 0 = unlimited)")
	f.IntVar(&t.concurrency, "concurrency", 0, "chunks handled at once (default: the config's compare.concurrency)")
	f.IntVar(&t.batchSize, "batch-size", 0, "chunk ids read from the index per batch (offline; default: the config's compare.batch_size)")
	f.BoolVar(&t.json, "json", false, "print the final report as JSON")
	if withWait {
		f.BoolVar(&t.wait, "wait", false, "online: wait for the result, with a progress bar (offline always waits)")
	}
}

// overrides are the flags' changes to the configured tuning, checked
// with the same limits online and offline.
func (t *tuning) overrides() (maint.Overrides, error) {
	o := maint.Overrides{Concurrency: t.concurrency, BatchSize: t.batchSize}
	// The bounds of the config's compare section, naming the flags.
	for _, f := range []struct {
		flag, key string
		v         int
	}{{"--concurrency", bounds.CompareConcurrency, t.concurrency}, {"--batch-size", bounds.CompareBatchSize, t.batchSize}} {
		if f.v != 0 {
			if err := bounds.Of(f.key).Check(f.flag, int64(f.v)); err != nil {
				return o, usageErr(err)
			}
		}
	}
	if t.rate != "" {
		n, err := engine.ParseBytes(t.rate)
		if err != nil {
			return o, usageErr(fmt.Errorf("--rate %w", err))
		}
		if err := bounds.Of(bounds.CompareRate).Check("--rate", n); err != nil {
			return o, usageErr(err)
		}
		o.Rate = &n
	}
	if err := o.Validate(); err != nil {
		return o, usageErr(err)
	}
	return o, nil
}

// ctlOptions renders the tuning for a ctl command line.
func (t *tuning) ctlOptions() (string, error) {
	o, err := t.overrides()
	if err != nil {
		return "", err
	}
	var s string
	if o.Rate != nil {
		s += fmt.Sprintf(" rate=%d", *o.Rate)
	}
	if o.Concurrency > 0 {
		s += fmt.Sprintf(" concurrency=%d", o.Concurrency)
	}
	return s, nil
}

// online sends verb with the tuning (and a path) to a mount's ctl.
func (t *tuning) online(mnt, verb, path string, wait bool) error {
	opts, err := t.ctlOptions()
	if err != nil {
		return err
	}
	line := verb + opts
	if path != "" {
		// Quoted, the path is a path whatever it holds (spaces, "=",
		// a top-level "deep").
		line += " " + strconv.Quote(path)
	}
	return runAction(mnt, line, wait, t.json)
}

// scrubOptions applies config and flags to a run's options, as ctl does.
func (t *tuning) scrubOptions(cfg Config) (dual.ScrubOptions, error) {
	ov, err := t.overrides()
	if err != nil {
		return dual.ScrubOptions{}, err
	}
	o, err := cfg.Compare.Scrub(ov)
	if err != nil {
		return o, usageErr(fmt.Errorf("the config's compare settings: %w", err))
	}
	return o, nil
}

func offline(g *globals) bool { return g.cfgFile != "" || g.dataDir != "" }

// splitArgs returns the mount point (online) and the rest.
func splitArgs(g *globals, cmd *cobra.Command, args []string, maxRest int) (mnt string, rest []string, err error) {
	if offline(g) {
		if len(args) > maxRest {
			return "", nil, usageErr(fmt.Errorf("%s: offline (--config/--data-dir) it takes at most %d argument(s), got %q (usage: %s)", cmd.Name(), maxRest, args, cmd.UseLine()))
		}
		return "", args, nil
	}
	if len(args) == 0 || len(args) > maxRest+1 {
		return "", nil, usageErr(fmt.Errorf("%s: give a MOUNTPOINT, or --config/--data-dir to run offline (usage: %s)", cmd.Name(), cmd.UseLine()))
	}
	return args[0], args[1:], nil
}

// offlineEngine opens the filesystem in g's data dir for an offline run.
func offlineEngine(g *globals, cmd *cobra.Command, what string) (*engine.Engine, *maint.Maintenance, error) {
	cfg, err := resolveConfig(g, cmd, nil)
	if err != nil {
		return nil, nil, err
	}
	log, err := logger(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	e, err := openEngine(context.Background(), cfg, log, true)
	if err != nil {
		return nil, nil, err
	}
	e.SetHolder("an offline " + what)
	return e, maint.New(e.Index, e.Dual), nil
}

// interruptible returns a context that the first SIGINT/SIGTERM cancels.
func interruptible() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "\ndualstore: interrupted; stopping (a rerun resumes)")
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// follow shows a run's progress until it ends: a bar over chunks, with
// bytes and rate in its description.
func follow(snapshot func() (dual.Report, error), running func(dual.Report) bool) (dual.Report, error) {
	var bar *progressbar.ProgressBar
	for {
		r, err := snapshot()
		if err != nil {
			return r, err
		}
		if bar == nil && r.Total > 0 && stderrIsTerminal() {
			bar = progressbar.NewOptions64(r.Total, progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetPredictTime(true))
		}
		if bar != nil {
			if r.Total > bar.GetMax64() {
				bar.ChangeMax64(r.Total)
			}
			bar.Describe(fmt.Sprintf("%s %s, %.1f MB/s, %.0f chunks/s", runName(r), human(r.DoneBytes), r.BytesPerSecond/1e6, r.ChunksPerSecond))
			_ = bar.Set64(r.Done) // a progress bar that cannot draw is no reason to stop
		}
		if !running(r) {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			return r, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stderrIsTerminal decides whether progress bars are drawn: not into a
// log file or a pipe.
func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runName(r dual.Report) string {
	switch {
	case r.Direction != "":
		return r.Action + " " + r.Direction
	case r.DryRun:
		return r.Action + " dry-run"
	case r.Deep && r.Action == "compare":
		return "compare deep"
	}
	return r.Action
}

// runOffline runs a scrub or gc in this process with a progress bar and
// Ctrl-C to stop it.
func runOffline(start func() (*dual.Scrub, error), asJSON bool) error {
	s, err := start()
	if err != nil {
		return err
	}
	ctx, done := interruptible()
	defer done()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	// The bar follows the run until it ends; Wait then gives the final
	// report (the snapshots cannot fail).
	_, _ = follow(func() (dual.Report, error) { return s.Report(), nil }, func(dual.Report) bool { return s.Running() })
	r := s.Wait()
	return finish(r, asJSON)
}

// finish prints a final report and picks the exit code.
func finish(r dual.Report, asJSON bool) error {
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
	} else {
		printReport(os.Stdout, r)
	}
	switch {
	case r.State == "failed":
		return fmt.Errorf("%s failed: %s", r.Action, r.Error)
	case r.State == "stopped":
		return &codeError{exitError, fmt.Errorf("%s was stopped before the end; run it again to resume", runName(r))}
	case r.Action == "gc" && r.Errors > 0:
		return fmt.Errorf("gc could not remove %d chunks (see the report); a rerun retries them", r.Errors)
	case r.Remaining() > 0:
		return &codeError{exitDiffers, fmt.Errorf("%s: %d chunks still differ between the tiers", runName(r), r.Remaining())}
	}
	return nil
}

// printReport prints a summary and one line per difference, in the style
// of `rclone check --combined`: "+ id" primary only, "- id" safety only,
// "* id" mismatch, "! id" error or missing; gc lists "x id" per chunk
// removed (or, dry, that would be).
func printReport(w io.Writer, r dual.Report) {
	if r.Action == "gc" {
		verb := "removed"
		if r.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(w, "%s %s in %.1fs: %s %d unreferenced chunks (%s); %d skipped (in use by writes in flight), %d errors\n",
			runName(r), r.State, r.ElapsedSeconds, verb, r.Removed, human(r.RemovedBytes), r.InFlight, r.Errors)
	} else {
		fmt.Fprintf(w, "%s %s: %d chunks (%s) in %.1fs (%.1f MB/s, %.0f chunks/s): %d match, %d mismatch, %d primary only, %d safety only, %d missing, %d errors",
			runName(r), r.State, r.Done, human(r.DoneBytes), r.ElapsedSeconds, r.BytesPerSecond/1e6, r.ChunksPerSecond,
			r.Matches, r.Mismatches, r.PrimaryOnly, r.SafetyOnly, r.Missing, r.Errors)
		switch {
		case r.Action == "repair":
			fmt.Fprintf(w, "; repaired %d, unrecoverable %d, repair failed %d, backfilled %d", r.Repaired, r.Unrecoverable, r.RepairFailed, r.Backfilled)
		case r.Action == "migrate" && r.Direction != dual.MigrateCompareAll:
			fmt.Fprintf(w, "; copied %d, unrecoverable %d, copy failed %d, backfilled %d", r.Copied, r.Unrecoverable, r.RepairFailed, r.Backfilled)
		}
		fmt.Fprintln(w)
	}
	for _, d := range r.Details {
		fmt.Fprintln(w, detailLine(d))
	}
	if r.DetailsTruncated {
		fmt.Fprintln(w, "(more differences than the report keeps)")
	}
}

func detailLine(d dual.Detail) string {
	sym := map[dual.Class]string{dual.ClassPrimaryOnly: "+", dual.ClassSafetyOnly: "-", dual.ClassMismatch: "*",
		dual.ClassMissing: "!", dual.ClassError: "!", dual.ClassUnreferenced: "x", dual.ClassMatch: "="}[d.Class]
	line := fmt.Sprintf("%s %s %s", sym, d.Chunk, d.Class)
	if len(d.Files) > 0 {
		line += " " + strings.Join(d.Files, " ")
	}
	switch {
	case d.Error != "":
		line += " (" + d.Error + ")"
	case d.Note != "":
		line += " (" + d.Note + ")"
	}
	return line
}

func compareCmd(g *globals) *cobra.Command {
	var deep bool
	var t tuning
	c := &cobra.Command{
		Use:   "compare MOUNTPOINT [PATH] | compare --config FILE|--data-dir DIR [PATH]",
		Short: "Compare both tiers (online: in the mount's background, --wait to follow; offline: here)",
		Long: `Compare every chunk the index references (or those of the files under PATH) in both tiers:
existence and size, or with --deep the bytes and hash of both copies. Prints one line per
difference like rclone check --combined: "+ id" primary only, "- id" safety only, "* id"
mismatch, "! id" missing or error, with the affected files. Exit code 3 if any differ.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt, rest, err := splitArgs(g, cmd, args, 1)
			if err != nil {
				return err
			}
			path := ""
			if len(rest) == 1 {
				path = rest[0]
			}
			if mnt != "" {
				verb := "compare"
				if deep {
					verb += " deep"
				}
				return t.online(mnt, verb, path, t.wait)
			}
			return offlineScrub(g, cmd, &t, func(o *dual.ScrubOptions) { o.Deep = deep }, path, "compare")
		},
	}
	c.Flags().BoolVar(&deep, "deep", false, "read and hash both copies of every chunk (default: existence and size)")
	t.flags(c, true)
	return c
}

func repairCmd(g *globals) *cobra.Command {
	var noWait bool
	var t tuning
	c := &cobra.Command{
		Use:   "repair MOUNTPOINT [PATH] | repair --config FILE|--data-dir DIR [PATH]",
		Short: "Make both tiers whole from whichever copy verifies (drains the pending backfill first)",
		Long: `Repair copies every missing or corrupt chunk from the copy that verifies against its id.
A chunk with no good copy is reported with its files, never "repaired" from bad data
(exit code 3).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt, rest, err := splitArgs(g, cmd, args, 1)
			if err != nil {
				return err
			}
			path := ""
			if len(rest) == 1 {
				path = rest[0]
			}
			if mnt != "" {
				return t.online(mnt, "repair", path, !noWait)
			}
			return offlineScrub(g, cmd, &t, func(o *dual.ScrubOptions) { o.Repair = true }, path, "repair")
		},
	}
	c.Flags().BoolVar(&noWait, "no-wait", false, "online: start the repair and return")
	t.flags(c, false)
	return c
}

func migrateCmd(g *globals) *cobra.Command {
	var direction string
	var noWait bool
	var t tuning
	c := &cobra.Command{
		Use:   "migrate --direction to_safety|to_primary|compare_all [MOUNTPOINT]",
		Short: "Copy every referenced chunk missing on one tier from the other (or compare all)",
		Long: `to_safety copies every referenced chunk the safety tier lacks from the primary (verified by
hash before it is written); to_primary the other way; compare_all compares every chunk deeply.
The pending backfill is drained first. Ctrl-C stops; a rerun skips what is done. Exit code 3
if differences remain (chunks with no good copy, copies that failed).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := dual.ParseDirection(direction)
			if err != nil {
				return usageErr(fmt.Errorf("--direction: %w", err))
			}
			mnt, _, err := splitArgs(g, cmd, args, 0)
			if err != nil {
				return err
			}
			if mnt != "" {
				return t.online(mnt, "migrate "+d, "", !noWait)
			}
			return offlineScrub(g, cmd, &t, func(o *dual.ScrubOptions) { o.Migrate = d }, "", "migrate")
		},
	}
	c.Flags().StringVar(&direction, "direction", "", "to_safety, to_primary or compare_all (required)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "online: start the migration and return")
	t.flags(c, false)
	return c
}

func offlineScrub(g *globals, cmd *cobra.Command, t *tuning, set func(*dual.ScrubOptions), path, what string) error {
	e, x, err := offlineEngine(g, cmd, what)
	if err != nil {
		return err
	}
	defer closeEngine(e, e.Log())
	o, err := t.scrubOptions(e.Config)
	if err != nil {
		return err
	}
	set(&o)
	o, err = x.ScrubOptions(context.Background(), o, path)
	if err != nil {
		return usageErr(err)
	}
	return runOffline(func() (*dual.Scrub, error) { return e.Dual.StartScrub(o) }, t.json)
}

func gcCmd(g *globals) *cobra.Command {
	var dryRun, noWait, asJSON, afterRestore bool
	c := &cobra.Command{
		Use:   "gc [--dry-run] MOUNTPOINT | gc [--dry-run] --config FILE|--data-dir DIR",
		Short: "Remove chunks no file references from both tiers",
		Long: `gc removes from both tiers every chunk no file references: the index's unreferenced chunks,
and chunk files in the stores that the index does not know (left by failed writes or crashes).
A chunk that a write in flight is about to reference is never removed; a crash mid-gc leaves
nothing a rerun cannot finish. --dry-run lists what would be removed, and how many bytes.
After ` + "`dualstore restore`" + ` gc refuses until run with --after-restore: the stores may hold chunks a
newer copy of the index references.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt, _, err := splitArgs(g, cmd, args, 0)
			if err != nil {
				return err
			}
			if mnt != "" {
				line := "gc"
				if dryRun {
					line += " dry-run"
				}
				if afterRestore {
					line += " after-restore"
				}
				return runAction(mnt, line, !noWait, asJSON)
			}
			e, x, err := offlineEngine(g, cmd, "gc")
			if err != nil {
				return err
			}
			defer closeEngine(e, e.Log())
			if err := x.GCAllowed(context.Background(), afterRestore, dryRun); err != nil {
				return usageErr(err)
			}
			o, err := e.Config.Compare.GC(maint.Overrides{})
			if err != nil {
				return usageErr(fmt.Errorf("the config's compare settings: %w", err))
			}
			o.DryRun, o.Sweep = dryRun, true
			o = x.GCOptions(o)
			return runOffline(func() (*dual.Scrub, error) { return e.Dual.StartGC(o) }, asJSON)
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	c.Flags().BoolVar(&afterRestore, "after-restore", false, "after `dualstore restore`: sweep chunks the restored index does not know (no newer copy of the index exists)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "online: start gc and return")
	c.Flags().BoolVar(&asJSON, "json", false, "print the final report as JSON")
	return c
}

func fsckCmd(g *globals) *cobra.Command {
	var repair, deep, asJSON bool
	c := &cobra.Command{
		Use:   "fsck [--repair] [--deep] --config FILE|--data-dir DIR",
		Short: "Check the index and that every referenced chunk is in at least one tier (offline)",
		Long: `fsck checks every index entry is well-formed and its counts are right, and that every chunk
a file references is held by at least one tier (existence and size; --deep verifies the
bytes). --repair recomputes the counts; it never deletes anything. Files that lost data (a
chunk in no tier) are listed by path. Exit code 3 if problems remain.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 || !offline(g) {
				return usageErr(fmt.Errorf("fsck runs offline against --config FILE or --data-dir DIR (unmount first), got %q", args))
			}
			e, x, err := offlineEngine(g, cmd, "fsck")
			if err != nil {
				return err
			}
			defer closeEngine(e, e.Log())
			ctx, done := interruptible()
			defer done()
			var b *bar
			started := false
			r, err := x.Fsck(ctx, maint.FsckOptions{Repair: repair, Deep: deep, Tuning: e.Config.Compare, Progress: func(p dual.Report) {
				if !started && p.Total > 0 {
					b, started = newBar(p.Total, "fsck", false), true
				}
				b.set(p.Done)
			}})
			b.finish()
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(r, "", "  ")
				fmt.Println(string(b))
			} else {
				printFsck(os.Stdout, e.Config.DataDir, r, repair)
			}
			if !r.Clean {
				return &codeError{exitDiffers, errors.New("fsck found problems")}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&repair, "repair", false, "recompute reference counts, link counts and totals")
	c.Flags().BoolVar(&deep, "deep", false, "read and verify every referenced chunk in both tiers")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printFsck(w io.Writer, dir string, r maint.FsckReport, repair bool) {
	fmt.Fprintf(w, "fsck %s: %d referenced chunks (%s) checked\n", dir, r.Chunks, human(r.Bytes))
	switch {
	case len(r.IndexProblems) == 0:
		fmt.Fprintln(w, "index: clean")
	case r.IndexClean:
		fmt.Fprintf(w, "index: fixed %d rows; it had these problems:\n", r.Fixed)
	default:
		fmt.Fprintln(w, "index: PROBLEMS")
	}
	for _, p := range r.IndexProblems {
		fmt.Fprintln(w, "  "+p)
	}
	if !r.IndexClean && !repair {
		fmt.Fprintln(w, "  (run fsck --repair to recompute the counts)")
	}
	fmt.Fprintf(w, "chunks: %d in one tier only, %d unrecoverable (in no tier), %d store errors; %d unreferenced rows (gc removes them)\n",
		r.OneSided, r.Unrecoverable, r.Errors, r.Unreferenced)
	for _, d := range r.Details {
		fmt.Fprintln(w, detailLine(d))
	}
	if len(r.UnrecoverableFiles) > 0 {
		fmt.Fprintln(w, "files that lost data:")
		for _, f := range r.UnrecoverableFiles {
			fmt.Fprintln(w, "  "+f)
		}
	}
	if r.OneSided > 0 {
		fmt.Fprintln(w, "(chunks in one tier only are readable but not redundant: run `dualstore repair`)")
	}
	if r.Clean {
		fmt.Fprintln(w, "clean")
	}
}
