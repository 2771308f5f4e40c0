package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/dualstore/dualstore/dual"
	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/stores"
)

// watchOptions are `dualstore stats --watch`'s flags.
type watchOptions struct {
	interval time.Duration
	count    int // intervals to show; 0: until interrupted
}

// sample is one read of the stats and when it was taken.
type sample struct {
	at time.Time
	s  dsfs.Stats
}

// levelRates are the per-second rates of a tier or a store.
type levelRates struct {
	name                          string
	writeMiB, writes, readMiB, rd float64
	errors                        float64 // write and read errors and checksum errors
}

// watchRow is one interval of the live view.
type watchRow struct {
	at                              time.Time
	tiers                           []levelRates // primary, safety
	stores                          [][]levelRates
	fuseOps, fallbacks, heals, fill float64
	pending                         int64
	pendingAge                      float64
	action, health                  string
}

// delta is cur-prev per second; a counter that went back (a remount, a
// reset-stats) counts from zero.
func delta(prev, cur int64, secs float64) float64 {
	if cur < prev {
		prev = 0
	}
	return float64(cur-prev) / secs
}

func rateOf(name string, p, c levelCounters, secs float64) levelRates {
	const mib = 1 << 20
	return levelRates{
		name:     name,
		writeMiB: delta(p.w.Bytes, c.w.Bytes, secs) / mib,
		writes:   delta(p.w.OK, c.w.OK, secs),
		readMiB:  delta(p.r.Bytes, c.r.Bytes, secs) / mib,
		rd:       delta(p.r.OK, c.r.OK, secs),
		errors:   delta(p.w.Errors+p.r.Errors+p.r.ChecksumErrors, c.w.Errors+c.r.Errors+c.r.ChecksumErrors, secs),
	}
}

// levelCounters are the counters of a tier or store the rates come from.
type levelCounters struct {
	w stores.OpStats
	r stores.ReadStats
}

func tierCounters(t dual.TierStats) levelCounters   { return levelCounters{t.Writes, t.Reads} }
func storeCounters(m dual.StoreStats) levelCounters { return levelCounters{m.Writes, m.Reads} }

// tierNames returns the tiers of s, primary first.
func tierNames(s dsfs.Stats) []string {
	names := make([]string, 0, len(s.Tiers))
	for n := range s.Tiers {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		rank := func(n string) string {
			switch n {
			case dual.TierPrimary:
				return "0"
			case dual.TierSafety:
				return "1"
			}
			return "2" + n
		}
		return rank(names[i]) < rank(names[j])
	})
	return names
}

func fuseTotal(s dsfs.Stats) int64 {
	var n int64
	for _, o := range s.FUSEOps {
		n += o.Count
	}
	return n
}

// rates computes the interval from prev to cur.
func rates(prev, cur sample) watchRow {
	secs := max(cur.at.Sub(prev.at).Seconds(), 1e-3)
	p, c := prev.s, cur.s
	row := watchRow{
		at:         cur.at,
		fuseOps:    delta(fuseTotal(p), fuseTotal(c), secs),
		fallbacks:  delta(p.Fallbacks, c.Fallbacks, secs),
		heals:      delta(p.SelfHeals, c.SelfHeals, secs),
		fill:       delta(p.Backfilled, c.Backfilled, secs),
		pending:    c.PendingBackfill,
		pendingAge: c.PendingBackfillAgeSeconds,
		action:     c.Action,
		health:     c.Health.State,
	}
	for _, name := range tierNames(c) {
		ct, pt := c.Tiers[name], p.Tiers[name]
		row.tiers = append(row.tiers, rateOf(name, tierCounters(pt), tierCounters(ct), secs))
		var ms []levelRates
		for i, m := range ct.Stores {
			var pm dual.StoreStats
			if i < len(pt.Stores) && pt.Stores[i].Name == m.Name {
				pm = pt.Stores[i]
			}
			ms = append(ms, rateOf(m.Name, storeCounters(pm), storeCounters(m), secs))
		}
		row.stores = append(row.stores, ms)
	}
	return row
}

// lineHeader is the header of the piped form: one token per column, so
// `awk` and friends can pick columns by name.
func lineHeader(tiers []string) string {
	cols := []string{"time"}
	for _, t := range tiers {
		for _, c := range []string{"wMiB/s", "w/s", "rMiB/s", "r/s", "err/s"} {
			cols = append(cols, t+":"+c)
		}
	}
	cols = append(cols, "fuse/s", "fallback/s", "heal/s", "backfill/s", "pending", "health")
	return strings.Join(cols, " ")
}

// line is one interval in the piped form.
func (r watchRow) line() string {
	f := []string{r.at.Format("15:04:05")}
	for _, t := range r.tiers {
		f = append(f, fmt.Sprintf("%.2f", t.writeMiB), fmt.Sprintf("%.0f", t.writes), fmt.Sprintf("%.2f", t.readMiB), fmt.Sprintf("%.0f", t.rd), fmt.Sprintf("%.0f", t.errors))
	}
	f = append(f, fmt.Sprintf("%.0f", r.fuseOps), fmt.Sprintf("%.0f", r.fallbacks), fmt.Sprintf("%.0f", r.heals), fmt.Sprintf("%.0f", r.fill),
		fmt.Sprintf("%d", r.pending), r.health)
	return strings.Join(f, " ")
}

// panel is one interval in the terminal form, redrawn in place.
func (r watchRow) panel(w io.Writer, mnt string, every time.Duration) {
	fmt.Fprintf(w, "dualstore stats %s, every %s (Ctrl-C to stop)   %s\n\n", mnt, every, r.at.Format("15:04:05"))
	// Names padded to one width stay left-aligned among right-aligned
	// numbers.
	width := len("NAME")
	for i, t := range r.tiers {
		width = max(width, len(t.name))
		for _, m := range r.stores[i] {
			width = max(width, len(m.name)+2)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tWRITE MiB/s\tWRITES/s\tREAD MiB/s\tREADS/s\tERRORS/s\t\n", width, "NAME")
	for i, t := range r.tiers {
		fmt.Fprintf(tw, "%-*s\t%.2f\t%.0f\t%.2f\t%.0f\t%.0f\t\n", width, t.name, t.writeMiB, t.writes, t.readMiB, t.rd, t.errors)
		if len(r.stores[i]) > 1 {
			for _, m := range r.stores[i] {
				fmt.Fprintf(tw, "%-*s\t%.2f\t%.0f\t%.2f\t%.0f\t%.0f\t\n", width, "  "+m.name, m.writeMiB, m.writes, m.readMiB, m.rd, m.errors)
			}
		}
	}
	tw.Flush()
	pending := fmt.Sprintf("%d", r.pending)
	if r.pending > 0 {
		pending += fmt.Sprintf(" (for %s)", (time.Duration(r.pendingAge) * time.Second).Round(time.Second))
	}
	fmt.Fprintf(w, "\nFUSE requests/s %.0f   fallbacks/s %.0f   self-heals/s %.0f   backfilled/s %.0f   pending backfill %s\n",
		r.fuseOps, r.fallbacks, r.heals, r.fill, pending)
	fmt.Fprintf(w, "action: %s   health: %s\n", r.action, r.health)
}

// watchStats shows the rates of mnt every interval: redrawn in place on
// a terminal, one line per interval (after a header) otherwise.
func watchStats(mnt string, o watchOptions, out *os.File) error {
	if o.interval <= 0 {
		return usageErr(fmt.Errorf("--interval %s: want more than 0", o.interval))
	}
	if o.count < 0 {
		return usageErr(fmt.Errorf("--count %d: want 0 (until interrupted) or more", o.count))
	}
	read := func() (sample, error) {
		b, err := readControl(mnt, "stats")
		if err != nil {
			return sample{}, err
		}
		var s dsfs.Stats
		if err := json.Unmarshal(b, &s); err != nil {
			return sample{}, fmt.Errorf("stats of %s: %w", mnt, err)
		}
		return sample{at: time.Now(), s: s}, nil
	}
	prev, err := read()
	if err != nil {
		return err
	}
	tty := term.IsTerminal(int(out.Fd()))
	if !tty {
		fmt.Fprintln(out, lineHeader(tierNames(prev.s)))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for n := 0; o.count == 0 || n < o.count; n++ {
		select {
		case <-sigs:
			return nil
		case <-tick.C:
		}
		cur, err := read()
		if err != nil {
			return err
		}
		row := rates(prev, cur)
		prev = cur
		if tty {
			var b strings.Builder
			b.WriteString("\x1b[H\x1b[2J") // home, clear: redraw in place
			row.panel(&b, mnt, o.interval)
			fmt.Fprint(out, b.String())
			continue
		}
		if _, err := fmt.Fprintln(out, row.line()); err != nil {
			return nil // the reader went away (`| head`)
		}
	}
	return nil
}
