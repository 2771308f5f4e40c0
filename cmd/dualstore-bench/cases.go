package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bufSize is the size of every read and write the bench makes on big
// files: dualstore's (and the loopback's) MaxWrite, and what cp uses on
// a filesystem that reports a 1 MiB block.
const bufSize = 1 << 20

const (
	smallFileSize = 4 << 10
	mib           = 1 << 20
	gib           = 1 << 30
)

func rate(n int64, d time.Duration) float64 { return float64(n) / mib / d.Seconds() }

// measured is one timed operation: n bytes (or files) in d, and what the
// daemon spent on it.
type measured struct {
	n int64
	d time.Duration
	// cpu is the daemon's CPU seconds during the operation and hwm its
	// peak RSS after it; both zero for the plain disk.
	cpu float64
	hwm int64
}

// timed runs op, which times itself, and adds the daemon's CPU time.
func (in *instance) timed(op func() (int64, time.Duration, error)) (measured, error) {
	u0, err := in.usage()
	if err != nil {
		return measured{}, err
	}
	n, d, err := op()
	if err != nil {
		return measured{}, err
	}
	u1, err := in.usage()
	if err != nil {
		return measured{}, err
	}
	return measured{n: n, d: d, cpu: u1.CPU - u0.CPU, hwm: u1.HWM}, nil
}

// detail is the sample detail of m (count names n: "bytes" or "files").
func (m measured) detail(in *instance, count string) map[string]float64 {
	det := map[string]float64{"seconds": m.d.Seconds(), count: float64(m.n)}
	if in.d != nil {
		det["daemon_cpu_seconds"] = m.cpu
		det["daemon_peak_rss_bytes"] = float64(m.hwm)
	}
	return det
}

// seqOnce measures one run of the sequential cases for one variant and
// one data set: write (copy of the source file, fsync), second copy,
// cold read, warm read (only the write for a writeOnly variant, the
// write and the cold read for a writeCold one).
func (b *bench) seqOnce(ctx context.Context, v variant, ds dataset, src string, run int) (err error) {
	if v.kind == kindDesync {
		return b.desyncOnce(ctx, v, ds, src, run)
	}
	name := fmt.Sprintf("seq-%s-%s", ds.name, v.key)
	in, err := b.open(ctx, v, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { err = errors.Join(err, in.close()) }()
	a, c := filepath.Join(in.dir, "a"), filepath.Join(in.dir, "b")
	line := ""
	add := func(cs string, m measured, extra map[string]float64) {
		det := m.detail(in, "bytes")
		for k, x := range extra {
			det[k] = x
		}
		b.add(sample{Case: cs, Data: ds.name, Variant: v.key, Run: run, Value: rate(m.n, m.d), Unit: "MiB/s", Detail: det})
		line += fmt.Sprintf(" %s %s", cs, fmtNum(rate(m.n, m.d)))
	}
	finish := func(files ...string) error {
		if b.opts.verify && run == 0 {
			for _, p := range files {
				if err := sameFiles(ctx, src, p); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			line += " (contents verified)"
		}
		b.logf("run %d/%d %-34s MiB/s:%s", run+1, b.opts.runs, name, line)
		return nil
	}

	// First copy.
	if err := b.settle(src); err != nil {
		return err
	}
	m, err := in.timed(func() (int64, time.Duration, error) { return copyFile(ctx, src, a) })
	if err != nil {
		return fmt.Errorf("%s: write: %w", name, err)
	}
	add("write", m, nil)
	if v.writeOnly {
		return finish(a)
	}

	if !v.writeCold {
		if err := b.copy2(ctx, in, src, c, add); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	// Cold read: a fresh daemon and no page cache.
	if err := in.remount(ctx); err != nil {
		return fmt.Errorf("%s: remount: %w", name, err)
	}
	how, err := b.coldCaches(in)
	if err != nil {
		return err
	}
	m, err = in.timed(func() (int64, time.Duration, error) { return readFile(ctx, a) })
	if err != nil {
		return fmt.Errorf("%s: cold read: %w", name, err)
	}
	add("read-cold", m, map[string]float64{"drop_caches": how})
	if v.writeCold {
		return finish(a)
	}

	// Warm read: everything that can be cached has been read once.
	m, err = in.timed(func() (int64, time.Duration, error) { return readFile(ctx, a) })
	if err != nil {
		return fmt.Errorf("%s: warm read: %w", name, err)
	}
	add("read-warm", m, nil)
	return finish(a, c)
}

// copy2 measures the second copy, to c: nothing new to store.
func (b *bench) copy2(ctx context.Context, in *instance, src, c string, add func(string, measured, map[string]float64)) error {
	if err := b.settle(src); err != nil {
		return err
	}
	w0, q0, err := in.storedBytes()
	if err != nil {
		return err
	}
	m, err := in.timed(func() (int64, time.Duration, error) { return copyFile(ctx, src, c) })
	if err != nil {
		return fmt.Errorf("second copy: %w", err)
	}
	w1, q1, err := in.storedBytes()
	if err != nil {
		return err
	}
	var extra map[string]float64
	if in.v.kind == kindDualstore {
		extra = map[string]float64{
			"new_chunk_bytes":    float64(max(w1-w0, q1-q0)),
			"tier_write_bytes":   float64(w1 - w0),
			"unique_bytes_added": float64(q1 - q0),
		}
	}
	add("copy2", m, extra)
	return nil
}

// smallOnce measures one run of the small-file cases for one variant.
func (b *bench) smallOnce(ctx context.Context, v variant, run int) (err error) {
	name := "small-" + v.key
	in, err := b.open(ctx, v, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { err = errors.Join(err, in.close()) }()
	n := b.opts.small
	dir := filepath.Join(in.dir, "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = filepath.Join(dir, fmt.Sprintf("f%06d", i))
	}
	line := ""
	step := func(c string, f func() error) error {
		m, err := in.timed(func() (int64, time.Duration, error) {
			t0 := time.Now()
			err := f()
			return int64(n), time.Since(t0), err
		})
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, c, err)
		}
		val := float64(n) / m.d.Seconds()
		b.add(sample{Case: c, Variant: v.key, Run: run, Value: val, Unit: "files/s", Detail: m.detail(in, "files")})
		line += fmt.Sprintf(" %s %s", c[len("small-"):], fmtNum(val))
		return ctx.Err()
	}

	gen := newRandomGen(randomData.seed + 100)
	buf := make([]byte, smallFileSize)
	if err := b.settle(); err != nil {
		return err
	}
	if err := step("small-create", func() error {
		for _, p := range names {
			gen.fill(buf)
			if err := writeSmall(p, buf); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// stat on a fresh mount: neither the kernel nor the daemon has the
	// entries cached (the disk's page cache stays warm).
	if err := in.remount(ctx); err != nil {
		return err
	}
	if err := b.settle(); err != nil {
		return err
	}
	if err := step("small-stat", func() error { return lsLong(ctx, dir) }); err != nil {
		return err
	}
	if err := step("small-read", func() error {
		for _, p := range names {
			if err := readSmall(p, buf); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := step("small-delete", func() error {
		for _, p := range names {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	b.logf("run %d/%d %-34s files/s:%s", run+1, b.opts.runs, name, line)
	return nil
}

// rssOnce writes one big file of random data through dualstore with both
// tiers and records the daemon's peak RSS and CPU time.
func (b *bench) rssOnce(ctx context.Context) (err error) {
	v := variantByKey(rssVariant)
	in, err := b.open(ctx, v, "rss-"+v.key)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.close()) }()
	if err := b.settle(); err != nil {
		return err
	}
	src, err := randomData.reader(b.opts.bigSize)
	if err != nil {
		return err
	}
	m, err := in.timed(func() (int64, time.Duration, error) { return writeFrom(ctx, src, filepath.Join(in.dir, "big")) })
	if err != nil {
		return fmt.Errorf("big write: %w", err)
	}
	det := m.detail(in, "bytes")
	b.add(sample{Case: "rss-peak", Data: randomData.name, Variant: v.key, Value: float64(m.hwm) / mib, Unit: "MiB", Detail: det})
	b.add(sample{Case: "rss-write", Data: randomData.name, Variant: v.key, Value: rate(m.n, m.d), Unit: "MiB/s", Detail: det})
	b.logf("big write %s: %s MiB/s, daemon peak RSS %s MiB, %.2f CPU s/GiB", fmtBytes(float64(m.n)), fmtNum(rate(m.n, m.d)), fmtNum(float64(m.hwm)/mib), m.cpu/(float64(m.n)/gib))
	return nil
}

// copyFile copies src to a new file dst like cp, then fsyncs and closes
// it; the time covers create to close.
func copyFile(ctx context.Context, src, dst string) (int64, time.Duration, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return writeFrom(ctx, f, dst)
}

// writeFrom writes r to a new file dst in 1 MiB writes, fsyncs and closes
// it, and times all of it.
func writeFrom(ctx context.Context, r io.Reader, dst string) (int64, time.Duration, error) {
	buf := make([]byte, bufSize)
	t0 := time.Now()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return n, 0, err
		}
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			w, err := out.Write(buf[:k])
			n += int64(w)
			if err != nil {
				out.Close()
				return n, 0, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			out.Close()
			return n, 0, rerr
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return n, 0, fmt.Errorf("fsync %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return n, 0, fmt.Errorf("close %s: %w", dst, err)
	}
	return n, time.Since(t0), nil
}

// readFile reads p to its end in 1 MiB reads; the time covers open to
// close.
func readFile(ctx context.Context, p string) (int64, time.Duration, error) {
	buf := make([]byte, bufSize)
	t0 := time.Now()
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			f.Close()
			return n, 0, err
		}
	}
	if err := f.Close(); err != nil {
		return n, 0, err
	}
	return n, time.Since(t0), nil
}

// sameFiles compares two files byte for byte (untimed).
func sameFiles(ctx context.Context, want, got string) error {
	fw, err := os.Open(want)
	if err != nil {
		return err
	}
	defer fw.Close()
	fg, err := os.Open(got)
	if err != nil {
		return err
	}
	defer fg.Close()
	bw, bg := make([]byte, bufSize), make([]byte, bufSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		kw, ew := io.ReadFull(fw, bw)
		kg, eg := io.ReadFull(fg, bg)
		if kw != kg || !bytes.Equal(bw[:kw], bg[:kg]) {
			return fmt.Errorf("%s differs from %s in the MiB at offset %d", got, want, off)
		}
		off += int64(kw)
		if ew != nil || eg != nil {
			if (ew == io.EOF || ew == io.ErrUnexpectedEOF) && (eg == io.EOF || eg == io.ErrUnexpectedEOF) {
				return nil
			}
			return errors.Join(ew, eg)
		}
	}
}

func writeSmall(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readSmall(p string, buf []byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	n, err := io.ReadFull(f, buf)
	cerr := f.Close()
	if err != nil {
		return fmt.Errorf("%s: read %d of %d bytes: %w", p, n, len(buf), err)
	}
	return cerr
}

// lsLong runs the real `ls -l`, which also asks for every file's ACL and
// security xattrs, as a user's ls does.
func lsLong(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "ls", "-l", dir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Stdout nil: /dev/null, so ls formats but nothing is copied around.
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ls -l: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// settle syncs every dirty page of the machine (so the last case's
// writeback does not land in the next measurement) and makes sure the
// given source files are in the page cache, as a file that was just
// written or read is when a user copies it.
func (b *bench) settle(warm ...string) error {
	syscall.Sync()
	for _, p := range warm {
		if err := readAll(p); err != nil {
			return err
		}
	}
	return nil
}

func readAll(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, bufSize))
	return err
}

// coldCaches empties the page cache for the next read of the instance:
// drop_caches where permitted, else posix_fadvise(DONTNEED) of every file
// below its root (mounts excluded). It returns 1 for drop_caches, 0 for
// the fallback.
func (b *bench) coldCaches(in *instance) (float64, error) {
	syscall.Sync()
	if b.dropCaches {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err == nil {
			return 1, nil
		}
	}
	err := filepath.WalkDir(in.root, func(p string, e iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && p == in.mnt {
			return filepath.SkipDir
		}
		if !e.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	return 0, err
}

// canDropCaches reports whether this process may drop the page cache.
func canDropCaches() bool {
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0o200) == nil
}
