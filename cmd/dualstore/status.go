package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
)

func statusCmd() *cobra.Command {
	var onlyProblems bool
	c := &cobra.Command{
		Use:   "status [-x] MOUNTPOINT",
		Short: "Say whether a mount is healthy, like `zpool status`; exit 1 when degraded",
		Long: "status shows the health of a mount: its tiers and stores, the pending backfill, the last\n" +
			"compare, the index backup, and every problem that makes it degraded. With -x it prints one\n" +
			"line, \"healthy\", or one line per problem. The exit code is 0 healthy, 1 degraded (2: usage,\n" +
			"or not a dualstore mount), for scripts and monitoring.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt := args[0]
			b, err := readControl(mnt, "stats")
			if err != nil {
				return err
			}
			var s dsfs.Stats
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("stats of %s: %w", mnt, err)
			}
			if onlyProblems {
				printProblems(os.Stdout, s.Health)
			} else {
				printStatus(os.Stdout, mnt, s)
			}
			if s.Health.State != dsfs.Healthy {
				return &codeError{exitError, fmt.Errorf("%s is %s (%d problems)", mnt, s.Health.State, len(s.Health.Problems))}
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&onlyProblems, "problems", "x", false, `print only "healthy" or the problems, one per line`)
	return c
}

// printProblems is `status -x`: "healthy", or "degraded: …" per problem.
func printProblems(w io.Writer, h dsfs.Health) {
	if h.State == dsfs.Healthy {
		fmt.Fprintln(w, dsfs.Healthy)
		return
	}
	for _, p := range h.Problems {
		fmt.Fprintf(w, "%s: %s\n", h.State, p.Message)
	}
}

// storeState is a tier's or store's one-word state, as `zpool status`
// gives one per device.
func storeState(h dual.WriteHealth, r int64) string {
	switch {
	case h.WritesFailing:
		return "FAILING"
	case r > 0:
		return "ERRORS"
	}
	return "ONLINE"
}

// printStatus is the full `status`: the state, the problems, then the
// tiers and stores with their error counts, the backfill, the last
// compare, the index backup and the running action.
func printStatus(w io.Writer, mnt string, s dsfs.Stats) {
	up := time.Duration(s.UptimeSeconds * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(w, "  mount: %s (fsid %s, up %s)\n", mnt, s.FSID, up)
	state := "HEALTHY"
	if s.Health.State != dsfs.Healthy {
		state = "DEGRADED"
	}
	fmt.Fprintf(w, "  state: %s\n", state)
	if len(s.Health.Problems) > 0 {
		fmt.Fprintln(w, "problems:")
		for _, p := range s.Health.Problems {
			fmt.Fprintf(w, "  - %s\n", p.Message)
		}
	}
	fmt.Fprintf(w, " action: %s\n", s.Action)
	pending := "none"
	if s.PendingBackfill > 0 {
		pending = fmt.Sprintf("%d chunks, for %s", s.PendingBackfill, time.Duration(s.PendingBackfillAgeSeconds*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(w, "backfill: %s (%d copied since the mount)\n", pending, s.Backfilled)
	last := "none since the mount"
	if r := s.LastCompare; r != nil {
		last = fmt.Sprintf("%s finished %s: %d chunks, %d matching, %d differences left", r.Action, r.FinishedAt, r.Done, r.Matches, r.Remaining())
	}
	fmt.Fprintf(w, "last compare: %s\n", last)
	if b := s.IndexBackup; b != nil {
		fmt.Fprint(w, "index backup:")
		for _, t := range b.Tiers {
			fmt.Fprintf(w, " %s lag %.1fs (%d errors);", t.Name, t.LagSeconds, t.Errors)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "index backup: off")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tWRITE-ERR\tREAD-ERR\tCKSUM\tLAST WRITE ERROR")
	for _, name := range tierNames(s) {
		t := s.Tiers[name]
		var readErrs int64
		for _, m := range t.Stores {
			readErrs += m.Reads.Errors + m.Reads.ChecksumErrors
		}
		fmt.Fprintf(tw, "%s\ttier\t%s\t%d\t%d\t%d\t%s\n", name, storeState(t.WriteHealth, readErrs), t.Writes.Errors, t.Reads.Errors, t.Reads.ChecksumErrors, orDash(t.LastWriteError))
		for _, m := range t.Stores {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%s\n", m.Name, m.Type, storeState(m.WriteHealth, m.Reads.Errors+m.Reads.ChecksumErrors),
				m.Writes.Errors, m.Reads.Errors, m.Reads.ChecksumErrors, orDash(m.LastWriteError))
		}
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
