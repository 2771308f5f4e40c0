package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dualstore/dualstore/dual/engine"
	"github.com/dualstore/dualstore/index/replica"
)

func restoreCmd(g *globals) *cobra.Command {
	var from, at, fsid string
	var list, asJSON bool
	c := &cobra.Command{
		Use:   "restore --from primary|safety|auto [--at TIME] [--fsid ID] [--list] (--config FILE | --data-dir DIR)",
		Short: "Rebuild a lost index from its backup in the tiers (offline)",
		Long: `restore builds the index of a data dir that has none from the copy the mount keeps in
both tiers (index_backup in the config): the newest point in time, or the newest at or
before --at (RFC 3339, "2006-01-02 15:04:05" in local time, or @UNIX seconds). Every
object it reads is verified; with --from auto an object that one tier lacks or holds a bad
copy of is read from the other. It refuses a data dir that holds an index. Afterwards the
files committed before the restored point are back, bit-exact, and gc refuses to sweep the
stores (they may hold chunks of a newer copy of this index) until run with --after-restore.
--list shows the points in time each tier can restore.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 || !offline(g) {
				return usageErr(fmt.Errorf("restore runs against --config FILE or --data-dir DIR and takes no arguments, got %q", args))
			}
			if from == "" && !list {
				return usageErr(errors.New("restore: --from primary|safety|auto is required"))
			}
			var t time.Time
			if at != "" {
				var err error
				if t, err = parseTime(at); err != nil {
					return usageErr(fmt.Errorf("--at %q: %w", at, err))
				}
			}
			cfg, err := resolveConfig(g, cmd, nil)
			if err != nil {
				return err
			}
			log, err := logger(cfg.LogLevel)
			if err != nil {
				return err
			}
			ctx, done := interruptible()
			defer done()
			if list {
				if from == "" {
					from = "auto"
				}
				gens, errs, err := engine.ListBackups(ctx, cfg, from)
				if err != nil {
					return asUsage(err)
				}
				return printGenerations(gens, errs, asJSON)
			}
			var b *bar
			started := false
			res, err := engine.Restore(ctx, cfg, engine.RestoreOptions{From: from, At: t, FSID: fsid, Progress: func(done, total int64) {
				if !started {
					b, started = newBar(total, "restore", true), true
				}
				b.set(done)
			}}, log)
			b.finish()
			if err != nil {
				return asUsage(err)
			}
			if asJSON {
				b, _ := json.MarshalIndent(res, "", "  ")
				fmt.Println(string(b))
				return nil
			}
			fmt.Printf("restored the index of filesystem %s as of %s (generation %s, seq %d)\n",
				res.FSID, res.Time.UTC().Format(time.RFC3339Nano), res.Generation, res.Seq)
			fmt.Printf("%d files, %d dirs, %s in files; %d objects (%s) read\n",
				res.Usage.Files, res.Usage.Dirs, human(res.Usage.LogicalBytes), res.Objects, human(res.Bytes))
			for _, f := range res.Fallbacks {
				fmt.Printf("read from the other tier: %s\n", f)
			}
			for _, u := range res.Unlisted {
				fmt.Printf("could not list: %s\n", u)
			}
			if res.Checked > 0 {
				fmt.Printf("recovery: %d files the point had not settled were checked, %d chunks healed, %d files reverted\n",
					res.Checked, res.Healed, res.Reverted)
			}
			fmt.Println("gc will not sweep the stores until run with --after-restore (chunks written after this point may belong to a newer copy of the index)")
			return nil
		},
	}
	c.Flags().StringVar(&from, "from", "", "tier to restore from: primary, safety or auto (both, verified, falling back per object)")
	c.Flags().StringVar(&at, "at", "", "restore the newest point at or before this time")
	c.Flags().StringVar(&fsid, "fsid", "", "the filesystem to restore when the tiers hold backups of several")
	c.Flags().BoolVar(&list, "list", false, "list the points in time each tier can restore")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// asUsage turns the engine's config errors into exit code 2.
func asUsage(err error) error {
	var ce *engine.ConfigError
	if errors.As(err, &ce) {
		return usageErr(err)
	}
	return err
}

// parseTime reads --at: RFC 3339, local "2006-01-02 15:04:05" (or with a
// T), or @UNIX seconds.
func parseTime(s string) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		sec, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return time.Time{}, errors.New("want @ and whole seconds since 1970")
		}
		return time.Unix(sec, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New(`want RFC 3339 (2026-12-02T10:00:00Z), "2006-01-02 15:04:05" (local time) or @UNIX`)
}

func printGenerations(gens []replica.Generation, errs []error, asJSON bool) error {
	if asJSON {
		out := struct {
			Generations []replica.Generation `json:"generations"`
			Errors      []string             `json:"errors,omitempty"`
		}{Generations: gens}
		for _, e := range errs {
			out.Errors = append(out.Errors, e.Error())
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	if len(gens) == 0 {
		fmt.Println("no index backup in the tiers")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FSID\tGENERATION\tTIER\tFROM\tTO\tPOINTS\tSIZE\tNOTE")
	for _, g := range gens {
		tiers := make([]string, 0, len(g.Tiers))
		for t := range g.Tiers {
			tiers = append(tiers, t)
		}
		sort.Strings(tiers)
		for _, t := range tiers {
			tg := g.Tiers[t]
			note := ""
			switch {
			case !tg.Snapshot:
				note = "no snapshot: cannot restore"
			case tg.Gap != 0:
				note = fmt.Sprintf("object %d missing: restores up to %d", tg.Gap, tg.Last)
			}
			from, to := "-", "-"
			if tg.Snapshot {
				from, to = g.Start.UTC().Format(time.RFC3339), tg.LastTime.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", g.FSID, g.Name, t, from, to, tg.Last, human(tg.Bytes), note)
		}
	}
	tw.Flush()
	for _, e := range errs {
		fmt.Printf("could not list: %v\n", e)
	}
	return nil
}
