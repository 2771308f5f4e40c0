package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/dualstore/dualstore/stores"
)

// Generation is one generation as the targets hold it.
type Generation struct {
	FSID  string
	Name  string
	Start time.Time // its snapshot's point in time
	// Tiers holds, per target name, what that target can restore.
	Tiers map[string]TierGeneration
}

// TierGeneration is what one target holds of a generation.
type TierGeneration struct {
	Snapshot bool      // it holds the snapshot
	Last     uint64    // the last seq of the unbroken run from the snapshot
	LastTime time.Time // the point in time that run reaches
	Objects  int
	Bytes    int64
	Gap      uint64 // the first missing seq below a later one (0: none)
}

// listing is every object the targets hold, by fsid and generation.
type listing struct {
	objs map[string]map[string]map[uint64][]found // fsid → gen → seq → copies
	errs []error                                  // targets that could not be listed
}

// found is one copy of an object.
type found struct {
	o      object
	target int
	size   int64
}

func list(ctx context.Context, targets []Target, fsid string) (*listing, error) {
	l := &listing{objs: map[string]map[string]map[uint64][]found{}}
	prefix := Root + "/"
	if fsid != "" {
		prefix = fsidPrefix(fsid)
	}
	ok := 0
	for i, t := range targets {
		ms, err := t.Store.ListMeta(ctx, prefix)
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("tier %s: listing the index backup: %w", t.Name, err))
			continue
		}
		ok++
		for _, m := range ms {
			o, valid := parseObject(m.Name)
			if !valid {
				continue
			}
			g := l.objs[o.FSID]
			if g == nil {
				g = map[string]map[uint64][]found{}
				l.objs[o.FSID] = g
			}
			if g[o.Gen] == nil {
				g[o.Gen] = map[uint64][]found{}
			}
			g[o.Gen][o.Seq] = append(g[o.Gen][o.Seq], found{o: o, target: i, size: m.Size})
		}
	}
	if ok == 0 {
		return nil, errors.Join(l.errs...)
	}
	return l, nil
}

// List returns the generations the targets hold for fsid (every
// filesystem's when fsid is ""), oldest first, and the targets it could
// not list.
func List(ctx context.Context, targets []Target, fsid string) ([]Generation, []error, error) {
	l, err := list(ctx, targets, fsid)
	if err != nil {
		return nil, nil, err
	}
	var out []Generation
	for fs, gens := range l.objs {
		for name, seqs := range gens {
			g := Generation{FSID: fs, Name: name, Tiers: map[string]TierGeneration{}}
			for i, t := range targets {
				var tg TierGeneration
				var max uint64
				for seq, copies := range seqs {
					for _, c := range copies {
						if c.target != i {
							continue
						}
						tg.Objects++
						tg.Bytes += c.size
						max = maxU(max, seq)
						if seq == 1 {
							tg.Snapshot = true
							g.Start = c.o.Time
						}
					}
				}
				if tg.Objects == 0 {
					continue
				}
				if tg.Snapshot {
					for s := uint64(1); ; s++ {
						c := copyIn(seqs[s], i)
						if c == nil {
							break
						}
						tg.Last, tg.LastTime = s, c.o.Time
					}
					if tg.Last < max {
						tg.Gap = tg.Last + 1
					}
				}
				g.Tiers[t.Name] = tg
			}
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FSID != out[j].FSID {
			return out[i].FSID < out[j].FSID
		}
		return out[i].Name < out[j].Name
	})
	return out, l.errs, nil
}

func copyIn(cs []found, target int) *found {
	for i := range cs {
		if cs[i].target == target {
			return &cs[i]
		}
	}
	return nil
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// RestoreOptions say what to restore where.
type RestoreOptions struct {
	// Targets are tried in order for every object: the first holds the
	// preferred copy, later ones are the fallback (auto).
	Targets []Target
	// FSID picks the filesystem; "" accepts the only one the targets hold.
	FSID string
	// At picks the newest point at or before it; zero means the newest.
	At time.Time
	// Path is the database file to write; it must not exist.
	Path string
	// Progress is called after each object with the bytes read so far
	// and the total to read.
	Progress func(done, total int64)
}

// Restored describes a restore.
type Restored struct {
	FSID       string
	Generation string
	Seq        uint64
	Time       time.Time // the point in time restored
	Pages      uint32
	PageSize   uint32
	Objects    int
	Bytes      int64
	// Fallbacks names the objects read from a later target because an
	// earlier one lacked them or held a bad copy, and why.
	Fallbacks []string
	// Unlisted names targets that could not be listed.
	Unlisted []string
}

// Restore rebuilds the index database at opts.Path from the newest point
// at or before opts.At that the targets can restore, verifying every
// object (its BLAKE3, its LTX checksums, its place in the chain) and
// taking it from the next target when one lacks it or holds a bad copy.
// On error nothing is left at opts.Path.
func Restore(ctx context.Context, opts RestoreOptions) (res *Restored, err error) {
	l, err := list(ctx, opts.Targets, opts.FSID)
	if err != nil {
		return nil, err
	}
	res = &Restored{}
	for _, e := range l.errs {
		res.Unlisted = append(res.Unlisted, e.Error())
	}
	fsid := opts.FSID
	if fsid == "" {
		var ids []string
		for id := range l.objs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		switch len(ids) {
		case 0:
			return nil, fmt.Errorf("no index backup in %s", targetNames(opts.Targets))
		case 1:
			fsid = ids[0]
		default:
			return nil, fmt.Errorf("the tiers hold index backups of %d filesystems (%s): name one with --fsid", len(ids), strings.Join(ids, ", "))
		}
	}
	gens := l.objs[fsid]
	if len(gens) == 0 {
		return nil, fmt.Errorf("no index backup of filesystem %s in %s", fsid, targetNames(opts.Targets))
	}
	names := make([]string, 0, len(gens))
	for g := range gens {
		names = append(names, g)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	at := opts.At
	if at.IsZero() {
		at = time.Now().Add(time.Hour)
	}
	var plan [][]found
	var gen string
	var gapErr error
	for _, g := range names {
		seqs := gens[g]
		snaps := seqs[1]
		if len(snaps) == 0 || snaps[0].o.Time.After(at) {
			continue
		}
		plan = [][]found{snaps}
		for s := uint64(2); ; s++ {
			cs := seqs[s]
			if len(cs) == 0 {
				// A later object below at beyond the missing one is a gap:
				// restoring past it is impossible, restoring short of it
				// would silently lose points the user asked for.
				for later, lc := range seqs {
					if later > s && !lc[0].o.Time.After(at) {
						gapErr = fmt.Errorf("generation %s: object %d is in no tier, but later ones are: "+
							"the newest point it can restore is %s (seq %d); restore that with --at %s",
							g, s, plan[len(plan)-1][0].o.Time.UTC().Format(time.RFC3339Nano), s-1,
							plan[len(plan)-1][0].o.Time.UTC().Format(time.RFC3339Nano))
					}
				}
				break
			}
			if cs[0].o.Time.After(at) {
				break
			}
			plan = append(plan, cs)
		}
		gen = g
		break
	}
	if gapErr != nil {
		return nil, gapErr
	}
	if gen == "" {
		return nil, fmt.Errorf("no index backup of filesystem %s reaches back to %s", fsid, opts.At.UTC().Format(time.RFC3339))
	}
	var total int64
	for _, cs := range plan {
		total += cs[0].size
	}

	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(opts.Path)
		}
	}()
	var s *sums
	var done int64
	var commit uint32
	for _, cs := range plan {
		// Copies in target order.
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].target < cs[j].target })
		var errs []error
		applied := false
		for _, c := range cs {
			t := opts.Targets[c.target]
			data, err := getObject(ctx, t, c)
			if err == nil {
				commit, err = applyObject(f, c.o, data, &s)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				errs = append(errs, fmt.Errorf("tier %s: %w", t.Name, err))
				continue
			}
			if len(errs) > 0 {
				res.Fallbacks = append(res.Fallbacks, fmt.Sprintf("%s from tier %s (%v)", c.o.name(), t.Name, errors.Join(errs...)))
			}
			done += int64(len(data))
			res.Objects++
			res.Bytes += int64(len(data))
			res.Seq, res.Time = c.o.Seq, c.o.Time
			applied = true
			break
		}
		if !applied {
			return nil, fmt.Errorf("index backup object %s: no tier holds a good copy: %w", cs[0].o.name(), errors.Join(errs...))
		}
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	if err := f.Truncate(int64(commit) * int64(s.psize)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	res.FSID, res.Generation, res.Pages, res.PageSize = fsid, gen, commit, s.psize
	return res, nil
}

func targetNames(ts []Target) string {
	var n []string
	for _, t := range ts {
		n = append(n, "tier "+t.Name)
	}
	return strings.Join(n, " and ")
}

// getObject reads one copy, refusing one larger than listed, or listed
// as larger than MaxObjectBytes (a corrupt copy, never read).
func getObject(ctx context.Context, t Target, c found) ([]byte, error) {
	if c.size > MaxObjectBytes {
		return nil, fmt.Errorf("%s: %w: listed as %d bytes, more than an index backup object may be (%d)", c.o.name(), stores.ErrCorrupt, c.size, int64(MaxObjectBytes))
	}
	data, err := t.Store.GetMeta(ctx, c.o.name(), c.size)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != c.size {
		return nil, fmt.Errorf("%s: %w: %d bytes, listed as %d", c.o.name(), stores.ErrCorrupt, len(data), c.size)
	}
	return data, nil
}

// applyObject checks an object and writes its pages into f: a snapshot
// (seq 1) starts the image, a segment must apply to the image *s holds.
// Nothing is written unless the whole object checks out. It decodes the
// object twice, to check it and work out the image's checksum, then to
// write the pages, rather than hold every page decoded: an object's pages
// are LZ4-compressed, and a crafted one could decode to far more than it
// is.
func applyObject(f *os.File, o object, data []byte, s **sums) (uint32, error) {
	snap := o.Seq == 1
	var cur *sums
	if !snap {
		if *s == nil {
			return 0, fmt.Errorf("%s: %w: a segment without its snapshot", o.name(), errBad)
		}
		cur = *s
	}
	// The checksum the image would have, before touching it.
	var next *sums
	start := func(psize uint32) {
		next = newSums(psize)
		if !snap {
			next.page = append([]ltx.Checksum(nil), cur.page...)
			next.total = cur.total
		}
	}
	h, tr, err := decode(o, data, cur, func(n uint32, d []byte) error {
		if next == nil {
			start(uint32(len(d)))
		}
		next.set(n, d)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if next == nil {
		start(h.PageSize)
	}
	if snap != h.IsSnapshot() {
		return 0, fmt.Errorf("%s: %w: snapshot flag does not match its seq", o.name(), errBad)
	}
	next.truncate(h.Commit)
	if next.pages() != h.Commit && next.pages()+1 != h.Commit {
		// A snapshot must hold every page (bar the lock page at the end).
		if snap || next.pages() < h.Commit {
			return 0, fmt.Errorf("%s: %w: %d pages for a database of %d", o.name(), errBad, next.pages(), h.Commit)
		}
	}
	if next.value() != tr.PostApplyChecksum {
		return 0, fmt.Errorf("%s: %w: the pages give checksum %s, the file says %s", o.name(), errBad, next.value(), tr.PostApplyChecksum)
	}
	if _, _, err := decode(o, data, cur, func(n uint32, d []byte) error {
		_, err := f.WriteAt(d, int64(n-1)*int64(h.PageSize))
		return err
	}); err != nil {
		return 0, err
	}
	*s = next
	return h.Commit, nil
}
