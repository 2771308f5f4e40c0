// Command dualstore-bench measures dualstore against the plain disk and
// against go-fuse's loopback filesystem, the floor of any go-fuse
// filesystem, and prints a markdown table of the medians (and writes every
// raw run as JSON). `make bench` runs it; see README, Performance.
//
// Variants, all in a work directory on the same disk:
//
//	(a) disk              the plain directory
//	(b) loopback          go-fuse's loopback of a plain directory, served by
//	                      this binary in a separate process (`dualstore-bench
//	                      loopback SRC MNT`) with dualstore's mount options,
//	                      and with FUSE passthrough hidden, since a chunking
//	                      filesystem cannot hand its files to the kernel
//	(c) dualstore-one     `dualstore mount`, write_to_both: false
//	(d) dualstore-both    both tiers (the default)
//	(e) dualstore-verify  both tiers and verify_both
//	(f) dualstore-fsync   both tiers, the local stores forced to sync by
//	                      fsync of each chunk file (`sync: fsync`); random
//	                      data, first copy only, compared with (d)
//	(g) dualstore-nobackup both tiers, index backup off; random first copy
//	                      and small files, judged against (d)
//	(h) dualstore-casync  both tiers, chunker.hash sha512-256, the primary a
//	                      local store in the casync layout (zstd); random
//	                      data, first copy and cold read, judged against (i)
//	(i) desync            the peer baseline of (h): `desync make -s STORE
//	                      out.caibx SRC` to a fresh local store plus a syncfs
//	                      (the write), `desync extract` after drop_caches
//	                      (the cold read); skipped, and said so, without
//	                      the -desync binary
//
// Cases: a sequential write of one file copied from a pre-generated source
// (1 MiB writes, fsync, close), a second copy of it (dedup), cold and warm
// sequential reads, for a random and a text-like (≈2.8× zstd) data set; the
// create, `ls -l`, read and delete of many 4 KiB files; the daemon's peak
// RSS while writing a big file, and with many files in the tree (after
// creating -files through the mount; after a find -ls of -walk-files put
// into the index), and its CPU time per GiB (or per 1000 files) in every
// case. Every dualstore value is also
// given as the median of its per-run ratios to (b), which is what the
// targets of issue #6 are stated in: the machine may be noisy, but both
// sides of a ratio see the same noise.
//
// Usage:
//
//	dualstore-bench -bin bin/dualstore [-size 1GiB] [-runs 3] [-small 10000]
//	    [-rss-size 4GiB] [-files 100000] [-walk-files 1000000] [-dir DIR]
//	    [-json bench.json] [-only REGEXP] [-quick] [-compress]
//	    [-mount-args '--cache-mb=256'] [-verify=true] [-desync bin/desync]
//
// -only selects cases by name: seq/random/dualstore-both,
// seq/compressible/loopback, small/disk, rss/dualstore-both,
// rss-files/dualstore-both, rss-walk/dualstore-both… Ratios need
// the loopback of the same case, so keep it in: -only 'random/(loopback|dualstore-both)'.
//
// Needs /dev/fuse and the right to mount (root, or fusermount3), and for
// truly cold reads the right to write /proc/sys/vm/drop_caches (else the
// backing files are evicted one by one with posix_fadvise).
//
// Exit codes: 0 the run completed (targets may be missed: the table says
// which), 1 an error, 2 bad usage, 130 interrupted. Every mount it made is
// unmounted on every path, and only processes it started are signalled.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dualstore/dualstore/dual/engine"
)

// options are the command line.
type options struct {
	bin     string
	desync  string
	size    int64
	runs    int
	small   int
	bigSize int64
	// files and walkFiles are the sizes of the many-files cases: created
	// through the mount, and put into the index for a walk.
	files, walkFiles int
	dir              string
	jsonPath         string
	only             *regexp.Regexp
	compress         bool
	mountArgs        []string
	verify           bool
}

// bench is one benchmark run.
type bench struct {
	opts options
	work string
	// noDesync says why the desync baselines are skipped ("": they run).
	noDesync   string
	procs      procs
	dropCaches bool
	log        io.Writer

	mu      sync.Mutex
	samples []sample
}

func (b *bench) add(s sample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.samples = append(b.samples, s)
}

func (b *bench) snapshot() []sample {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sample(nil), b.samples...)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == loopbackCmd {
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: dualstore-bench loopback SRC MNT")
			os.Exit(2)
		}
		if err := runLoopback(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "dualstore-bench loopback:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var pe parseError
		if !errors.As(err, &pe) { // the flag package has said it already
			fmt.Fprintln(os.Stderr, "dualstore-bench:", err)
		}
		os.Exit(2)
	}
	os.Exit(run(opts))
}

func parseFlags(args []string) (options, error) {
	o := options{size: gib, bigSize: 4 * gib, files: 100_000, walkFiles: 1_000_000}
	fs := flag.NewFlagSet("dualstore-bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin/dualstore", "the dualstore binary to mount with")
	fs.StringVar(&o.desync, "desync", "bin/desync", "the desync binary of the peer baselines (make desync); without it their rows are skipped")
	fs.Var((*byteSize)(&o.size), "size", "size of the sequential file (binary units: 1GiB, 256MiB, 4G)")
	fs.IntVar(&o.runs, "runs", 3, "runs of every case; the table shows medians")
	fs.IntVar(&o.small, "small", 10000, "number of 4 KiB files in the small-file cases")
	fs.Var((*byteSize)(&o.bigSize), "rss-size", "size of the big write that measures the daemon's peak RSS")
	fs.IntVar(&o.files, "files", o.files, "files of 4 KiB created through the mount for the daemon's RSS with many files (rss-files)")
	fs.IntVar(&o.walkFiles, "walk-files", o.walkFiles, "files put into the index, then walked with find -ls, for the daemon's RSS with many files (rss-walk)")
	fs.StringVar(&o.dir, "dir", "", "directory for the work dir (default: the temp dir if it is on the same disk as the current directory and not tmpfs, else the current directory)")
	fs.StringVar(&o.jsonPath, "json", "bench.json", "where to write every raw run as JSON")
	only := fs.String("only", "", "run only the cases whose name matches this regexp (seq/random/dualstore-both, small/loopback, rss/dualstore-both…)")
	quick := fs.Bool("quick", false, "a smoke run: -size 256MiB -runs 1 -small 1000 -rss-size 1GiB -files 5000 -walk-files 50000 unless given")
	fs.BoolVar(&o.compress, "compress", false, "zstd-compress dualstore's local stores (default off, as in dualstore)")
	mountArgs := fs.String("mount-args", "", "extra arguments for dualstore mount, e.g. --cache-mb=256")
	fs.BoolVar(&o.verify, "verify", true, "compare the files of each variant's first run with the source (untimed)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dualstore-bench [flags]\n\nMeasures dualstore against the plain disk and go-fuse's loopback; see README, Performance.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, parseError{err}
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["size"] {
			o.size = 256 * mib
		}
		if !set["runs"] {
			o.runs = 1
		}
		if !set["small"] {
			o.small = 1000
		}
		if !set["rss-size"] {
			o.bigSize = gib
		}
		if !set["files"] {
			o.files = 5000
		}
		if !set["walk-files"] {
			o.walkFiles = 50_000
		}
	}
	if o.runs < 1 || o.small < 1 || o.size < mib || o.bigSize < mib {
		return o, fmt.Errorf("-runs and -small must be ≥ 1, -size and -rss-size ≥ 1MiB")
	}
	if o.files < 1 || o.walkFiles < walkReadEvery {
		return o, fmt.Errorf("-files must be ≥ 1 and -walk-files ≥ %d", walkReadEvery)
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return o, fmt.Errorf("-only: %w", err)
		}
		if !slices.ContainsFunc(caseNames(), re.MatchString) {
			return o, fmt.Errorf("-only %q matches no case; the cases are: %s", *only, strings.Join(caseNames(), " "))
		}
		o.only = re
	}
	o.mountArgs = strings.Fields(*mountArgs)
	return o, nil
}

// parseError is a bad command line the flag package has reported.
type parseError struct{ error }

// caseNames lists what -only chooses from, in run order.
func caseNames() []string {
	var out []string
	for _, ds := range []dataset{randomData, compressibleData} {
		for _, v := range variants {
			if v.runsOn(ds.name) {
				out = append(out, "seq/"+ds.name+"/"+v.key)
			}
		}
	}
	for _, k := range smallVariants {
		out = append(out, "small/"+k)
	}
	return append(out, "rss/"+rssVariant, rssFilesCase, rssWalkCase)
}

// The small-file cases run against (a), (b), (c), (d) and (g): (c) shows
// what the second store costs, (g) what the index backup costs. The big
// write and the many-files cases run against (d).
var smallVariants = []string{"disk", "loopback", "dualstore-one", "dualstore-both", "dualstore-nobackup"}

const rssVariant = "dualstore-both"

// byteSize is a flag holding a size in binary units.
type byteSize int64

func (s *byteSize) String() string { return fmtBytes(float64(*s)) }

func (s *byteSize) Set(v string) error {
	n, err := engine.ParseBytes(v)
	if err != nil {
		return err
	}
	*s = byteSize(n)
	return nil
}

func run(opts options) int {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: opts, log: os.Stderr}
	m, err := b.setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dualstore-bench:", err)
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- b.runAll(ctx) }()
	code := 0
	select {
	case err = <-errc:
	case <-ctx.Done():
		b.logf("interrupted: stopping the daemons and unmounting")
		select {
		case err = <-errc:
		case <-time.After(5 * time.Second):
			// Stuck in a call on a mount: stopping its daemon ends it.
			err = ctx.Err()
		}
		code = 130
	}
	err = errors.Join(err, b.procs.stopAll())
	if ctx.Err() != nil {
		code = 130
		if err == nil {
			err = errors.New("interrupted")
		} else {
			err = fmt.Errorf("interrupted: %w", err)
		}
	}
	if rerr := b.removeWork(); rerr != nil {
		b.logf("%v", rerr)
	}
	m.Seconds = time.Since(start).Seconds()
	if err != nil {
		m.Error = strings.Join(strings.Fields(err.Error()), " ")
		if len(m.Error) > 2000 {
			m.Error = m.Error[:2000] + "…"
		}
	}
	samples := b.snapshot()
	rows := summarize(samples)
	fmt.Print(markdown(m, rows))
	if jerr := writeJSON(opts.jsonPath, report{Meta: m, Rows: rows, Samples: samples}); jerr != nil {
		fmt.Fprintln(os.Stderr, "dualstore-bench:", jerr)
		if code == 0 {
			code = 1
		}
	} else {
		b.logf("raw runs written to %s (%s in all)", opts.jsonPath, time.Since(start).Round(time.Second))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dualstore-bench:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// setup checks the prerequisites and makes the work dir.
func (b *bench) setup() (meta, error) {
	o := b.opts
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return meta{}, errors.New("/dev/fuse is missing: the bench mounts FUSE filesystems")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return meta{}, err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return meta{}, fmt.Errorf("-bin %s: not a dualstore binary (make build): %v", o.bin, err)
	}
	b.opts.bin = bin
	b.opts.desync, b.noDesync = findDesync(o.desync)
	parent, err := workParent(o.dir)
	if err != nil {
		return meta{}, err
	}
	b.work, err = os.MkdirTemp(parent, "dualstore-bench-")
	if err != nil {
		return meta{}, err
	}
	b.dropCaches = canDropCaches()
	m := hostMeta(b.work)
	m.DropCaches = b.dropCaches
	m.Size, m.BigSize, m.Small, m.Runs = o.size, o.bigSize, o.small, o.runs
	m.Files, m.WalkFiles = o.files, o.walkFiles
	m.Compress, m.MountArgs = o.compress, o.mountArgs
	if o.only != nil {
		m.Only = o.only.String()
	}
	m.Desync = b.opts.desync
	if b.noDesync != "" && b.wantsDesync() {
		m.NoDesync = b.noDesync
		b.logf("desync baselines skipped: %s", b.noDesync)
	}
	b.logf("work dir %s (%s); drop_caches permitted: %v", b.work, m.WorkFS, b.dropCaches)
	if strings.HasPrefix(m.WorkFS, "tmpfs") {
		b.logf("WARNING: the work dir is on tmpfs: (a) measures memory, not a disk; use -dir")
	}
	return m, nil
}

// selected reports whether -only lets the case run.
func (b *bench) selected(name string) bool {
	return b.opts.only == nil || b.opts.only.MatchString(name)
}

// runs reports whether v runs on ds in this bench: selected, and for the
// desync baseline, with the binary found.
func (b *bench) runs(v variant, ds dataset) bool {
	if !v.runsOn(ds.name) || !b.selected("seq/"+ds.name+"/"+v.key) {
		return false
	}
	return v.kind != kindDesync || b.noDesync == ""
}

// wantsDesync reports whether -only selects a desync case.
func (b *bench) wantsDesync() bool {
	for _, v := range variants {
		if v.kind == kindDesync && b.selected("seq/random/"+v.key) {
			return true
		}
	}
	return false
}

// runAll runs every selected case; the variants of one case alternate
// within each run, so a noisy minute hits all of them.
func (b *bench) runAll(ctx context.Context) error {
	datasets := []dataset{randomData, compressibleData}
	srcs := map[string]string{}
	for _, ds := range datasets {
		for _, v := range variants {
			if b.runs(v, ds) && srcs[ds.name] == "" {
				p := filepath.Join(b.work, "source-"+ds.name)
				b.logf("generating the %s source (%s)", ds.name, fmtBytes(float64(b.opts.size)))
				if err := generate(ctx, ds, b.opts.size, p); err != nil {
					return err
				}
				srcs[ds.name] = p
			}
		}
	}
	for r := range b.opts.runs {
		for _, ds := range datasets {
			for _, v := range variants {
				if !b.runs(v, ds) {
					continue
				}
				if err := b.seqOnce(ctx, v, ds, srcs[ds.name], r); err != nil {
					return err
				}
			}
		}
	}
	for r := range b.opts.runs {
		for _, key := range smallVariants {
			if !b.selected("small/" + key) {
				continue
			}
			if err := b.smallOnce(ctx, variantByKey(key), r); err != nil {
				return err
			}
		}
	}
	if b.selected("rss/" + rssVariant) {
		if err := b.rssOnce(ctx); err != nil {
			return err
		}
	}
	if b.selected(rssFilesCase) {
		if err := b.rssFilesOnce(ctx); err != nil {
			return fmt.Errorf("%s: %w", rssFilesCase, err)
		}
	}
	if b.selected(rssWalkCase) {
		if err := b.rssWalkOnce(ctx); err != nil {
			return fmt.Errorf("%s: %w", rssWalkCase, err)
		}
	}
	return nil
}

// generate writes size bytes of ds to p (untimed).
func generate(ctx context.Context, ds dataset, size int64, p string) error {
	r, err := ds.reader(size)
	if err != nil {
		return err
	}
	_, _, err = writeFrom(ctx, r, p)
	return err
}

// workParent picks where the work dir goes: -dir, else the temp dir if it
// is a real disk shared with the current directory, else the current
// directory (the repo's disk under `make bench`).
func workParent(dir string) (string, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		return filepath.Abs(dir)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	tmp := os.TempDir()
	var st, sc syscall.Stat_t
	var sf syscall.Statfs_t
	if syscall.Stat(tmp, &st) == nil && syscall.Stat(cwd, &sc) == nil && syscall.Statfs(tmp, &sf) == nil &&
		st.Dev == sc.Dev && sf.Type != tmpfsMagic {
		return tmp, nil
	}
	return cwd, nil
}

const tmpfsMagic = 0x01021994

// removeWork deletes the work dir, unless a mount is left below it (then
// it detaches it and leaves the dir for a look).
func (b *bench) removeWork() error {
	if b.work == "" {
		return nil
	}
	if left := mountsUnder(b.work); len(left) > 0 {
		for _, mp := range left {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
		return fmt.Errorf("mounts were left below %s (%s): detached them; the work dir stays", b.work, strings.Join(left, ", "))
	}
	return os.RemoveAll(b.work)
}

// mountsUnder lists the mount points below dir.
func mountsUnder(dir string) []string {
	var out []string
	for _, mi := range mountTable() {
		if strings.HasPrefix(mi.point, dir+"/") {
			out = append(out, mi.point)
		}
	}
	return out
}
